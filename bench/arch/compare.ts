/**
 * Per-architecture comparison for `pnpm bench --arch`: masksub's standard and MaskSub steps timed
 * in interleaved pairs, peak RSS growth over the pre-step process, and the identical PyTorch step
 * (its own standard / MaskSub pair) run right after in the same bench run.
 */
import { median } from '@masksub/core/base';
import { pairedRatio } from '../ratio.js';
import { makeBertWorkload } from './bert.js';
import { makeClipWorkload } from './clip.js';
import { makeResNetWorkload } from './resnet.js';
import type { ArchStep } from './step.js';
import { makeSwinWorkload } from './swin.js';
import { benchScript, runTorch, sharedScript, torchUnavailable, type TorchRun } from './torch.js';

export interface ArchResult {
  arch: string;
  workload: string;
  ms_standard: number;
  ms_masksub: number;
  masksub_ratio: number;
  /** The 95 % interval of masksub_ratio, a median of pair ratios (bench/ratio.ts). */
  masksub_ratio_ci95: [number, number] | null;
  pytorch_ms_standard: number | null;
  pytorch_ms_masksub: number | null;
  pytorch_masksub_ratio: number | null;
  pytorch_masksub_ratio_ci95: [number, number] | null;
  over_pytorch: number | null;
  over_pytorch_masksub: number | null;
  peak_rss_mib: number;
  pytorch_peak_rss_mib: number | null;
  parameters: number;
  pytorch_parameters: number | null;
  pytorch_note?: string;
}

interface ArchSpec {
  workload: string;
  /** The batch both engines run (smaller with --quick). */
  batch(quick: boolean): number;
  make(batch: number): ArchStep;
  torchScript: string;
  /** Files the PyTorch script reads besides itself (the shared script it times). */
  torchReads?: string[];
  torchArgs(batch: number, steps: number): string[];
}

/**
 * A shared script's own step(masksub), timed in interleaved pairs by bench/torch/shared_pairs.py
 * (the scripts time their standard steps, then their MaskSub steps: the VM's drift in between
 * moved their ratio by up to 0.2).
 */
function sharedStepInPairs(script: string): Pick<ArchSpec, 'torchScript' | 'torchReads' | 'torchArgs'> {
  return {
    torchScript: benchScript('shared_pairs.py'),
    torchReads: [sharedScript(script)],
    torchArgs: (batch, steps) => ['--script', sharedScript(script), '--batch', String(batch), '--steps', String(steps)],
  };
}

export const ARCHS: Record<string, ArchSpec> = {
  resnet20: {
    workload: 'ResNet-20 CIFAR (option A), BN train mode, SGD momentum 0.9 wd 1e-4; MaskSub zero-fill 8 px 50 %',
    batch: (quick) => (quick ? 16 : 128),
    make: (batch) => makeResNetWorkload(batch),
    ...sharedStepInPairs('resnet20_step_torch.py'),
  },
  bert: {
    workload: 'BERT hidden 256, 4 layers, seq 128, AdamW; MaskSub token masking 15 %',
    batch: (quick) => (quick ? 4 : 32),
    make: (batch) => makeBertWorkload(batch),
    ...sharedStepInPairs('bert_step_torch.py'),
  },
  swin: {
    workload: 'Swin 64 px, patch 4, embed 64, depths 2-2-2, window 4 (shifted), AdamW; MaskSub mask-token 50 %',
    batch: (quick) => (quick ? 4 : 32),
    make: (batch) => makeSwinWorkload(batch),
    torchScript: benchScript('swin_step_torch.py'),
    torchArgs: (batch, steps) => ['--batch', String(batch), '--steps', String(steps)],
  },
  clip: {
    workload: 'CLIP both towers 128 wide x 4 layers, 32 px / patch 4, 16 text tokens, contrastive, AdamW; MaskSub token removal 50 %',
    batch: (quick) => (quick ? 8 : 64),
    make: (batch) => makeClipWorkload(batch),
    torchScript: benchScript('clip_step_torch.py'),
    torchArgs: (batch, steps) => ['--batch', String(batch), '--steps', String(steps)],
  },
};

