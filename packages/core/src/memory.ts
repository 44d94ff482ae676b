/**
 * How much tensor memory a training step needs, found before the first real step, so a step that
 * cannot fit in the backend's memory fails at once with an error that says what to do, instead of
 * growing the heap until the process crawls or is killed (tfjs' wasm heap is 32-bit: 4 GiB).
 *
 * The estimate is measured, not modelled: the step's gradient computation runs on the first n
 * examples of the batch for a few n (probes); each probe's peak is the tensor memory it held at
 * once, and the step at other sizes is read off those points.
 *
 * A step's peak is the larger of a few phases, each linear in the batch with an intercept no
 * lower than what was held before (the floor): the activations of a pass; the end of a backward,
 * when every parameter's gradient exists (with a MaskSub sub pass running on top of them). The
 * peak is therefore convex in the batch: between two probes the straight line lies above it, and
 * past the largest probe the line from the floor through it, floor + n (peak - floor) / examples,
 * is an upper bound. A line through two probes, extrapolated, is not: through probes at 2 and 4
 * examples, where the gradients' phase set the peak, it planned BERT-base batch 8 standard at
 * 1,774 MiB (`pnpm bench --arch bert-base` at ec9815e); the step holds 2,147 (measured at 8 at
 * 83ae75b).
 *
 * So the probes go as large as is safe. Under a memory limit: one example first, then each probe
 * as large as the previous one's upper bound keeps under SAFE_PROBE_FRACTION of the limit (a
 * probe is a step, and a quarter of a large batch can be what does not fit), up to the batch
 * itself, whose estimate is then its measurement. Without a limit: the batch itself.
 *
 * Everything alive before the probes is in the floor as it is: the weights, the batch and the
 * optimizer's state (masksub's optimizers create theirs with the optimizer, so create it first).
 * A probe's peak on wasm is the allocations counted at the allocator (backend/wasm_heap.ts), not
 * the heap's size, which grows in steps of up to 96 MiB and never shrinks, so it says little
 * about one probe; elsewhere tf.profile's peak bytes. (tfjs' byte count during a step is no
 * measure on wasm: views over one buffer, which masksub's native kernels make, are counted once
 * each; for ViT-B/16 it reads 2.7x.) The probes leave no trace: the trainer's RNG and every
 * non-trainable variable (batch-norm running statistics) are restored afterwards.
 */
import { OptionError } from './errors.js';
import { tf } from './tf.js';
import { peakAllocationDuring } from './backend/wasm_heap.js';
import type { Batch, MaskSubTrainer } from './masksub.js';
import type { ModelInputs } from './model.js';
import type { Targets } from './contract/loss.js';

/** Environment variable: a tensor-memory limit in MiB, for any backend (e.g. to leave room for other jobs). */
export const MEMORY_LIMIT_ENV = 'MASKSUB_MEMORY_LIMIT_MIB';

/** A tensor-memory limit and where it comes from. */
export interface MemoryLimit {
  bytes: number;
  /** 'env': MASKSUB_MEMORY_LIMIT_MIB; 'wasm': the 32-bit wasm heap. */
  source: 'env' | 'wasm';
}

/**
 * The largest tensor memory the running backend can hold, or null when only the machine bounds
 * it; MASKSUB_MEMORY_LIMIT_MIB sets a lower one on any backend.
 */
export function backendMemoryLimit(): MemoryLimit | null {
  const raw = process.env[MEMORY_LIMIT_ENV];
  if (raw !== undefined && raw !== '') {
    const mib = Number(raw);
    if (!(Number.isFinite(mib) && mib > 0)) throw new OptionError(MEMORY_LIMIT_ENV, `must be a positive number of MiB, got '${raw}'`);
    return { bytes: mib * 2 ** 20, source: 'env' };
  }
  // tfjs' wasm module is built for a 32-bit address space (memory growth up to 4 GiB).
  return wasmHeapBytes() === null ? null : { bytes: 2 ** 32, source: 'wasm' };
}

/** {@link backendMemoryLimit}'s bytes. */
export function backendMemoryLimitBytes(): number | null {
  return backendMemoryLimit()?.bytes ?? null;
}

/** Size of the running backend's heap when it has one that only grows (wasm), else null. */
export function wasmHeapBytes(): number | null {
  if (tf.getBackend() !== 'wasm') return null;
  const heap = (tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } }).wasm?.HEAPU8;
  return heap ? heap.length : null;
}

/** One probe: a gradient computation on the first `examples` examples and the bytes it held at its peak. */
export interface MemoryProbe {
  examples: number;
  bytes: number;
}

