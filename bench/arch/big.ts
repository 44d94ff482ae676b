/**
 * Real sizes for `pnpm bench --arch vit-b16,bert-base` (issue 12, target 4): per effective batch,
 * masksub's standard and MaskSub updates (each as the largest micro-batch that fits the 4 GiB wasm
 * heap, with gradient accumulation: one optimizer update per effective batch) against the PyTorch
 * step at the full batch. Each masksub case runs in a child process of its own (big-case.ts: the
 * wasm heap never shrinks, so readings in one shared process would carry the largest case's
 * heap into every later one); PyTorch runs after masksub's cases of the same batch.
 * Not in the default --arch set: a full run takes about 20 minutes on 2 cores.
 */
import { resolve } from 'node:path';
import type { ArchResult } from './compare.js';
import { BIG_ARCHS, type BigCaseResult } from './big-spec.js';
import { runChildJson } from './child.js';
import { runTorch, torchUnavailable, type TorchRun } from './torch.js';

export { BIG_ARCHS };

export interface BigBatchCase {
  batch: number;
  standard: BigCaseResult;
  masksub: BigCaseResult;
  ms_standard: number | null;
  ms_masksub: number | null;
  /** Median of MaskSub / standard over pairs timed in one process (big-case.ts). */
  masksub_ratio: number | null;
  /** ms_masksub / ms_standard: the two processes' medians, timed minutes apart. */
  masksub_ratio_of_medians: number | null;
  pytorch_ms_standard: number | null;
  pytorch_ms_masksub: number | null;
  pytorch_masksub_ratio: number | null;
  over_pytorch: number | null;
  over_pytorch_masksub: number | null;
  peak_rss_mib: number | null;
  pytorch_peak_rss_mib: number | null;
  pytorch_note?: string;
}

/** The headline keys (as the other architectures', from the smallest batch) plus every batch's case. */
export type BigArchResult = Omit<ArchResult, 'ms_standard' | 'ms_masksub' | 'masksub_ratio' | 'peak_rss_mib' | 'parameters'> & {
  ms_standard: number | null;
  ms_masksub: number | null;
  masksub_ratio: number | null;
  peak_rss_mib: number | null;
  parameters: number | null;
  parameter_note?: string;
  cases: BigBatchCase[];
};

const CHILD = resolve(import.meta.dirname, 'big-case.ts');
/** A case that runs longer than this is reported as failed, not waited for (a heap crawl). */
const CASE_TIMEOUT_MS = 20 * 60_000;

function runCase(arch: string, batch: number, variant: 'standard' | 'masksub', updates: number, log: (s: string) => void): BigCaseResult {
  const child = runChildJson<BigCaseResult>(CHILD, [arch, String(batch), variant, String(updates)], CASE_TIMEOUT_MS);
  if (child.ok) return child.value;
  const { why } = child;
  log(`  ${arch} batch ${batch} ${variant}: FAILED (${why})\n`);
  return {
    status: 'failed',
    arch,
    batch,
    variant,
    parameters: null,
    micro_batch: null,
    accum_steps: null,
    planned_step_mib: null,
    limit_mib: null,
    ms_per_update: null,
    ms_per_update_all: [],
    peak_rss_mib: null,
    heap_high_water_mib: null,
    peak_tensor_mib: null,
    message: why,
  };
}

function describe(c: BigCaseResult): string {
  if (c.status !== 'ok') return `${c.status.toUpperCase()}: ${c.message ?? ''}`;
  return `${c.ms_per_update!.toFixed(0)} ms/update as ${c.micro_batch} x ${c.accum_steps}, RSS +${c.peak_rss_mib!.toFixed(0)} MiB, heap ${c.heap_high_water_mib!.toFixed(0)} MiB (planned ${c.planned_step_mib!.toFixed(0)})`;
}

