"""timm's SwinTransformer (timm >= 0.9 layout) on hf-tiny/swin's weights renamed to timm names:
the logits, loss halves and every gradient must equal the transformers reference of hf-tiny/swin
(the two are the same function). This checks the rename that packages/swin/src/timm-swin.test.ts
performs in TypeScript at test time (the test fixture is generated there, not copied):

  swin.embeddings.patch_embeddings.projection -> patch_embed.proj
  swin.embeddings.norm                        -> patch_embed.norm
  swin.encoder.layers.S.blocks.B.layernorm_before / layernorm_after -> layers.S.blocks.B.norm1 / norm2
  ...attention.self.query/key/value           -> layers.S.blocks.B.attn.qkv (fused along dim 0: q, k, v)
  ...attention.self.relative_position_bias_table -> layers.S.blocks.B.attn.relative_position_bias_table
  ...attention.output.dense                   -> layers.S.blocks.B.attn.proj
  ...intermediate.dense / output.dense        -> layers.S.blocks.B.mlp.fc1 / fc2
  swin.encoder.layers.S.downsample.*          -> layers.(S+1).downsample.*  (timm >= 0.9: PatchMerging
                                                 opens stages 1..; HF closes stages 0..n-2)
  swin.layernorm -> norm;  classifier -> head.fc

The forward below is written from timm's swin_transformer.py (0.9+): NHWC, window_partition,
get_relative_position_index, the shifted-window mask from slices, PatchMerging's
reshape(B, H/2, 2, W/2, 2, C).permute(0, 1, 3, 4, 2, 5).flatten(3), global average pool.
usage: /usr/bin/python3 check_timm_swin.py [hf-tiny dir]   (PyTorch 1.13)
"""
import json, os, struct, sys
import numpy as np, torch, torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
HF = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, '../../../../shared/fixtures/hf-tiny/swin')
DT = {'F32': np.float32, 'I64': np.int64, 'BOOL': np.bool_}

def read_st(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n]); out = {}
    for k, v in h.items():
        if k == '__metadata__': continue
        s, e = v['data_offsets']; out[k] = torch.from_numpy(np.frombuffer(b[8 + n + s:8 + n + e], dtype=DT[v['dtype']]).reshape(v['shape']).copy())
    return out

def hf_to_timm(S, depths):
    T = {'patch_embed.proj.weight': S['swin.embeddings.patch_embeddings.projection.weight'], 'patch_embed.proj.bias': S['swin.embeddings.patch_embeddings.projection.bias'],
         'patch_embed.norm.weight': S['swin.embeddings.norm.weight'], 'patch_embed.norm.bias': S['swin.embeddings.norm.bias'],
         'norm.weight': S['swin.layernorm.weight'], 'norm.bias': S['swin.layernorm.bias'], 'head.fc.weight': S['classifier.weight'], 'head.fc.bias': S['classifier.bias']}
    for s, depth in enumerate(depths):
        for b in range(depth):
            h = f'swin.encoder.layers.{s}.blocks.{b}.'; t = f'layers.{s}.blocks.{b}.'
            for k in ('weight', 'bias'):
                T[t + 'norm1.' + k] = S[h + 'layernorm_before.' + k]; T[t + 'norm2.' + k] = S[h + 'layernorm_after.' + k]
                T[t + 'attn.qkv.' + k] = torch.cat([S[h + f'attention.self.{p}.{k}'] for p in ('query', 'key', 'value')], 0)
                T[t + 'attn.proj.' + k] = S[h + 'attention.output.dense.' + k]
                T[t + 'mlp.fc1.' + k] = S[h + 'intermediate.dense.' + k]; T[t + 'mlp.fc2.' + k] = S[h + 'output.dense.' + k]
            T[t + 'attn.relative_position_bias_table'] = S[h + 'attention.self.relative_position_bias_table']
        if s < len(depths) - 1:
            for k in ('norm.weight', 'norm.bias', 'reduction.weight'):
                T[f'layers.{s + 1}.downsample.{k}'] = S[f'swin.encoder.layers.{s}.downsample.{k}']
    return T

def get_relative_position_index(wh, ww):
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing='ij')).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += wh - 1; rel[:, :, 1] += ww - 1; rel[:, :, 0] *= 2 * ww - 1
    return rel.sum(-1)

