/**
 * How much tensor memory a training step needs, found before the first real step, so a step that
 * cannot fit in the backend's memory fails at once with an error that says what to do, instead of
 * growing the heap until the process crawls or is killed (tfjs' wasm heap is 32-bit: 4 GiB).
 *
 * The estimate is measured, not modelled: the step's gradient computation runs on the first n
 * and 2n examples of the batch (n = max(1, floor(B / 4))); activation memory grows linearly with
 * the batch, so peak(B) = peak(n) + (B - n) * (peak(2n) - peak(n)) / n. Under a memory limit a
 * probe on one example comes first, and no probe is larger than its upper bound says is safe: a
 * probe is a step, and a quarter of a large batch can be what does not fit. Everything alive before
 * the probes counts as it is: the weights, the batch and the optimizer's state (masksub's
 * optimizers create theirs with the optimizer, so create it first). A probe's peak is the tensor
 * memory held at once: on wasm the allocations counted at the allocator (backend/wasm_heap.ts),
 * not the heap's size, which grows in steps of up to 96 MiB and never shrinks (heap-size probes
 * of ViT-B/16 at 2 and 4 examples read 98 MiB per example where the step holds 150); elsewhere
 * tf.profile's peak bytes. (tfjs' byte count during a step is no measure on wasm: views over one
 * buffer, which masksub's native kernels make, are counted once each; for ViT-B/16 it reads 2.7x.)
 * The probe leaves no trace: the trainer's RNG and every non-trainable variable (batch-norm
 * running statistics) are restored afterwards.
 */
import { OptionError } from './errors.js';
import { tf } from './tf.js';
import { peakAllocationDuring } from './backend/wasm_heap.js';
import type { Batch, MaskSubTrainer } from './masksub.js';
import type { ModelInputs } from './model.js';
import type { Targets } from './contract/loss.js';

/** Environment variable: a tensor-memory limit in MiB, for any backend (e.g. to leave room for other jobs). */
export const MEMORY_LIMIT_ENV = 'MASKSUB_MEMORY_LIMIT_MIB';

/**
 * The largest tensor memory the running backend can hold, or null when only the machine bounds
 * it; MASKSUB_MEMORY_LIMIT_MIB sets a lower one on any backend.
 */
export function backendMemoryLimitBytes(): number | null {
  const raw = process.env[MEMORY_LIMIT_ENV];
  if (raw !== undefined && raw !== '') {
    const mib = Number(raw);
    if (!(Number.isFinite(mib) && mib > 0)) throw new OptionError(MEMORY_LIMIT_ENV, `must be a positive number of MiB, got '${raw}'`);
    return mib * 2 ** 20;
  }
  // tfjs' wasm module is built for a 32-bit address space (memory growth up to 4 GiB).
  return wasmHeapBytes() === null ? null : 2 ** 32;
}

/** Size of the running backend's heap when it has one that only grows (wasm), else null. */
export function wasmHeapBytes(): number | null {
  if (tf.getBackend() !== 'wasm') return null;
  const heap = (tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } }).wasm?.HEAPU8;
  return heap ? heap.length : null;
}

