"""A shared reference script's own training step, timed as masksub's side of the bench times its
own: standard and MaskSub steps in interleaved pairs (pairs.py). For the scripts of
../../../shared/bench that define `step(masksub)` and their model `m` (resnet20_step_torch.py,
bert_step_torch.py): they time all their standard steps, then all their MaskSub steps, and on a
drifting VM that moved their ratio by up to 0.2 between runs (BERT: 1.66-1.90).

usage: shared_pairs.py --script <path> [--steps N] [--warmup W] [--threads T] <the script's own flags>

The script runs first as it is, with one timed step per kind (after its own two warm-up steps of
each: the warm-up here), its output swallowed; then its `step` is timed. Prints one JSON line."""
import argparse, json, os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pairs import run_script, time_pairs  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument('--script', required=True)
p.add_argument('--steps', type=int, default=21); p.add_argument('--warmup', type=int, default=0)
p.add_argument('--threads', type=int, default=2)
a, script_args = p.parse_known_args()

g = run_script(a.script, [*script_args, '--steps', '1', '--threads', str(a.threads)])
m = g['m']
res = time_pairs(g['step'], m, a)
res['script_args'] = script_args
print(json.dumps(res))