export function benchArch(name: string, opts: { quick: boolean; pairs: number; torch: boolean; log: (s: string) => void }): ArchResult {
  const spec = ARCHS[name];
  if (spec === undefined) throw new Error(`--arch: unknown architecture '${name}' (known: vit, ${Object.keys(ARCHS).join(', ')})`);
  const missing = !opts.torch ? 'skipped (--no-torch)' : torchUnavailable(spec.torchScript, ...(spec.torchReads ?? []));
  const torchRuns: TorchRun[] = [];
  const torchSteps = opts.quick ? 3 : Math.max(5, opts.pairs);
  const batch = spec.batch(opts.quick);
  // PyTorch before and (unless quick) after masksub's pairs: the shared VM drifts over minutes,
  // so bracketing puts both engines under the same average load.
  if (missing === null) torchRuns.push(runTorch(spec.torchScript, spec.torchArgs(batch, torchSteps)));
  const rss0 = process.memoryUsage().rss;
  const step = spec.make(batch);
  let peak = rss0;
  const timed = (ms: boolean, i: number) => {
    const t0 = performance.now();
    step.step(ms, i);
    const dt = performance.now() - t0;
    peak = Math.max(peak, process.memoryUsage().rss);
    return dt;
  };
  timed(false, 0);
  timed(true, 0); // warm-up of both graphs
  const std: number[] = [];
  const sub: number[] = [];
  const ratios: number[] = [];
  for (let i = 1; i <= opts.pairs; i++) {
    std.push(timed(false, i));
    sub.push(timed(true, i));
    ratios.push(sub[sub.length - 1] / std[std.length - 1]);
  }
  step.dispose();
  const paired = pairedRatio(ratios);
  const r: ArchResult = {
    arch: name,
    workload: `${spec.workload}, batch ${batch}`,
    ms_standard: median(std)!,
    ms_masksub: median(sub)!,
    masksub_ratio: paired.ratio,
    masksub_ratio_ci95: paired.ci95,
    pytorch_ms_standard: null,
    pytorch_ms_masksub: null,
    pytorch_masksub_ratio: null,
    pytorch_masksub_ratio_ci95: null,
    over_pytorch: null,
    over_pytorch_masksub: null,
    peak_rss_mib: (peak - rss0) / 2 ** 20,
    pytorch_peak_rss_mib: null,
    parameters: step.parameters,
    pytorch_parameters: null,
  };
  opts.log(`  ${name}: masksub standard ${r.ms_standard.toFixed(0)} ms, MaskSub ${r.ms_masksub.toFixed(0)} ms (x${r.masksub_ratio.toFixed(2)}), RSS +${r.peak_rss_mib.toFixed(0)} MiB\n`);
  if (missing !== null) {
    r.pytorch_note = missing;
    return r;
  }
  if (!opts.quick) torchRuns.push(runTorch(spec.torchScript, spec.torchArgs(batch, torchSteps)));
  const mean = (f: (t: TorchRun) => number) => torchRuns.reduce((a, t) => a + f(t), 0) / torchRuns.length;
  r.pytorch_ms_standard = mean((t) => Number(t.result.standard));
  r.pytorch_ms_masksub = mean((t) => Number(t.result.masksub));
  // Every PyTorch step here is timed in interleaved pairs (bench/torch/pairs.py): its ratio is
  // the median of the pair ratios of both runs together, with its interval, as masksub's own.
  const torchPaired = pairedRatio(torchRuns.flatMap((t) => (Array.isArray(t.result.pair_ratios) ? (t.result.pair_ratios as number[]) : [])));
  r.pytorch_masksub_ratio = torchPaired.ratio;
  r.pytorch_masksub_ratio_ci95 = torchPaired.ci95;
  r.over_pytorch = r.ms_standard / r.pytorch_ms_standard;
  r.over_pytorch_masksub = r.ms_masksub / r.pytorch_ms_masksub;
  r.pytorch_peak_rss_mib = Math.max(...torchRuns.map((t) => t.peakRssMiB));
  const torchParams = torchRuns[0].result.params;
  r.pytorch_parameters = typeof torchParams === 'number' ? torchParams : null;
  if (r.pytorch_parameters !== null && r.pytorch_parameters !== r.parameters) {
    opts.log(`  ${name}: WARNING the PyTorch step has ${r.pytorch_parameters} parameters, masksub's ${r.parameters}: not the same model\n`);
  }
  opts.log(`  ${name}: PyTorch standard ${r.pytorch_ms_standard.toFixed(0)} ms, MaskSub ${r.pytorch_ms_masksub.toFixed(0)} ms; masksub / PyTorch ${r.over_pytorch.toFixed(2)}x / ${r.over_pytorch_masksub.toFixed(2)}x\n`);
  return r;
}
