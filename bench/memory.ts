/**
 * `pnpm bench:memory`: where a training step's memory peak is, on the wasm backend.
 *
 * Follows one step (after `--warmup` steps) allocation by allocation: every `_malloc` / `_free`
 * the wasm backend makes for tensor data is counted (the live bytes on the heap and their
 * high-water mark), every kernel call is tagged with the phase it runs in (forward; backward,
 * i.e. inside tfjs' 'backward' scope; after: everything once the first backward has ended, the
 * optimizer update and, in two-pass MaskSub steps, the sub pass),
 * and after each kernel tfjs' numBytes, the heap size and the process RSS are sampled. At the
 * peak of live heap bytes it prints what is live, grouped by the phase and kernel that
 * allocated it, so "the peak is in the backward of MatMul, with N MiB of forward activations
 * still live" is read off directly.
 *
 * Not counted: memory the wasm module allocates internally (XNNPACK's workspaces), which shows
 * only in the heap size, and the native addon's own buffers, which show only in the RSS.
 */
import { Command } from 'commander';
import { initBackend, observeAllocations, tf, type AllocationObserver } from '@masksub/core';
import { CASES, makeWorkload } from './workload.js';
import { makeResNetWorkload } from './arch/resnet.js';
import { usageError } from './usage.js';

const program = new Command('bench:memory')
  .option('--arch <name>', 'vit (the bench ViT) or resnet20', 'vit')
  .option('--batch <n>', 'batch size (vit 64, resnet20 128)')
  .option('--case <name>', `vit: one of ${CASES.map((c) => c.name).join(', ')}; resnet20: standard or masksub`, 'standard')
  .option('--warmup <n>', 'steps before the traced one (0 traces the very first step)', '1')
  .option('--top <n>', 'rows of the live-memory breakdown', '15');
program.parse(process.argv);
const opts = program.opts<{ arch: string; batch?: string; case: string; warmup: string; top: string }>();

const info = await initBackend({ prefer: 'wasm', log: () => {} });
if (info.name !== 'wasm') throw new Error(`bench:memory needs the wasm backend, got ${info.name}`);
const MiB = 2 ** 20;
const rss = () => process.memoryUsage.rss();
const rssStart = rss();

let step: (i: number) => void;
let dispose: () => void;
if (opts.arch === 'vit') {
  const w = makeWorkload(Number(opts.batch ?? 64));
  const c = CASES.find((x) => x.name === opts.case);
  if (c === undefined) usageError(program, `--case: unknown case '${opts.case}' (known: ${CASES.map((x) => x.name).join(', ')})`);
  step = (i) => void w.step(c, i);
  dispose = () => w.dispose();
} else if (opts.arch === 'resnet20') {
  const w = makeResNetWorkload(Number(opts.batch ?? 128));
  if (opts.case !== 'standard' && opts.case !== 'masksub') usageError(program, `--case: resnet20 has 'standard' and 'masksub', got '${opts.case}'`);
  const masksub = opts.case === 'masksub';
  step = (i) => void w.step(masksub, i);
  dispose = () => w.dispose();
} else {
  usageError(program, `--arch: unknown architecture '${opts.arch}' (known: vit, resnet20)`);
}

