/**
 * Training-mode batch norm (batch statistics) over channels-last tensors as two native kernels
 * on wasm (native/src/batch_norm_avx2.cc): forward (statistics + normalisation) and the
 * closed-form backward. Composed from tfjs ops it is ~25 kernels per unit with autodiff, ~30 % of
 * a ResNet-20 training step; the backward here keeps only x, the per-channel mean and variance.
 *
 * Registered only when the addon has them; core's nn.batchNormTrain asks `batchNormKernelsActive()`
 * and composes tfjs ops otherwise (other backends, addon absent or disabled).
 */
import { tf } from '../../tf.js';
import { nativeBatchNorm, type NativeBatchNormAddon } from '../native.js';
import { allocate, heapF32, type KernelCall, type TensorInfo } from '../wasm_heap.js';

export const BATCH_NORM_STATS = 'MasksubBatchNormStats';
export const BATCH_NORM_TRAIN = 'MasksubBatchNormTrain';
export const BATCH_NORM_TRAIN_GRAD = 'MasksubBatchNormTrainGrad';

function addon(kernel: string): NativeBatchNormAddon {
  const native = nativeBatchNorm();
  if (native === null) throw new Error(`${kernel}: masksub's native addon is not loaded or is disabled`);
  return native;
}

function input(args: Parameters<KernelCall>[0], name: string, kernel: string): TensorInfo {
  const t = args.inputs[name] as TensorInfo | undefined;
  if (t === undefined) throw new Error(`${kernel}: missing input '${name}'`);
  if (t.dtype !== 'float32') throw new Error(`${kernel}: input '${name}' must be float32, got ${t.dtype}`);
  return t;
}

const stats: KernelCall = (args) => {
  const native = addon(BATCH_NORM_STATS);
  const x = input(args, 'x', BATCH_NORM_STATS);
  const channels = [x.shape[x.shape.length - 1]];
  const mean = allocate(args.backend, channels, 'float32');
  const variance = allocate(args.backend, channels, 'float32');
  const h = (t: TensorInfo) => heapF32(args.backend, t);
  native.batchNormStats(h(x), h(mean), h(variance));
  return [mean, variance];
};

interface TrainAttrs {
  eps: number;
  /** A ReLU fused after the normalisation (and the residual add). */
  relu?: boolean;
  /** Backward only: the forward fused a residual add (a fourth output, its gradient). */
  residual?: boolean;
}

const forward: KernelCall = (args) => {
  const native = addon(BATCH_NORM_TRAIN);
  const [x, gamma, beta, mean, variance] = ['x', 'gamma', 'beta', 'mean', 'variance'].map((n) => input(args, n, BATCH_NORM_TRAIN));
  const residual = args.inputs.residual === undefined ? null : input(args, 'residual', BATCH_NORM_TRAIN);
  const { eps, relu = false } = args.attrs as unknown as TrainAttrs;
  const y = allocate(args.backend, x.shape, 'float32');
  const h = (t: TensorInfo) => heapF32(args.backend, t);
  native.batchNormApply(h(x), h(gamma), h(beta), h(mean), h(variance), eps, h(y), residual && h(residual), relu);
  return y;
};

const backward: KernelCall = (args) => {
  const native = addon(BATCH_NORM_TRAIN_GRAD);
  const [dy, x, mean, variance, gamma] = ['dy', 'x', 'mean', 'variance', 'gamma'].map((n) => input(args, n, BATCH_NORM_TRAIN_GRAD));
  const { eps, relu = false, residual = false } = args.attrs as unknown as TrainAttrs;
  const y = relu ? input(args, 'y', BATCH_NORM_TRAIN_GRAD) : null;
  const dx = allocate(args.backend, x.shape, 'float32');
  const dgamma = allocate(args.backend, gamma.shape, 'float32');
  const dbeta = allocate(args.backend, gamma.shape, 'float32');
  const dresidual = residual ? allocate(args.backend, x.shape, 'float32') : null;
  const h = (t: TensorInfo) => heapF32(args.backend, t);
  native.batchNormTrainBackward(h(dy), h(x), h(mean), h(variance), h(gamma), eps, h(dx), h(dgamma), h(dbeta), y && h(y), dresidual && h(dresidual));
  return dresidual ? [dx, dgamma, dbeta, dresidual] : [dx, dgamma, dbeta];
};