export interface StepMemoryEstimate {
  /** Tensor bytes of a step at the batch size asked for (peak, including everything held before). */
  peakBytes: number;
  /** What was held before the probes (weights, optimizer state, the batch). */
  floorBytes: number;
  /** The probes that ran, by examples ascending (the last is the batch itself where that was safe). */
  probes: MemoryProbe[];
}

/**
 * A step's peak bytes at `examples` by the estimate's probes: their measurement at a probed size,
 * the line between the two probes around it, the smallest probe below them (the peak does not
 * fall with the batch), and past the largest the line from the floor through it (see the module
 * comment: an upper bound for a peak convex in the batch).
 */
export function stepBytesAt(estimate: Pick<StepMemoryEstimate, 'floorBytes' | 'probes'>, examples: number): number {
  const { probes, floorBytes } = estimate;
  if (probes.length === 0) throw new Error('stepBytesAt: the estimate has no probes');
  const first = probes[0];
  if (examples <= first.examples) return first.bytes;
  for (let i = 1; i < probes.length; i++) {
    const [a, b] = [probes[i - 1], probes[i]];
    if (examples <= b.examples) return a.bytes + ((examples - a.examples) * (b.bytes - a.bytes)) / (b.examples - a.examples);
  }
  const last = probes[probes.length - 1];
  return floorBytes + (examples * Math.max(0, last.bytes - floorBytes)) / last.examples;
}

function firstRows(t: tf.Tensor, n: number): tf.Tensor {
  return tf.slice(t, 0, [n, ...t.shape.slice(1)]);
}

function sliceTargets(targets: Targets, n: number): Targets {
  // Square soft targets over the batch (contrastive image x text) are cut on both axes.
  if ('soft' in targets) {
    const [rows, cols] = targets.soft.shape;
    return { soft: (rows === cols ? tf.slice(targets.soft, [0, 0], [n, n]) : firstRows(targets.soft, n)) as tf.Tensor2D };
  }
  return { labels: firstRows(targets.labels, n) as tf.Tensor1D };
}

/** Size of the batch: the first dimension its inputs share. */
export function batchSizeOf(batch: Batch): number {
  const first = Object.values(batch.inputs)[0];
  if (!first) throw new Error('batch has no inputs');
  return first.shape[0];
}

/**
 * Measures the step's peak tensor memory on probes of the batch (see the module comment): under
 * `limitBytes` one example first, then each probe as large as the previous one's upper bound
 * says is safe, up to the batch itself; without a limit the batch itself.
 */
export async function estimateStepMemory(
  trainer: MaskSubTrainer,
  batch: Batch,
  options: { limitBytes?: number } = {},
): Promise<StepMemoryEstimate> {
  const size = batchSizeOf(batch);
  const rngState = trainer.rng.getState();
  const store = trainer.model.params;
  const trainable = store.trainable();
  const buffers = [...store.variables].filter(([name]) => !trainable.has(name));
  const saved = buffers.map(([, v]) => tf.clone(v));
  // What is held before any probe (weights, optimizer state, the batch): the floor the
  // per-example bytes sit on. tfjs counts each tensor's bytes between steps (a buffer two
  // tensors share, as an EMA copy and its weights until the first update, twice: errs high).
  const floorBytes = tf.memory().numBytes;
  const probes: MemoryProbe[] = [];
  const probe = async (n: number) => {
    // The batch itself at its own size (a copy would add its bytes to the measurement).
    const whole = n === size;
    const sub: Batch = whole
      ? batch
      : tf.tidy(() => ({
          inputs: Object.fromEntries(Object.entries(batch.inputs).map(([k, t]) => [k, firstRows(t, n)])) as ModelInputs,
          targets: sliceTargets(batch.targets, n),
        }));
    const run = () => {
      const r = trainer.computeGradients(sub, 0);
      tf.dispose([...r.grads.values(), r.mainLogits, ...(r.subLogits ? [r.subLogits] : [])]);
    };
    const bytes = tf.getBackend() === 'wasm' ? floorBytes + peakAllocationDuring(run) : (await tf.profile(run)).peakBytes;
    if (!whole) tf.dispose([...Object.values(sub.inputs), 'soft' in sub.targets ? sub.targets.soft : sub.targets.labels]);
    probes.push({ examples: n, bytes });
  };
  const budget = (options.limitBytes ?? Infinity) * SAFE_PROBE_FRACTION;
  /** The most examples the upper bound through probe `p` keeps under the probes' budget. */
  const safeExamples = (p: MemoryProbe) => {
    const perExample = Math.max(0, p.bytes - floorBytes) / p.examples;
    return perExample > 0 ? Math.floor((budget - floorBytes) / perExample) : Infinity;
  };
  try {
    await probe(options.limitBytes === undefined ? size : 1);
    for (;;) {
      const largest = probes[probes.length - 1];
      const next = Math.min(size, safeExamples(largest));
      if (next <= largest.examples) break;
      await probe(next);
    }
  } finally {
    trainer.rng.setState(rngState);
    buffers.forEach(([, v], i) => v.assign(saved[i]));
    tf.dispose(saved);
  }
  return { peakBytes: stepBytesAt({ floorBytes, probes }, size), floorBytes, probes };
}