export function benchBigArch(name: string, opts: { quick: boolean; updates?: number; torch: boolean; log: (s: string) => void }): BigArchResult {
  const spec = BIG_ARCHS[name];
  if (spec === undefined) throw new Error(`--arch: unknown architecture '${name}' (known: ${Object.keys(BIG_ARCHS).join(', ')})`);
  // One timed update per case by default: each is 10-60 s here and every case pays a fresh
  // process, model and memory probe; --steps asks for more (the median is reported).
  const updates = opts.updates ?? 1;
  const missing = !opts.torch ? 'skipped (--no-torch)' : torchUnavailable(spec.torchScript, ...(spec.torchReads ?? []));
  const cases: BigBatchCase[] = [];
  let torchParams: number | null = null;
  for (const batch of spec.batches(opts.quick)) {
    const standard = runCase(name, batch, 'standard', updates, opts.log);
    opts.log(`  ${name} batch ${batch} standard: ${describe(standard)}\n`);
    const masksub = runCase(name, batch, 'masksub', updates, opts.log);
    opts.log(`  ${name} batch ${batch} MaskSub: ${describe(masksub)}\n`);
    const ms = (c: BigCaseResult) => (c.status === 'ok' ? c.ms_per_update : null);
    const c: BigBatchCase = {
      batch,
      standard,
      masksub,
      ms_standard: ms(standard),
      ms_masksub: ms(masksub),
      // The pairs timed in the MaskSub case's process, not the two processes' medians (drift).
      masksub_ratio: masksub.status === 'ok' ? (masksub.masksub_ratio_paired ?? null) : null,
      masksub_ratio_of_medians: ms(standard) && ms(masksub) ? ms(masksub)! / ms(standard)! : null,
      pytorch_ms_standard: null,
      pytorch_ms_masksub: null,
      pytorch_masksub_ratio: null,
      over_pytorch: null,
      over_pytorch_masksub: null,
      peak_rss_mib: standard.peak_rss_mib === null && masksub.peak_rss_mib === null ? null : Math.max(standard.peak_rss_mib ?? 0, masksub.peak_rss_mib ?? 0),
      pytorch_peak_rss_mib: null,
    };
    if (missing !== null) c.pytorch_note = missing;
    else {
      try {
        const std: TorchRun = runTorch(spec.torchScript, spec.torchArgs(batch, updates));
        c.pytorch_ms_standard = Number(std.result.standard);
        c.pytorch_ms_masksub = Number(std.result.masksub);
        c.pytorch_peak_rss_mib = std.peakRssMiB;
        c.pytorch_note = spec.torchNote;
        c.pytorch_masksub_ratio = c.pytorch_ms_masksub / c.pytorch_ms_standard;
        if (c.ms_standard !== null) c.over_pytorch = c.ms_standard / c.pytorch_ms_standard;
        if (c.ms_masksub !== null) c.over_pytorch_masksub = c.ms_masksub / c.pytorch_ms_masksub;
        if (typeof std.result.params === 'number') torchParams = std.result.params;
        opts.log(`  ${name} batch ${batch} PyTorch: standard ${c.pytorch_ms_standard.toFixed(0)} ms, MaskSub ${c.pytorch_ms_masksub.toFixed(0)} ms, RSS +${c.pytorch_peak_rss_mib.toFixed(0)} MiB\n`);
      } catch (e) {
        c.pytorch_note = `failed: ${(e as Error).message.split('\n').slice(0, 2).join(' ')}`;
        opts.log(`  ${name} batch ${batch} PyTorch: FAILED (${c.pytorch_note})\n`);
      }
    }
    cases.push(c);
    // The whole case on stderr too: a run stopped part-way still leaves every finished case's numbers.
    opts.log(`  ${name} batch ${batch} case: ${JSON.stringify(c)}\n`);
  }
  const params = cases.flatMap((c) => [c.standard.parameters, c.masksub.parameters]).find((p) => p !== null) ?? null;
  const first = cases[0];
  const r: BigArchResult = {
    arch: name,
    workload: `${spec.workload}; effective batches ${cases.map((c) => c.batch).join(' and ')} (headline keys: the first), ${updates} timed updates per case`,
    ms_standard: first.ms_standard,
    ms_masksub: first.ms_masksub,
    masksub_ratio: first.masksub_ratio,
    // A few timed updates per case: too few pairs for a 95 % interval.
    masksub_ratio_ci95: null,
    pytorch_masksub_ratio_ci95: null,
    pytorch_ms_standard: first.pytorch_ms_standard,
    pytorch_ms_masksub: first.pytorch_ms_masksub,
    pytorch_masksub_ratio: first.pytorch_masksub_ratio,
    over_pytorch: first.over_pytorch,
    over_pytorch_masksub: first.over_pytorch_masksub,
    peak_rss_mib: first.peak_rss_mib,
    pytorch_peak_rss_mib: first.pytorch_peak_rss_mib,
    parameters: params,
    pytorch_parameters: torchParams,
    ...(first.pytorch_note !== undefined ? { pytorch_note: first.pytorch_note } : {}),
    cases,
  };
  if (params !== null && torchParams !== null && params !== torchParams) {
    const note = spec.parameterNote?.(params, torchParams) ?? null;
    r.parameter_note = note ?? `WARNING: not the same model (masksub ${params}, PyTorch ${torchParams})`;
    opts.log(`  ${name}: parameters masksub ${params}, PyTorch ${torchParams}: ${r.parameter_note}\n`);
  }
  return r;
}

