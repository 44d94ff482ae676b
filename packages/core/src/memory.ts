/**
 * How much tensor memory a training step needs, found before the first real step, so a step that
 * cannot fit in the backend's memory fails at once with an error that says what to do, instead of
 * growing the heap until the process crawls or is killed (tfjs' wasm heap is 32-bit: 4 GiB).
 *
 * The estimate is measured, not modelled: the step's gradient computation runs on the first n
 * and 2n examples of the batch (n = max(1, floor(B / 4))); activation memory grows linearly with
 * the batch, so peak(B) = peak(n) + (B - n) * (peak(2n) - peak(n)) / n, plus the optimizer's state
 * (not yet created before the first update). Probing at a quarter and a half of the batch rather
 * than at 1 and 2 examples keeps the difference large against the heap's growth steps (Emscripten
 * grows by up to 20 %, at most 96 MiB, at a time). The peak is the backend's own heap high-water mark where it has one
 * (wasm: the heap only grows, and it is what hits the 4 GiB wall), else tf.profile's peak tensor
 * bytes. (tfjs' byte count is no measure of the wasm heap: views over one buffer, which masksub's
 * native kernels make, are counted once each; for ViT-B/16 it reads 2.7x the heap.)
 * The probe leaves no trace: the trainer's RNG and every non-trainable variable (batch-norm
 * running statistics) are restored afterwards.
 */
import { OptionError } from './errors.js';
import { tf } from './tf.js';
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
  /** Peak of the smaller probe step, and its number of examples. */
  probeBytes: number;
  probeExamples: number;
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
 * Measures the step's peak tensor memory at 1 and 2 examples and extrapolates to the batch's size.
 * `optimizerStateBytes` is added as is (e.g. 2 x parameter bytes for AdamW before its first step).
 */
export async function estimateStepMemory(trainer: MaskSubTrainer, batch: Batch, options: { optimizerStateBytes?: number } = {}): Promise<StepMemoryEstimate> {
  const size = batchSizeOf(batch);
  const rngState = trainer.rng.getState();
  const store = trainer.model.params;
  const trainable = store.trainable();
  const buffers = [...store.variables].filter(([name]) => !trainable.has(name));
  const saved = buffers.map(([, v]) => tf.clone(v));
  const peaks: number[] = [];
  try {
    const n1 = Math.max(1, Math.floor(size / 4));
    for (const n of size >= 2 ? [n1, 2 * n1] : [1]) {
      const sub: Batch = tf.tidy(() => ({
        inputs: Object.fromEntries(Object.entries(batch.inputs).map(([k, t]) => [k, firstRows(t, n)])) as ModelInputs,
        targets: sliceTargets(batch.targets, n),
      }));
      const run = () => {
        const r = trainer.computeGradients(sub, 0);
        tf.dispose([...r.grads.values(), r.mainLogits, ...(r.subLogits ? [r.subLogits] : [])]);
      };
      if (wasmHeapBytes() !== null) {
        run();
        peaks.push(wasmHeapBytes()!);
      } else {
        peaks.push((await tf.profile(run)).peakBytes);
      }
      tf.dispose([...Object.values(sub.inputs), 'soft' in sub.targets ? sub.targets.soft : sub.targets.labels]);
    }
  } finally {
    trainer.rng.setState(rngState);
    buffers.forEach(([, v], i) => v.assign(saved[i]));
    tf.dispose(saved);
  }
  const n1 = Math.max(1, Math.floor(size / 4));
  const perExample = peaks.length === 2 ? Math.max(0, peaks[1] - peaks[0]) / n1 : peaks[0];
  const optimizerStateBytes = options.optimizerStateBytes ?? 0;
  return { peakBytes: peaks[0] + (size - n1) * perExample + optimizerStateBytes, bytesPerExample: perExample, probeBytes: peaks[0], probeExamples: n1 };
}

/** How an update of `totalExamples` runs under a memory limit: micro-batches with gradient accumulation. */
export interface MicroBatchPlan {
  /** Examples per forward/backward (divides totalExamples). */
  microBatch: number;
  /** Micro-batches per optimizer update (microBatch * accumSteps = totalExamples). */
  accumSteps: number;
  /** The most examples one step can hold under the limit (0: not even one; the plan is then micro-batch 1 and will not fit). */
  fitsExamples: number;
  /** Estimated peak bytes of a step at microBatch (optimizer state and, with accumulation, the gradient sum included). */
  stepBytes: number;
}

/**
 * The largest micro-batch that runs an update of `totalExamples` under `limitBytes`, from a
 * measured estimate (estimateStepMemory at any batch size: its probes give the fixed bytes and
 * the bytes per example). The whole batch when it fits; else the largest divisor of the total
 * that fits with a 10 % margin (extrapolation error, heap growth steps), plus the gradient sum
 * accumulation holds across micro-batches (`accumulationBytes`, 4 bytes per trainable parameter).
 * The one place that picks micro-batch x accumulation: the trainer's error message and the bench use it.
 */
export function planMicroBatch(
  estimate: StepMemoryEstimate,
  options: { limitBytes: number; totalExamples: number; optimizerStateBytes?: number; accumulationBytes?: number },
): MicroBatchPlan {
  const total = options.totalExamples;
  if (!(Number.isInteger(total) && total >= 1)) throw new Error(`planMicroBatch: totalExamples must be a positive integer, got ${total}`);
  const fixed = estimate.probeBytes - estimate.probeExamples * estimate.bytesPerExample + (options.optimizerStateBytes ?? 0);
  const perExample = Math.max(estimate.bytesPerExample, 1);
  const stepBytes = (n: number) => fixed + n * estimate.bytesPerExample + (n < total ? (options.accumulationBytes ?? 0) : 0);
  const fitsWhole = stepBytes(total) <= options.limitBytes;
  const fitsExamples = fitsWhole ? Math.max(total, Math.floor((options.limitBytes - fixed) / perExample)) : Math.max(0, Math.floor((options.limitBytes - fixed - (options.accumulationBytes ?? 0)) / perExample));
  if (fitsWhole) return { microBatch: total, accumSteps: 1, fitsExamples, stepBytes: stepBytes(total) };
  let micro = 1;
  for (let d = 1; d <= Math.min(total, Math.floor(fitsExamples * 0.9)); d++) if (total % d === 0) micro = d;
  return { microBatch: micro, accumSteps: total / micro, fitsExamples, stepBytes: stepBytes(micro) };
}