/** A larger probe is taken only when an upper bound puts it below this share of the memory limit. */
const SAFE_PROBE_FRACTION = 0.8;

/**
 * Headroom a planned step keeps under the memory limit: the wasm heap a step grows to is more than
 * the tensor bytes it holds at its peak (the estimate), by the allocator's fragmentation, the
 * module's own allocations and the heap's growth steps. In `pnpm bench --arch vit-b16,bert-base`
 * at c79475c (each plan the measurement at its batch) the heap ended 2.9-6.0 % above the plan in
 * all eight cases, most for BERT-base batch 8 standard (2,229 MiB for 2,102). Before 9edcf64 it
 * ended 17.8 % above for BERT-base batch 8 MaskSub (2,944 MiB for 2,500): the sum of the two
 * passes' 89 MiB word-embedding gradients found no free run that long; gradient sums now write
 * into the partial sum they consume (backend/kernels/add_into.ts). A step planned into that gap
 * would crash the process instead of failing before the first update.
 */
export const MEMORY_PLAN_MARGIN = 0.15;

/** Whether a step estimated at `bytes` fits under `limitBytes` with the plan's headroom ({@link MEMORY_PLAN_MARGIN}). */
export function fitsWithMargin(bytes: number, limitBytes: number): boolean {
  return bytes * (1 + MEMORY_PLAN_MARGIN) <= limitBytes;
}

/** How an update of `totalExamples` runs under a memory limit: micro-batches with gradient accumulation. */
export interface MicroBatchPlan {
  /** Examples per forward/backward (divides totalExamples). */
  microBatch: number;
  /** Micro-batches per optimizer update (microBatch * accumSteps = totalExamples). */
  accumSteps: number;
  /** The most examples one step can hold under the limit with the plan's headroom, up to the total (0: not even one; the plan is then micro-batch 1 and will not fit). */
  fitsExamples: number;
  /** Estimated peak bytes of a step at microBatch (with accumulation, the gradient sum included). */
  stepBytes: number;
}

/**
 * The largest micro-batch that runs an update of `totalExamples` under `limitBytes`, from a
 * measured estimate (estimateStepMemory at any batch size; {@link stepBytesAt} reads the step at
 * each size off its probes). The whole batch when it fits; else the largest divisor of the total
 * that fits, counting the gradient sum accumulation holds across micro-batches
 * (`accumulationBytes`, 4 bytes per trainable parameter). Either way with the same headroom
 * ({@link MEMORY_PLAN_MARGIN}). The one place that picks micro-batch x accumulation: the
 * trainer's error message and the bench use it.
 */
export function planMicroBatch(
  estimate: Pick<StepMemoryEstimate, 'floorBytes' | 'probes'>,
  options: { limitBytes: number; totalExamples: number; accumulationBytes?: number },
): MicroBatchPlan {
  const total = options.totalExamples;
  if (!(Number.isInteger(total) && total >= 1)) throw new Error(`planMicroBatch: totalExamples must be a positive integer, got ${total}`);
  const accumulation = options.accumulationBytes ?? 0;
  // A step below the total holds the gradient sum beside it.
  const stepBytes = (n: number) => stepBytesAt(estimate, n) + (n < total ? accumulation : 0);
  if (fitsWithMargin(stepBytes(total), options.limitBytes)) {
    return { microBatch: total, accumSteps: 1, fitsExamples: total, stepBytes: stepBytes(total) };
  }
  // The peak only grows with the examples: the first size that does not fit ends the search.
  let fitsExamples = 0;
  while (fitsExamples < total - 1 && fitsWithMargin(stepBytes(fitsExamples + 1), options.limitBytes)) fitsExamples++;
  let micro = 1;
  for (let d = 1; d <= fitsExamples; d++) if (total % d === 0) micro = d;
  return { microBatch: micro, accumSteps: total / micro, fitsExamples, stepBytes: stepBytes(micro) };
}
