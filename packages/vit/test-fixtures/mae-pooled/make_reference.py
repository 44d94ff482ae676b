"""Reference for MAE's fine-tuning head on a timm ViT (mae/models_vit.py, global_pool=True; timm
global_pool='avg' with fc_norm): the mean of the patch tokens (class token excluded; in the sub
pass the kept tokens only), LayerNorm `fc_norm`, then the head; no final `norm`.

Weights come from a formula (the test rebuilds them the same way, see mae-pooled.test.ts), so
only config.json and reference.safetensors (inputs, logits, CE loss halves, every gradient, in
the format of shared/fixtures/hf-tiny) are committed. timm is not installed: the arithmetic of
timm's VisionTransformer is written out here.
usage: /usr/bin/python3 make_reference.py   (PyTorch 1.13; writes beside this file)
"""
import json, math, os, struct
import numpy as np, torch, torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
CFG = {'architecture': 'vit_tiny_patch4_8', 'num_classes': 5, 'global_pool': 'avg',
       'model_args': {'img_size': 8, 'patch_size': 4, 'embed_dim': 8, 'depth': 1, 'num_heads': 2, 'mlp_ratio': 2.0,
                      'qkv_bias': True, 'global_pool': 'avg', 'fc_norm': True},
       'pretrained_cfg': {'input_size': [3, 8, 8], 'mean': [0.5, 0.5, 0.5], 'std': [0.5, 0.5, 0.5], 'crop_pct': 1.0, 'interpolation': 'bicubic'}}
D, H, DEPTH, P, IMG, C, HID, EPS = 8, 2, 1, 4, 8, 5, 16, 1e-6
N = (IMG // P) ** 2

def shapes():
    s = {'cls_token': [1, 1, D], 'pos_embed': [1, N + 1, D], 'patch_embed.proj.weight': [D, 3, P, P], 'patch_embed.proj.bias': [D]}
    for i in range(DEPTH):
        b = f'blocks.{i}.'
        s.update({b + 'norm1.weight': [D], b + 'norm1.bias': [D], b + 'attn.qkv.weight': [3 * D, D], b + 'attn.qkv.bias': [3 * D],
                  b + 'attn.proj.weight': [D, D], b + 'attn.proj.bias': [D], b + 'norm2.weight': [D], b + 'norm2.bias': [D],
                  b + 'mlp.fc1.weight': [HID, D], b + 'mlp.fc1.bias': [HID], b + 'mlp.fc2.weight': [D, HID], b + 'mlp.fc2.bias': [D]})
    s.update({'fc_norm.weight': [D], 'fc_norm.bias': [D], 'head.weight': [C, D], 'head.bias': [C]})
    return s

def formula_weights():
    """Tensor t (in sorted name order), element j: 0.3 sin(0.37 j + 1.1 t + 0.5); norm weights 1 + 0.1 sin(...)."""
    out = {}
    for t, name in enumerate(sorted(shapes())):
        shape = shapes()[name]; n = int(np.prod(shape)); j = np.arange(n, dtype=np.float64)
        v = np.sin(0.37 * j + 1.1 * t + 0.5)
        is_norm_weight = name.endswith('norm1.weight') or name.endswith('norm2.weight') or name == 'fc_norm.weight'
        v = 1 + 0.1 * v if is_norm_weight else 0.3 * v
        out[name] = torch.tensor(v.astype(np.float32).reshape(shape), requires_grad=True)
    return out

def forward(W, x, keep=None):
    t = F.conv2d(x, W['patch_embed.proj.weight'], W['patch_embed.proj.bias'], stride=P).flatten(2).transpose(1, 2)
    B = t.shape[0]
    t = t + W['pos_embed'][:, 1:]
    cls = W['cls_token'].expand(B, -1, -1) + W['pos_embed'][:, :1]
    if keep is not None: t = torch.gather(t, 1, keep.unsqueeze(-1).expand(-1, -1, D))
    h = torch.cat([cls, t], 1)
    for i in range(DEPTH):
        q = f'blocks.{i}.'; T = h.shape[1]
        y = F.layer_norm(h, (D,), W[q + 'norm1.weight'], W[q + 'norm1.bias'], EPS)
        # timm: qkv reshaped (B, T, 3, heads, head_dim): rows 0..D-1 query, D..2D-1 key, 2D.. value
        qkv = F.linear(y, W[q + 'attn.qkv.weight'], W[q + 'attn.qkv.bias']).reshape(B, T, 3, H, D // H).permute(2, 0, 3, 1, 4)
        a = ((qkv[0] * (D // H) ** -0.5) @ qkv[1].transpose(-2, -1)).softmax(-1)
        h = h + F.linear((a @ qkv[2]).transpose(1, 2).reshape(B, T, D), W[q + 'attn.proj.weight'], W[q + 'attn.proj.bias'])
        y = F.layer_norm(h, (D,), W[q + 'norm2.weight'], W[q + 'norm2.bias'], EPS)
        h = h + F.linear(F.gelu(F.linear(y, W[q + 'mlp.fc1.weight'], W[q + 'mlp.fc1.bias'])), W[q + 'mlp.fc2.weight'], W[q + 'mlp.fc2.bias'])
    # mae/models_vit.py forward_features, global_pool=True: x[:, 1:, :].mean(dim=1); fc_norm
    pooled = F.layer_norm(h[:, 1:, :].mean(dim=1), (D,), W['fc_norm.weight'], W['fc_norm.bias'], EPS)
    return F.linear(pooled, W['head.weight'], W['head.bias'])

def write_st(p, d):
    names = sorted(d); h = {}; off = 0; blobs = []
    inv = {np.dtype(np.float32): 'F32', np.dtype(np.int64): 'I64'}
    for k in names:
        a = d[k].detach().contiguous().numpy(); bb = a.tobytes()
        h[k] = {'dtype': inv[a.dtype], 'shape': list(a.shape), 'data_offsets': [off, off + len(bb)]}; off += len(bb); blobs.append(bb)
    hj = json.dumps(h, separators=(',', ':')).encode(); hj += b' ' * ((8 - len(hj) % 8) % 8)
    with open(p, 'wb') as f:
        f.write(struct.pack('<Q', len(hj))); f.write(hj); [f.write(x) for x in blobs]

def main():
    torch.manual_seed(0)
    W = formula_weights()
    x = torch.randn(2, 3, IMG, IMG)
    labels = torch.tensor([1, 3])
    keep = torch.tensor([[0, 3], [1, 2]])
    main_logits = forward(W, x)
    sub_logits = forward(W, x, keep)
    loss_main = F.cross_entropy(main_logits, labels) / 2
    loss_sub = (-(F.softmax(main_logits.detach(), -1) * F.log_softmax(sub_logits, -1)).sum(-1)).mean() / 2
    (loss_main + loss_sub).backward()
    ref = {'input.pixel_values': x, 'input.labels': labels, 'input.keep_indices': keep,
           'ce.main_logits': main_logits, 'ce.sub_logits': sub_logits, 'ce.loss_main': loss_main.reshape([]), 'ce.loss_sub': loss_sub.reshape([])}
    for k, v in W.items(): ref['ce.grad.' + k] = v.grad
    write_st(os.path.join(HERE, 'reference.safetensors'), ref)
    with open(os.path.join(HERE, 'config.json'), 'w') as f: json.dump(CFG, f, indent=2); f.write('\n')
    print('torch', torch.__version__, 'main logits', main_logits.detach().numpy().round(5).tolist(), 'loss', float(loss_main), float(loss_sub))

if __name__ == '__main__':
    main()
