"""The timing loop every PyTorch step of the bench shares (the Swin and CLIP twins, the ViT twin,
shared_pairs.py for the shared scripts): standard and MaskSub steps in interleaved pairs, as masksub's side of the bench times them
(bench/arch/compare.ts). Timed in two blocks, a drifting shared VM moves the ratio."""
import contextlib, io, runpy, sys, time
import torch


def run_script(path, argv):
    """Runs a reference script as it is, with `argv` as its command line and its output swallowed;
    returns its globals (its model, data, optimizer and step, to be timed here)."""
    saved, sys.argv = sys.argv, [path, *argv]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return runpy.run_path(path, run_name='reference_step')
    finally:
        sys.argv = saved


def time_pairs(step, model, args):
    """args.warmup warm-up pairs (2 when the script has no such flag), then args.steps timed pairs; the JSON-ready result (median ms of each,
    the per-pair ratios, the arguments, torch's version, the parameter count). The ratio itself is
    the bench's to take (bench/ratio.ts), as for masksub's own pairs, so both sides take the same median."""
    for _ in range(getattr(args, 'warmup', 2)):
        step(False); step(True)
    ts = {'standard': [], 'masksub': []}; pair_ratios = []
    for _ in range(args.steps):
        for name, masksub in [('standard', False), ('masksub', True)]:
            t0 = time.perf_counter(); step(masksub); ts[name].append((time.perf_counter() - t0) * 1000)
        pair_ratios.append(ts['masksub'][-1] / ts['standard'][-1])
    median = lambda xs: sorted(xs)[len(xs) // 2]
    res = {name: median(v) for name, v in ts.items()}
    res['pair_ratios'] = pair_ratios
    res.update(vars(args)); res['torch'] = torch.__version__
    res['params'] = sum(p.numel() for p in model.parameters())
    return res
