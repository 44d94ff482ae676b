/**
 * `pnpm bench:profile`: where a training step's time goes, per tfjs kernel, on the wasm backend.
 *
 * Wraps every registered wasm kernel with a timer (wasm kernels run synchronously, so the time
 * around the call is the kernel's), runs a few steps of each requested case of the bench
 * workload and prints calls and ms per step for each kernel, plus the time spent outside
 * kernels (tfjs' engine, autodiff bookkeeping, ops computed in JS such as random numbers).
 * `--shapes` splits matmuls, transposes and copies by input shapes and attributes. `--phases`
 * splits each case's time into the main pass, the sub pass and what
 * lies around them: forward wall time, backward kernel time, and the kernels after each pass
 * (after the main pass: mask sampling, the dropped view, the teacher; after the sub pass: the
 * gradient sum and the optimizer).
 */
import { Command } from 'commander';
import { initBackend, tf, type AdapterModel } from '@masksub/core';
import { CASES, makeWorkload } from './workload.js';
import { ARCHS } from './arch/compare.js';
import { BIG_ARCHS } from './arch/big-spec.js';
import { twoStepWorkload } from './arch/step.js';
import { usageError } from './usage.js';

const program = new Command('bench:profile')
  .option('--batch <n>', 'batch size', '64')
  .option('--steps <n>', 'profiled steps per case (after 2 warm-up steps)', '3')
  .option('--cases <list>', `comma-separated cases: ${CASES.map((c) => c.name).join(', ')}`, 'standard,masksub token-removal')
  .option('--top <n>', 'kernels listed per case', '25')
  .option('--shapes', 'split matmul / transpose / copy kernels by shape')
  .option('--all-shapes', 'split every kernel by shape (with --shapes)')
  .option('--phases', 'split each step into main pass, sub pass and the work around them')
  .option(
    '--arch <name>',
    `vit (the bench ViT; --cases apply), ${Object.keys(ARCHS).join(', ')} (the bench's batch unless --batch; cases standard, masksub) or the real sizes ${Object.keys(BIG_ARCHS).join(', ')} (batch 8 unless --batch, one micro-batch)`,
    'vit',
  );
program.parse(process.argv);
const opts = program.opts<{ arch: string; batch: string; steps: string; cases: string; top: string; shapes?: boolean; allShapes?: boolean; phases?: boolean }>();

const info = await initBackend({ prefer: 'wasm', log: () => {} });
if (info.name !== 'wasm') throw new Error(`bench:profile needs the wasm backend, got ${info.name}`);
const steps = Number(opts.steps);
interface Profiled {
  name: string;
  step(i: number): void;
}
let cases: Profiled[];
let dispose: () => void;
/** The phase kernels are charged to with --phases: '<pass> fwd', '<pass> bwd', 'after <pass>'. */
let forwards = 0;
let inForward = false;
const passName = () => (forwards <= 1 ? 'main' : 'sub');
const phaseWall = new Map<string, number>();
function phaseOf(): string {
  if (forwards === 0) return 'before main';
  if (inForward) return `${passName()} fwd`;
  const backward = tf.engine().state.scopeStack.some((s) => s.name === 'backward');
  return backward ? `${passName()} bwd` : `after ${passName()}`;
}
const archSpec = ARCHS[opts.arch];
let model: AdapterModel;
if (opts.arch === 'vit') {
  const workload = makeWorkload(Number(opts.batch));
  model = workload.model;
  cases = opts.cases.split(',').map((name) => {
    const c = CASES.find((x) => x.name === name.trim());
    if (c === undefined) usageError(program, `--cases: unknown case '${name}' (known: ${CASES.map((x) => x.name).join(', ')})`);
    return { name: c.name, step: (i: number) => void workload.step(c, i) };
  });
  dispose = () => workload.dispose();
} else if (archSpec !== undefined || opts.arch in BIG_ARCHS) {
  const defaultBatch = program.getOptionValueSource('batch') === 'default';
  let w: ReturnType<NonNullable<typeof archSpec>['make']>;
  if (archSpec !== undefined) w = archSpec.make(defaultBatch ? archSpec.batch(false) : Number(opts.batch));
  else {
    const big = BIG_ARCHS[opts.arch];
    const made = big.make(defaultBatch ? 8 : Number(opts.batch));
    // (twoStepWorkload disposes the model; the batch's tensors go with the process.)
    w = twoStepWorkload(made.model, made.batch, { optimizer: big.optimizer, lr: big.lr, masksub: big.masksub, tensors: [] });
  }
  model = w.model;
  cases = [false, true].map((ms) => ({ name: ms ? 'masksub' : 'standard', step: (i: number) => void w.step(ms, i) }));
  dispose = () => w.dispose();
} else {
  usageError(program, `--arch: unknown architecture '${opts.arch}' (known: vit, ${[...Object.keys(ARCHS), ...Object.keys(BIG_ARCHS)].join(', ')})`);
}
// The trainer calls model.forward (or, with a shared branch, its forwardWith) once per pass:
// the first call of a step is the main pass.
const counted = <A extends unknown[]>(f: (...args: A) => tf.Tensor) => (...args: A): tf.Tensor => {
  forwards++;
  inForward = true;
  const t0 = performance.now();
  try {
    return f(...args);
  } finally {
    inForward = false;
    const key = `${passName()} fwd`;
    if (recording) phaseWall.set(key, (phaseWall.get(key) ?? 0) + performance.now() - t0);
  }
};
model.forward = counted(model.forward.bind(model));
const branch = model.sharedBranch;
if (branch) branch.forwardWith = counted(branch.forwardWith.bind(branch));