def window_partition(x, w):
    B, H, W, C = x.shape
    return x.view(B, H // w, w, W // w, w, C).permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, w, w, C)

def window_reverse(windows, w, H, W):
    C = windows.shape[-1]
    return windows.view(-1, H // w, W // w, w, w, C).permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, H, W, C)

def attn_mask(H, W, w, s):
    img = torch.zeros((1, H, W, 1)); cnt = 0
    for h in (slice(0, -w), slice(-w, -s), slice(-s, None)):
        for ww in (slice(0, -w), slice(-w, -s), slice(-s, None)):
            img[:, h, ww, :] = cnt; cnt += 1
    mw = window_partition(img, w).view(-1, w * w)
    m = mw.unsqueeze(1) - mw.unsqueeze(2)
    return m.masked_fill(m != 0, float(-100.0)).masked_fill(m == 0, float(0.0))

def block(P, t, x, heads, w, shift, eps):
    B, H, W, C = x.shape
    if min(H, W) <= w: w, shift = min(H, W), 0
    sc = x
    x = F.layer_norm(x, (C,), P[t + 'norm1.weight'], P[t + 'norm1.bias'], eps)
    if shift: x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
    xw = window_partition(x, w).view(-1, w * w, C); Bw, N, _ = xw.shape
    qkv = F.linear(xw, P[t + 'attn.qkv.weight'], P[t + 'attn.qkv.bias']).reshape(Bw, N, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    a = (q * (C // heads) ** -0.5) @ k.transpose(-2, -1)
    table = P[t + 'attn.relative_position_bias_table']
    bias = table[get_relative_position_index(w, w).view(-1)].view(N, N, -1).permute(2, 0, 1).contiguous()
    a = a + bias.unsqueeze(0)
    if shift:
        m = attn_mask(H, W, w, shift); nw = m.shape[0]
        a = a.view(-1, nw, heads, N, N) + m.unsqueeze(1).unsqueeze(0); a = a.view(-1, heads, N, N)
    a = a.softmax(-1)
    o = F.linear((a @ v).transpose(1, 2).reshape(Bw, N, C), P[t + 'attn.proj.weight'], P[t + 'attn.proj.bias'])
    o = window_reverse(o.view(-1, w, w, C), w, H, W)
    if shift: o = torch.roll(o, shifts=(shift, shift), dims=(1, 2))
    x = sc + o
    y = F.layer_norm(x, (C,), P[t + 'norm2.weight'], P[t + 'norm2.bias'], eps)
    return x + F.linear(F.gelu(F.linear(y, P[t + 'mlp.fc1.weight'], P[t + 'mlp.fc1.bias'])), P[t + 'mlp.fc2.weight'], P[t + 'mlp.fc2.bias'])

def forward(P, x, cfg, masked=None, mask_token=None):
    eps = 1e-5; ps = cfg['patch_size']
    x = F.conv2d(x, P['patch_embed.proj.weight'], P['patch_embed.proj.bias'], stride=ps).permute(0, 2, 3, 1)  # NHWC
    x = F.layer_norm(x, (x.shape[-1],), P['patch_embed.norm.weight'], P['patch_embed.norm.bias'], eps)
    if masked is not None:  # the fixture's mask-token swap after the embedding norm
        B, H, W, C = x.shape; m = masked.view(B, H, W, 1).to(x.dtype)
        x = x * (1 - m) + mask_token.view(1, 1, 1, C) * m
    for s, depth in enumerate(cfg['depths']):
        if s > 0:  # PatchMerging at the start of stages 1..
            B, H, W, C = x.shape
            x = x.reshape(B, H // 2, 2, W // 2, 2, C).permute(0, 1, 3, 4, 2, 5).flatten(3)
            x = F.layer_norm(x, (4 * C,), P[f'layers.{s}.downsample.norm.weight'], P[f'layers.{s}.downsample.norm.bias'], eps)
            x = F.linear(x, P[f'layers.{s}.downsample.reduction.weight'])
        w = cfg['window_size']
        for b in range(depth):
            x = block(P, f'layers.{s}.blocks.{b}.', x, cfg['num_heads'][s], w, 0 if b % 2 == 0 else w // 2, eps)
    x = F.layer_norm(x, (x.shape[-1],), P['norm.weight'], P['norm.bias'], eps)
    return F.linear(x.mean((1, 2)), P['head.fc.weight'], P['head.fc.bias'])

def main():
    cfg = json.load(open(os.path.join(HF, 'config.json')))
    S = read_st(os.path.join(HF, 'model.safetensors')); R = read_st(os.path.join(HF, 'reference.safetensors'))
    T = {k: v.clone().requires_grad_(True) for k, v in hf_to_timm(S, cfg['depths']).items()}
    assert len(T) == len(S) - 4 * sum(cfg['depths']), (len(T), len(S))  # q, k, v weights and biases fused
    x = R['input.pixel_values']; y = R['input.labels']
    main_logits = forward(T, x, cfg)
    sub_logits = forward(T, x, cfg, R['input.bool_masked_pos'], R['param.swin.embeddings.mask_token'])
    loss_main = F.cross_entropy(main_logits, y) / 2
    loss_sub = (-(F.softmax(main_logits.detach(), -1) * F.log_softmax(sub_logits, -1)).sum(-1)).mean() / 2
    (loss_main + loss_sub).backward()
    d = lambda a, b: float((a.detach() - b).abs().max())
    print(f'torch {torch.__version__}: {len(T)} timm tensors')
    print(f'main logits max |timm - HF reference| = {d(main_logits, R["ce.main_logits"]):.2e}')
    print(f'sub logits  max |timm - HF reference| = {d(sub_logits, R["ce.sub_logits"]):.2e}')
    print(f'loss halves |diff| = {abs(float(loss_main) - float(R["ce.loss_main"])):.2e}, {abs(float(loss_sub) - float(R["ce.loss_sub"])):.2e}')
    # gradients back under HF names: the same rename, applied to the gradients
    G = hf_to_timm({k[len('ce.grad.'):]: v for k, v in R.items() if k.startswith('ce.grad.')}, cfg['depths'])
    worst = max(d(T[k].grad, G[k]) / max(float(G[k].abs().max()), 1e-5) for k in T)
    print(f'every gradient: worst relative difference {worst:.2e}')
    ok = d(main_logits, R['ce.main_logits']) < 1e-5 and d(sub_logits, R['ce.sub_logits']) < 1e-5 and worst < 1e-4
    print('timm arithmetic on timm names == HF reference:', ok)
    sys.exit(0 if ok else 1)

if __name__ == '__main__':
    main()