type Phase = 'forward' | 'backward' | 'after';
interface Block {
  bytes: number;
  origin: string;
}
const wasm = (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm;
const engineState = (tf.engine() as unknown as { state: { scopeStack: { name: string }[] } }).state;

let tracing = false;
let phase: Phase = 'forward';
let kernel = '(outside kernels)';
const live = new Map<number, Block>();
let liveBytes = 0;
let peak = { bytes: 0, phase: 'forward' as Phase, kernel: '', index: 0, breakdown: new Map<string, number>() };
let kernelIndex = 0;
const origin = () => `${phase} ${kernel}`;

/** Counts the traced step's blocks (core's observeAllocations reports each one). */
const stepAllocations: AllocationObserver = {
  allocated(pointer, bytes) {
    live.set(pointer, { bytes, origin: origin() });
    liveBytes += bytes;
    if (liveBytes > peak.bytes) peak = { bytes: liveBytes, phase, kernel, index: kernelIndex, breakdown: new Map() };
  },
  freed(pointer, bytes) {
    live.delete(pointer);
    liveBytes -= bytes;
  },
};

/** What is live right now, by the phase and kernel that allocated it (blocks from before the traced step: "before"). */
function breakdown(): Map<string, number> {
  const m = new Map<string, number>();
  for (const b of live.values()) m.set(b.origin, (m.get(b.origin) ?? 0) + b.bytes);
  return m;
}

interface Sample {
  index: number;
  phase: Phase;
  kernel: string;
  liveMiB: number;
  tfMiB: number;
  heapMiB: number;
  rssMiB: number;
}
const samples: Sample[] = [];
type Call = (args: unknown) => unknown;
for (const config of tf.getKernelsForBackend('wasm')) {
  const inner = config.kernelFunc as unknown as Call;
  const traced: Call = (args) => {
    if (!tracing) return inner(args);
    if (phase !== 'after') phase = engineState.scopeStack.some((s) => s.name === 'backward') ? 'backward' : phase === 'backward' ? 'after' : 'forward';
    kernel = config.kernelName;
    kernelIndex++;
    const before = peak.bytes;
    const out = inner(args);
    // The breakdown is taken once the kernel that set a new peak returns (its output is live then).
    if (peak.bytes > before) peak.breakdown = breakdown();
    samples.push({ index: kernelIndex, phase, kernel, liveMiB: liveBytes / MiB, tfMiB: tf.memory().numBytes / MiB, heapMiB: wasm.HEAPU8.length / MiB, rssMiB: (rss() - rssStart) / MiB });
    kernel = '(outside kernels)';
    return out;
  };
  tf.unregisterKernel(config.kernelName, 'wasm');
  tf.registerKernel({ ...config, kernelFunc: traced as unknown as tf.KernelFunc });
}

const warmup = Number(opts.warmup);
for (let i = 0; i < warmup; i++) step(i);
const heapBefore = wasm.HEAPU8.length;
const rssBefore = rss();
const tfBefore = tf.memory().numBytes;
// Blocks allocated before the traced step (weights, optimizer moments, inputs) are not in `live`:
// liveBytes counts only what the step adds, the quantity the step's peak RSS is about.
tracing = true;
phase = 'forward';
const t0 = performance.now();
observeAllocations(stepAllocations, () => step(warmup));
const ms = performance.now() - t0;
tracing = false;

const row = (label: string, v: number) => console.log(`  ${label.padEnd(44)} ${v.toFixed(1).padStart(8)} MiB`);
console.log(`wasm (${info.detail}), ${opts.arch} ${opts.case}, batch ${opts.batch ?? (opts.arch === 'vit' ? 64 : 128)}, step ${warmup} traced (${ms.toFixed(0)} ms with tracing)`);
row('tfjs tensor bytes before the step', tfBefore / MiB);
row('RSS growth before the step (workload, warm-up)', (rssBefore - rssStart) / MiB);
row('wasm heap before the step', heapBefore / MiB);
row('wasm heap after the step', wasm.HEAPU8.length / MiB);
row('RSS growth after the step (over process start)', (rss() - rssStart) / MiB);
row(`peak live heap bytes the step added (${peak.phase} ${peak.kernel}, kernel #${peak.index} of ${kernelIndex})`, peak.bytes / MiB);
const byPhase = (p: Phase) => samples.filter((s) => s.phase === p);
for (const p of ['forward', 'backward', 'after'] as Phase[]) {
  const s = byPhase(p);
  if (s.length === 0) continue;
  const maxLive = Math.max(...s.map((x) => x.liveMiB));
  const maxTf = Math.max(...s.map((x) => x.tfMiB));
  console.log(`  ${p.padEnd(9)} ${String(s.length).padStart(5)} kernels: live heap max ${maxLive.toFixed(1)} MiB (end ${s[s.length - 1].liveMiB.toFixed(1)}), tfjs numBytes max ${(maxTf - tfBefore / MiB).toFixed(1)} MiB over the step's start, heap ${s[s.length - 1].heapMiB.toFixed(0)} MiB, RSS +${s[s.length - 1].rssMiB.toFixed(0)} MiB`);
}
console.log(`\nlive at the peak (${(peak.bytes / MiB).toFixed(1)} MiB), by the phase and kernel that allocated it:`);
const rows = [...peak.breakdown].sort((a, b) => b[1] - a[1]);
for (const [k, b] of rows.slice(0, Number(opts.top))) console.log(`  ${k.padEnd(44)} ${(b / MiB).toFixed(1).padStart(8)} MiB`);
const phaseTotals = new Map<string, number>();
for (const [k, b] of rows) phaseTotals.set(k.split(' ')[0], (phaseTotals.get(k.split(' ')[0]) ?? 0) + b);
console.log(`  by phase: ${[...phaseTotals].map(([p, b]) => `${p} ${(b / MiB).toFixed(1)} MiB`).join(', ')}`);
dispose();