export interface StepMemoryEstimate {
  /** Tensor bytes of a step at the batch size asked for (peak, including the weights). */
  peakBytes: number;
  /** What each example adds. */
  bytesPerExample: number;
  /**
   * A point of the estimate's line: the largest probe's number of examples and the bytes the line
   * gives there (its measured peak, or the upper bound when the probes measured no growth).
   */
  probeBytes: number;
  probeExamples: number;
  /** The examples of each probe step that ran, in order (2 or 3 of them; 1 for a batch of 1). */
  probeSizes: number[];
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
 * Measures the step's peak tensor memory on the first quarter and half of the batch (under
 * `limitBytes`: after one example, and only as many as that probe's upper bound says are safe)
 * and extrapolates to the batch's size.
 *
 * A step's peak is the larger of two phases: the activations of a pass (growing with the batch)
 * and the end of the backward passes, when every parameter's gradient exists at once (fixed: the
 * parameters' bytes, which a sub pass adds its own onto). At small sizes a large model's fixed
 * phase can hide the activations entirely: ViT-B/16 MaskSub peaked at 1,152 MiB at both 2 and 4
 * examples, then needed 3,579 MiB at 16 (when the step still held both passes' gradients, 2 x the
 * parameters, at its end), so the two probes' difference says
 * nothing about the batch. Such probes (differing by less than a twentieth of what they hold above
 * the memory before probing) are not a measurement of growth; then a larger probe is taken, as
 * large as the batch but only as large as an upper bound says is safe under `limitBytes` (every
 * byte above the floor charged to the examples), and the growth is measured between the two
 * largest probes. Where no safe larger probe exists, that upper bound is the estimate: the plan
 * then errs towards micro-batches, never towards a step that does not fit.
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
  // per-example bytes sit on. Between steps every tensor owns its block, so tfjs' count is exact.
  const floor = tf.memory().numBytes;
  const probes: { n: number; peak: number }[] = [];
  const probe = async (n: number) => {
    const sub: Batch = tf.tidy(() => ({
      inputs: Object.fromEntries(Object.entries(batch.inputs).map(([k, t]) => [k, firstRows(t, n)])) as ModelInputs,
      targets: sliceTargets(batch.targets, n),
    }));
    const run = () => {
      const r = trainer.computeGradients(sub, 0);
      tf.dispose([...r.grads.values(), r.mainLogits, ...(r.subLogits ? [r.subLogits] : [])]);
    };
    const peak = tf.getBackend() === 'wasm' ? floor + peakAllocationDuring(run) : (await tf.profile(run)).peakBytes;
    tf.dispose([...Object.values(sub.inputs), 'soft' in sub.targets ? sub.targets.soft : sub.targets.labels]);
    probes.push({ n, peak });
  };
  const resolved = (a: { n: number; peak: number }, b: { n: number; peak: number }) => b.peak - a.peak >= (b.peak - floor) / 20;
  /** Bytes per example if every byte above the floor grew with the examples: an upper bound. */
  const boundPerExample = (p: { n: number; peak: number }) => Math.max(0, p.peak - floor) / p.n;
  /** The most examples the upper bound from probe `p` says are safe to probe under the limit. */
  const safeExamples = (p: { n: number; peak: number }) => {
    const pe = boundPerExample(p);
    return pe > 0 ? Math.floor(((options.limitBytes ?? Infinity) * SAFE_PROBE_FRACTION - floor) / pe) : Infinity;
  };
  const largest = () => probes[probes.length - 1];
  try {
    const quarter = Math.max(1, Math.floor(size / 4));
    if (size === 1) await probe(1);
    else {
      // A probe is a step itself, and a quarter of the batch may be what does not fit (ViT-B/16
      // at batch 128: 32 examples): under a limit, one example first bounds what is safe to probe.
      if (options.limitBytes !== undefined && quarter > 1) await probe(1);
      const first = probes.length ? Math.min(quarter, safeExamples(largest())) : quarter;
      if (first > (probes.length ? largest().n : 0)) await probe(first);
      const second = Math.min(2 * quarter, safeExamples(largest()));
      if (second > largest().n) await probe(second);
      const [a, b] = probes.slice(-2);
      if (b !== undefined && !resolved(a, b) && size > b.n) {
        const m = Math.min(size, safeExamples(b));
        if (m > b.n) await probe(m);
      }
    }
  } finally {
    trainer.rng.setState(rngState);
    buffers.forEach(([, v], i) => v.assign(saved[i]));
    tf.dispose(saved);
  }
  if (probes.length === 1) {
    // One example: no growth to measure (a batch of 1, or nothing larger was safe to probe).
    // Every byte above the floor is charged to the examples: exact for one, an upper bound for
    // more (the plan then errs towards micro-batches).
    const p = probes[0];
    return { peakBytes: floor + size * boundPerExample(p), bytesPerExample: boundPerExample(p), probeBytes: p.peak, probeExamples: 1, probeSizes: [1] };
  }
  const last = probes[probes.length - 1];
  const prev = probes[probes.length - 2];
  const perExample = resolved(prev, last) ? (last.peak - prev.peak) / (last.n - prev.n) : boundPerExample(last);
  // Extrapolated from the largest probe (at the batch's size itself, when it was safe to run it).
  const fixed = resolved(prev, last) ? last.peak - last.n * perExample : floor;
  const probeSizes = probes.map((p) => p.n);
  return { peakBytes: fixed + size * perExample, bytesPerExample: perExample, probeBytes: fixed + last.n * perExample, probeExamples: last.n, probeSizes };
}

/** A larger probe is taken only when an upper bound puts it below this share of the memory limit. */
const SAFE_PROBE_FRACTION = 0.8;

/**
 * Headroom a planned step keeps under the memory limit: the estimate has come out 13 % under the
 * heap a step then used (ViT-B/16 at batch 16: 3,479 MiB planned, 3,924 MiB of heap; the heap
 * grows in steps of up to 96 MiB and fragments more at larger batches than at the probes' sizes).
 * A step planned into that 13 % would crash the process instead of failing before the first update.
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
  /** The most examples one step can hold under the limit with the plan's headroom (0: not even one; the plan is then micro-batch 1 and will not fit). */
  fitsExamples: number;
  /** Estimated peak bytes of a step at microBatch (with accumulation, the gradient sum included). */
  stepBytes: number;
}

/**
 * The largest micro-batch that runs an update of `totalExamples` under `limitBytes`, from a
 * measured estimate (estimateStepMemory at any batch size: its probes give the fixed bytes and
 * the bytes per example). The whole batch when it fits; else the largest divisor of the total
 * that fits, counting the gradient sum accumulation holds across micro-batches
 * (`accumulationBytes`, 4 bytes per trainable parameter). Either way with the same headroom
 * ({@link MEMORY_PLAN_MARGIN}). The one place that picks micro-batch x accumulation: the
 * trainer's error message and the bench use it.
 */
export function planMicroBatch(
  estimate: StepMemoryEstimate,
  options: { limitBytes: number; totalExamples: number; accumulationBytes?: number },
): MicroBatchPlan {
  const total = options.totalExamples;
  if (!(Number.isInteger(total) && total >= 1)) throw new Error(`planMicroBatch: totalExamples must be a positive integer, got ${total}`);
  const fixed = estimate.probeBytes - estimate.probeExamples * estimate.bytesPerExample;
  const accumulation = options.accumulationBytes ?? 0;
  const stepBytes = (n: number) => fixed + n * estimate.bytesPerExample + (n < total ? accumulation : 0);
  /** The most examples a step holding `extra` bytes besides them can take. */
  const capacity = (extra: number) => Math.max(0, Math.floor((options.limitBytes / (1 + MEMORY_PLAN_MARGIN) - fixed - extra) / Math.max(estimate.bytesPerExample, 1)));
  if (fitsWithMargin(stepBytes(total), options.limitBytes)) {
    return { microBatch: total, accumSteps: 1, fitsExamples: Math.max(total, capacity(0)), stepBytes: stepBytes(total) };
  }
  const fitsExamples = capacity(accumulation);
  let micro = 1;
  for (let d = 1; d <= Math.min(total, fitsExamples); d++) if (total % d === 0) micro = d;
  return { microBatch: micro, accumSteps: total / micro, fitsExamples, stepBytes: stepBytes(micro) };
}