/** The per-case table `pnpm bench` prints for the real-size architectures. */
export function formatBigArchTable(results: BigArchResult[]): string[] {
  const f = (v: number | null | undefined, d = 0) => (typeof v === 'number' ? v.toFixed(d) : '-');
  const lines = [
    `${'arch'.padEnd(10)} ${'batch'.padStart(5)} ${'variant'.padEnd(9)} ${'micro x acc'.padStart(11)} ${'ms/update'.padStart(10)} ${'torch ms'.padStart(9)} ${'/torch'.padStart(7)} ${'RSS MiB'.padStart(8)} ${'torch RSS'.padStart(9)} ${'heap MiB'.padStart(9)} ${'tensor MiB'.padStart(10)}  status`,
  ];
  for (const r of results) {
    for (const c of r.cases) {
      for (const [variant, k] of [
        ['standard', c.standard],
        ['MaskSub', c.masksub],
      ] as const) {
        const torchMs = variant === 'standard' ? c.pytorch_ms_standard : c.pytorch_ms_masksub;
        const over = variant === 'standard' ? c.over_pytorch : c.over_pytorch_masksub;
        const plan = k.micro_batch !== null ? `${k.micro_batch} x ${k.accum_steps}` : '-';
        const status = k.status === 'ok' ? 'ok' : `${k.status}: ${k.message ?? ''}`.slice(0, 120);
        lines.push(
          `${r.arch.padEnd(10)} ${String(c.batch).padStart(5)} ${variant.padEnd(9)} ${plan.padStart(11)} ${f(k.ms_per_update).padStart(10)} ${f(torchMs).padStart(9)} ${f(over, 2).padStart(7)} ${f(k.peak_rss_mib).padStart(8)} ${f(variant === 'standard' ? c.pytorch_peak_rss_mib : null).padStart(9)} ${f(k.heap_high_water_mib).padStart(9)} ${f(k.peak_tensor_mib).padStart(10)}  ${status}`,
        );
      }
    }
    for (const c of r.cases) {
      lines.push(`${r.arch} batch ${c.batch}: MaskSub / standard ${f(c.masksub_ratio, 2)} in pairs in one process (the two processes' medians: ${f(c.masksub_ratio_of_medians, 2)}); PyTorch's ${f(c.pytorch_masksub_ratio, 2)}`);
    }
    if (r.parameters !== null) lines.push(`${r.arch}: ${(r.parameters / 1e6).toFixed(2)} M parameters (PyTorch ${r.pytorch_parameters !== null ? `${(r.pytorch_parameters / 1e6).toFixed(2)} M` : 'n/a'})${r.parameter_note ? `; ${r.parameter_note}` : ''}`);
  }
  return lines;
}