const stats = new Map<string, { calls: number; ms: number }>();
let recording = false;
const SHAPED = opts.allShapes ? /./ : /MatMul|Transpose|Gather|Split|Slice|Concat/;
type Call = (args: { inputs: Record<string, { shape: number[] } | undefined>; attrs?: Record<string, unknown> }) => unknown;

function keyOf(kernel: string, args: Parameters<Call>[0]): string {
  if (!opts.shapes || !SHAPED.test(kernel)) return kernel;
  const shapes = Object.values(args.inputs).map((t) => t?.shape.join('x') ?? '-');
  return `${kernel} ${shapes.join(',')} ${JSON.stringify(args.attrs ?? {})}`;
}

for (const config of tf.getKernelsForBackend('wasm')) {
  const inner = config.kernelFunc as unknown as Call;
  const timed: Call = (args) => {
    if (!recording) return inner(args);
    const t0 = performance.now();
    const out = inner(args);
    const key = opts.phases ? `${phaseOf()}: ${keyOf(config.kernelName, args)}` : keyOf(config.kernelName, args);
    const s = stats.get(key) ?? { calls: 0, ms: 0 };
    s.calls++;
    s.ms += performance.now() - t0;
    stats.set(key, s);
    return out;
  };
  tf.unregisterKernel(config.kernelName, 'wasm');
  tf.registerKernel({ ...config, kernelFunc: timed as unknown as tf.KernelFunc });
}

console.log(`wasm (${info.detail}), ${opts.arch}, ${steps} profiled steps per case`);
for (const c of cases) {
  c.step(0);
  c.step(1);
  stats.clear();
  recording = true;
  const t0 = performance.now();
  phaseWall.clear();
  for (let i = 0; i < steps; i++) {
    forwards = 0;
    c.step(2 + i);
  }
  const stepMs = (performance.now() - t0) / steps;
  recording = false;
  const rows = [...stats].sort((a, b) => b[1].ms - a[1].ms);
  const kernelMs = rows.reduce((acc, [, s]) => acc + s.ms, 0) / steps;
  const calls = rows.reduce((acc, [, s]) => acc + s.calls, 0) / steps;
  console.log(`\n${c.name}: ${stepMs.toFixed(0)} ms/step = ${kernelMs.toFixed(0)} ms in ${calls.toFixed(0)} kernel calls + ${(stepMs - kernelMs).toFixed(0)} ms outside kernels`);
  if (opts.phases) {
    // Kernel time per phase, and the forward's wall time (kernels + tfjs bookkeeping + JS ops).
    const byPhase = new Map<string, { calls: number; ms: number }>();
    for (const [key, st] of rows) {
      const phase = key.slice(0, key.indexOf(':'));
      const acc = byPhase.get(phase) ?? { calls: 0, ms: 0 };
      acc.calls += st.calls;
      acc.ms += st.ms;
      byPhase.set(phase, acc);
    }
    const order = ['before main', 'main fwd', 'main bwd', 'after main', 'sub fwd', 'sub bwd', 'after sub'];
    for (const phase of order) {
      const st = byPhase.get(phase);
      if (!st) continue;
      const wall = phaseWall.get(phase);
      const wallText = wall === undefined ? '' : `, ${(wall / steps).toFixed(1)} ms wall`;
      console.log(`  [${phase}] ${(st.ms / steps).toFixed(1)} ms in ${(st.calls / steps).toFixed(0)} kernel calls${wallText}`);
    }
  }
  const width = Math.max(28, ...rows.slice(0, Number(opts.top)).map(([k]) => k.length + 2));
  for (const [kernel, s] of rows.slice(0, Number(opts.top))) {
    const share = ((100 * s.ms) / steps / stepMs).toFixed(1);
    console.log(`  ${kernel.padEnd(width)} ${(s.calls / steps).toFixed(0).padStart(6)} calls ${(s.ms / steps).toFixed(1).padStart(8)} ms ${share.padStart(5)} %`);
  }
}
dispose();
