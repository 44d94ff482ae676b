"""The ViT of ../../../shared/bench/vit_step_torch.py (its model, data and Adam, loaded by running
that file) timed as masksub's side of the bench times its ViT: standard and MaskSub steps in
interleaved pairs (pairs.py). The MaskSub step is the real two-pass step, as masksub's and the
official code's: main pass on all tokens, CE / 2, backward (its graph freed); sub pass on a
random subset of the patch tokens (the script's MAE-style gather) toward the detached main
softmax, soft CE / 2, backward; one Adam update. The shared script has no two-pass mode: timed
as "a standard step + a keep-32 step" from two processes minutes apart, its ratio counted a
second Adam update and zero_grad, and the VM's drift between the two runs moved it by +-0.1.
Prints one JSON line."""
import argparse, json, os, sys
import torch, torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pairs import run_script, time_pairs  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument('--script', required=True, help='path of the shared vit_step_torch.py')
p.add_argument('--batch', type=int, default=64); p.add_argument('--steps', type=int, default=21)
p.add_argument('--threads', type=int, default=2); p.add_argument('--warmup', type=int, default=2)
p.add_argument('--keep', type=int, default=0, help='patch tokens the sub pass keeps (default: half)')
SIZES = ('img', 'patch', 'dim', 'depth', 'heads', 'classes')
for k in SIZES: p.add_argument('--' + k, type=int)
a = p.parse_args()

# The script builds its model, data and optimizer at the top level and runs its own timing loop:
# one step, its output swallowed, then its globals are the model this file times.
argv = ['--batch', str(a.batch), '--threads', str(a.threads), '--warmup', '0', '--steps', '1']
for k in SIZES:
    if getattr(a, k) is not None: argv += ['--' + k, str(getattr(a, k))]
g = run_script(a.script, argv)
m, opt, x, y, NP = g['m'], g['opt'], g['x'], g['y'], g['NP']
keep = a.keep or NP // 2
B = x.shape[0]


def step(masksub):
    opt.zero_grad(set_to_none=True)
    logits = m(x)
    (F.cross_entropy(logits, y) / (2 if masksub else 1)).backward()
    if masksub:
        idx = torch.rand(B, NP).argsort(dim=1)[:, :keep]
        sub = m(x, idx)
        (-(F.softmax(logits.detach(), -1) * F.log_softmax(sub, -1)).sum(-1).mean() / 2).backward()
    opt.step()


res = time_pairs(step, m, a)
res['keep'] = keep; res['tokens'] = NP
print(json.dumps(res))
