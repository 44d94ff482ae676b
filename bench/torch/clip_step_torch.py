"""CLIP (HF CLIPModel arithmetic, quick GELU) contrastive training step on CPU in PyTorch, the
twin of bench/arch/clip.ts: vision tower (patch conv without bias, class token, positions,
pre-LN, pre-norm encoder, post-LN on the class token, projection) and text tower (tokens +
positions, causal mask, encoder, final LN, pooled at EOS = last position, projection),
exp(logit_scale) * cosine similarity, symmetric CE; AdamW. MaskSub: the sub pass keeps a random
half of the image patches (MAE token removal) and mimics the detached main similarity matrix
row- and column-wise; the text embeddings are computed once (their graph kept) and the sum of both
passes' gradients goes back through one text backward, as masksub's SharedBranch does. Standard and MaskSub steps are timed in interleaved pairs. Prints one JSON
line."""
import argparse, json, math, os, sys
import torch, torch.nn as nn, torch.nn.functional as F

# The bench runs this file through runpy, which does not put its folder on the path.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pairs import time_pairs  # noqa: E402

p = argparse.ArgumentParser()
for k, v in dict(batch=64, img=32, patch=4, width=128, layers=4, heads=4, inter=512, proj=128, seq=16, vocab=49408, steps=8, threads=2).items():
    p.add_argument('--' + k, type=int, default=v)
a = p.parse_args(); torch.set_num_threads(a.threads); torch.manual_seed(0)
qgelu = lambda t: t * torch.sigmoid(1.702 * t)

class Layer(nn.Module):
    def __init__(s):
        super().__init__(); H = a.width
        s.ln1 = nn.LayerNorm(H); s.q, s.k, s.v, s.o = (nn.Linear(H, H) for _ in range(4))
        s.ln2 = nn.LayerNorm(H); s.fc1 = nn.Linear(H, a.inter); s.fc2 = nn.Linear(a.inter, H)
    def forward(s, x, bias=None):
        B, T, H = x.shape; h = a.heads; d = H // h
        sp = lambda t: t.view(B, T, h, d).transpose(1, 2)
        y = s.ln1(x)
        att = (sp(s.q(y)) * d ** -0.5) @ sp(s.k(y)).transpose(-1, -2)
        if bias is not None: att = att + bias
        x = x + s.o((att.softmax(-1) @ sp(s.v(y))).transpose(1, 2).reshape(B, T, H))
        return x + s.fc2(qgelu(s.fc1(s.ln2(x))))

class Clip(nn.Module):
    def __init__(s):
        super().__init__(); H = a.width; n = (a.img // a.patch) ** 2
        s.patch = nn.Conv2d(3, H, a.patch, a.patch, bias=False); s.cls = nn.Parameter(torch.randn(H))
        s.vpos = nn.Embedding(n + 1, H); s.pre = nn.LayerNorm(H); s.vL = nn.ModuleList(Layer() for _ in range(a.layers))
        s.post = nn.LayerNorm(H); s.vproj = nn.Linear(H, a.proj, bias=False)
        s.tok = nn.Embedding(a.vocab, H); s.tpos = nn.Embedding(77, H); s.tL = nn.ModuleList(Layer() for _ in range(a.layers))
        s.fin = nn.LayerNorm(H); s.tproj = nn.Linear(H, a.proj, bias=False)
        s.scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    def image(s, x, keep=None):
        B = x.shape[0]; t = s.patch(x).flatten(2).transpose(1, 2) + s.vpos.weight[1:]
        if keep is not None: t = torch.gather(t, 1, keep[..., None].expand(-1, -1, t.shape[-1]))
        h = s.pre(torch.cat([(s.cls + s.vpos.weight[0]).expand(B, 1, -1), t], 1))
        for l in s.vL: h = l(h)
        return s.vproj(s.post(h[:, 0]))
    def text(s, ids):
        T = ids.shape[1]; h = s.tok(ids) + s.tpos.weight[:T]
        causal = torch.full((T, T), float('-inf')).triu(1)
        for l in s.tL: h = l(h, causal)
        return s.tproj(s.fin(h)[:, -1])
    def forward(s, x, ids, keep=None, text=None):
        i = F.normalize(s.image(x, keep), dim=-1); t = F.normalize(s.text(ids) if text is None else text, dim=-1)
        return s.scale.exp() * i @ t.t()

m = Clip(); opt = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.1)
x = torch.randn(a.batch, 3, a.img, a.img); ids = torch.randint(1, a.vocab - 1, (a.batch, a.seq)); ids[:, -1] = a.vocab - 1
y = torch.arange(a.batch); n = (a.img // a.patch) ** 2
soft_ce = lambda s, t: -(t * F.log_softmax(s, -1)).sum(-1).mean()
def step(masksub):
    opt.zero_grad(set_to_none=True)
    if not masksub:
        s1 = m(x, ids); ((F.cross_entropy(s1, y) + F.cross_entropy(s1.t(), y)) / 2).backward()
    else:
        # As masksub's withMaskSub does with CLIP's SharedBranch: the text embeddings once, their
        # graph kept; both passes backpropagate into a detached copy; one text backward with the sum.
        tg = m.text(ids); t = tg.detach().requires_grad_()
        s1 = m(x, ids, text=t); ((F.cross_entropy(s1, y) + F.cross_entropy(s1.t(), y)) / 2 / 2).backward()
        keep = torch.rand(a.batch, n).argsort(1)[:, : n // 2]
        s2 = m(x, ids, keep, text=t); d = s1.detach()
        ((soft_ce(s2, d.softmax(-1)) + soft_ce(s2.t(), d.t().softmax(-1))) / 2 / 2).backward()
        tg.backward(t.grad)
    opt.step()
print(json.dumps(time_pairs(step, m, a)))