/** Registers the three kernels on wasm when the addon has them; returns the names registered. */
export function registerBatchNormKernels(): string[] {
  if (nativeBatchNorm() === null) return [];
  const added: string[] = [];
  for (const [name, fn] of [[BATCH_NORM_STATS, stats], [BATCH_NORM_TRAIN, forward], [BATCH_NORM_TRAIN_GRAD, backward]] as const) {
    if (tf.getKernel(name, 'wasm') != null) continue;
    tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: fn as unknown as tf.KernelFunc });
    added.push(name);
  }
  return added;
}

/** True when the current backend runs the native batch-norm kernels. */
export function batchNormKernelsActive(): boolean {
  return tf.getBackend() === 'wasm' && nativeBatchNorm() !== null && tf.getKernel(BATCH_NORM_TRAIN, 'wasm') != null;
}

/** True when the native kernels also take the residual + ReLU epilogue (not a build before it). */
export function batchNormEpilogueActive(): boolean {
  return batchNormKernelsActive() && nativeBatchNorm()?.batchNormEpilogue === true;
}

/** What follows the normalisation, fused into it: y = relu?(bn(x) + residual?). */
export interface BatchNormEpilogue {
  /** Added after the affine map (same shape as x). */
  residual?: tf.Tensor;
  /** max(0, .) last. */
  relu?: boolean;
}

export interface BatchNormTrainResult {
  y: tf.Tensor;
  /** Per-channel batch mean and biased variance (for the running statistics; no gradient). */
  mean: tf.Tensor1D;
  variance: tf.Tensor1D;
}

/**
 * Batch norm with batch statistics through the native kernels (caller checks
 * batchNormKernelsActive()). The statistics come from their own kernel and enter the
 * normalisation as closure constants, not inputs: autodiff never differentiates through them,
 * the custom gradient (the closed form, which includes their dependence on x) does.
 */
export function nativeBatchNormTrain(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps: number): BatchNormTrainResult {
  return nativeBatchNormTrainFused(x, gamma, beta, eps, {});
}

/**
 * nativeBatchNormTrain with the epilogue fused (caller checks batchNormEpilogueActive() when the
 * epilogue is not empty): one kernel each way instead of BN + Add + Relu forward and BN grad +
 * the ReLU's Step/Mul + the add's gradient backward. With a ReLU the backward needs its output
 * y (its mask), which the next layer keeps alive anyway.
 */
export function nativeBatchNormTrainFused(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps: number, epilogue: BatchNormEpilogue): BatchNormTrainResult {
  const relu = epilogue.relu ?? false;
  const residual = epilogue.residual;
  const [mean, variance] = tf.engine().runKernel(BATCH_NORM_STATS, { x }, {}) as tf.Tensor1D[];
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const tensors = args.slice(0, -1) as tf.Tensor[];
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const [xt, g, b, r] = tensors;
    const inputs: Record<string, tf.Tensor> = { x: xt, gamma: g, beta: b, mean, variance };
    if (r !== undefined) inputs.residual = r;
    const value = tf.engine().runKernel(BATCH_NORM_TRAIN, inputs, { eps, relu }) as tf.Tensor;
    // Saved (not just closed over): tfjs disposes the forward's other tensors before backward.
    save(relu ? [xt, g, mean, variance, value] : [xt, g, mean, variance]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, gam, m, v, y] = saved;
        const gradInputs: Record<string, tf.Tensor> = { dy, x: xs, mean: m, variance: v, gamma: gam };
        if (y !== undefined) gradInputs.y = y;
        return tf.engine().runKernel(BATCH_NORM_TRAIN_GRAD, gradInputs, { eps, relu, residual: r !== undefined }) as tf.Tensor[];
      },
    };
  });
  const y = residual === undefined ? op(x, gamma, beta) : op(x, gamma, beta, residual);
  return { y, mean, variance };
}
