"""Swin (HF SwinForImageClassification arithmetic) training step on CPU in PyTorch, the twin of
bench/arch/swin.ts: patch embedding + LayerNorm, stages of (shifted) window attention with
relative position bias, patch merging, final LayerNorm, mean pool, linear head; AdamW.
Standard step and MaskSub mask-token (half of the 32 px squares of patch tokens replaced by a
learned mask token after the embedding norm, as the official augsub Swin does; two passes, the
sub pass toward the detached main softmax), timed in interleaved pairs. Prints one JSON line."""
import argparse, json, os, sys
import torch, torch.nn as nn, torch.nn.functional as F

# The bench runs this file through runpy, which does not put its folder on the path.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pairs import time_pairs  # noqa: E402

p = argparse.ArgumentParser()
for k, v in dict(batch=32, img=64, patch=4, embed=64, window=4, classes=10, steps=8, threads=2).items():
    p.add_argument('--' + k, type=int, default=v)
p.add_argument('--depths', default='2,2,2'); p.add_argument('--heads', default='2,4,8')
a = p.parse_args(); torch.set_num_threads(a.threads); torch.manual_seed(0)
depths = [int(x) for x in a.depths.split(',')]; heads = [int(x) for x in a.heads.split(',')]

def rel_index(w):
    c = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing='ij')).flatten(1)
    r = (c[:, :, None] - c[:, None, :]).permute(1, 2, 0) + (w - 1)
    return r[..., 0] * (2 * w - 1) + r[..., 1]

def windows(x, w):  # [B, H, W, C] -> [B * nW, w*w, C]
    B, H, W, C = x.shape
    return x.view(B, H // w, w, W // w, w, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, C)

def unwindows(x, w, B, H, W):
    C = x.shape[-1]
    return x.view(B, H // w, W // w, w, w, C).permute(0, 1, 3, 2, 4, 5).reshape(B, H, W, C)

class Block(nn.Module):
    def __init__(s, dim, nh, res, w, shift):
        super().__init__()
        if res <= w: w, shift = res, 0  # HF: the window shrinks to the resolution, no shift
        s.dim, s.nh, s.res, s.w, s.shift = dim, nh, res, w, shift
        s.ln1 = nn.LayerNorm(dim); s.q, s.k, s.v, s.o = (nn.Linear(dim, dim) for _ in range(4))
        s.table = nn.Parameter(torch.randn((2 * w - 1) ** 2, nh) * 0.02)
        s.register_buffer('idx', rel_index(w).flatten())
        s.ln2 = nn.LayerNorm(dim); s.fc1 = nn.Linear(dim, 4 * dim); s.fc2 = nn.Linear(4 * dim, dim)
        if shift:
            img = torch.zeros(1, res, res, 1); n = 0
            for hs in (slice(0, -w), slice(-w, -shift), slice(-shift, None)):
                for ws in (slice(0, -w), slice(-w, -shift), slice(-shift, None)):
                    img[:, hs, ws, :] = n; n += 1
            m = windows(img, w).squeeze(-1)
            s.register_buffer('mask', (m[:, None, :] - m[:, :, None]).ne(0).float() * -100.0)
        else:
            s.mask = None
    def forward(s, x):
        B, L, C = x.shape; R, w = s.res, s.w
        h = s.ln1(x).view(B, R, R, C)
        if s.shift: h = torch.roll(h, (-s.shift, -s.shift), (1, 2))
        win = windows(h, w); n, T, _ = win.shape; d = C // s.nh
        sp = lambda t: t.view(n, T, s.nh, d).transpose(1, 2)
        att = (sp(s.q(win)) @ sp(s.k(win)).transpose(-1, -2)) / d ** 0.5
        att = att + s.table[s.idx].view(T, T, s.nh).permute(2, 0, 1)
        if s.mask is not None:
            nw = s.mask.shape[0]
            att = (att.view(n // nw, nw, s.nh, T, T) + s.mask[None, :, None]).view(n, s.nh, T, T)
        ctx = s.o((att.softmax(-1) @ sp(s.v(win))).transpose(1, 2).reshape(n, T, C))
        h = unwindows(ctx, w, B, R, R)
        if s.shift: h = torch.roll(h, (s.shift, s.shift), (1, 2))
        x = x + h.reshape(B, L, C)
        return x + s.fc2(F.gelu(s.fc1(s.ln2(x))))

class Merge(nn.Module):
    def __init__(s, dim, res):
        super().__init__(); s.res = res; s.ln = nn.LayerNorm(4 * dim); s.red = nn.Linear(4 * dim, 2 * dim, bias=False)
    def forward(s, x):
        B, L, C = x.shape; x = x.view(B, s.res, s.res, C)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return s.red(s.ln(x.view(B, -1, 4 * C)))

class Swin(nn.Module):
    def __init__(s):
        super().__init__()
        s.proj = nn.Conv2d(3, a.embed, a.patch, a.patch); s.ln0 = nn.LayerNorm(a.embed)
        s.mask_token = nn.Parameter(torch.zeros(1, 1, a.embed))
        layers, res, dim = [], a.img // a.patch, a.embed
        for i, (dp, nh) in enumerate(zip(depths, heads)):
            for j in range(dp): layers.append(Block(dim, nh, res, a.window, 0 if j % 2 == 0 else a.window // 2))
            if i < len(depths) - 1: layers.append(Merge(dim, res)); res //= 2; dim *= 2
        s.layers = nn.ModuleList(layers); s.ln = nn.LayerNorm(dim); s.head = nn.Linear(dim, a.classes)
    def forward(s, x, masked=None):
        x = s.ln0(s.proj(x).flatten(2).transpose(1, 2))
        if masked is not None:
            m = masked[..., None].float(); x = x * (1 - m) + s.mask_token * m
        for l in s.layers: x = l(x)
        return s.head(s.ln(x).mean(1))

m = Swin(); opt = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.05)
x = torch.randn(a.batch, 3, a.img, a.img); y = torch.randint(0, a.classes, (a.batch,))
L = (a.img // a.patch) ** 2
def block_mask():
    # The official augsub Swin (random_masking): squares of 32 px (8x8 tokens at patch 4; here at
    # most half the grid, as masksub's maskBlockTokens) masked at random, half of them.
    g = a.img // a.patch; blk = max(1, min(round(32 / a.patch), g // 2)); nb = g // blk
    drop = torch.rand(a.batch, nb * nb).argsort(1).argsort(1) >= nb * nb - nb * nb // 2
    return drop.view(a.batch, nb, 1, nb, 1).expand(-1, -1, blk, -1, blk).reshape(a.batch, L)
def step(masksub):
    opt.zero_grad(set_to_none=True)
    o1 = m(x); (F.cross_entropy(o1, y) / (2 if masksub else 1)).backward()
    if masksub:
        masked = block_mask()
        o2 = m(x, masked)
        (-(F.softmax(o1.detach(), -1) * F.log_softmax(o2, -1)).sum(-1).mean() / 2).backward()
    opt.step()
print(json.dumps(time_pairs(step, m, a)))
