/**
 * Convolution + batch-norm building blocks for ResNets in tfjs, NHWC (what tf.conv2d wants on
 * cpu and wasm). Candidates for core's nn.ts: nothing here is ResNet-specific.
 *
 * A "conv unit" is PyTorch's `Conv2d(bias=False)` followed by `BatchNorm2d`. Its parameters are
 * named by two prefixes (the conv module and the norm module) so the same code serves HF's
 * `...convolution` / `...normalization` and the CIFAR ResNet's `conv1` / `bn1`. When an exporter
 * has folded the batch norm into the conv (ONNX with constant folding), the unit is a conv with a
 * bias and no norm at all.
 */
import { batchNormTrain, tf, type BatchNormEpilogue, type ParamSpec } from '@masksub/core';

/**
 * - 'train': batch statistics when the forward pass is a training pass (and the running
 *   statistics follow them with PyTorch's momentum rule), running statistics otherwise.
 * - 'eval': running statistics always, also in training passes ("frozen" batch norm). This is
 *   what the hf-tiny reference used for both MaskSub passes.
 */
export type BatchNormMode = 'train' | 'eval';

export interface ConvUnit {
  /** Module prefix of the conv (`...convolution`, `conv1`). */
  conv: string;
  /** Module prefix of its batch norm (`...normalization`, `bn1`). */
  norm: string;
  inChannels: number;
  outChannels: number;
  kernel: number;
  stride: number;
}

/** PyTorch's default BatchNorm2d eps and momentum (HF ResNet and the CIFAR ResNet keep them). */
export const BN_EPS = 1e-5;
export const BN_MOMENTUM = 0.1;

/**
 * Parameter specs of conv units: with batch norm (checkpoint form) or folded (conv bias, no norm).
 * Conv init is Kaiming normal (fan_out, ReLU) as torchvision/HF ResNets initialise.
 */
export function convUnitSpecs(units: readonly ConvUnit[], folded: boolean): ParamSpec[] {
  const specs: ParamSpec[] = [];
  for (const u of units) {
    const fanOut = u.outChannels * u.kernel * u.kernel;
    specs.push({ name: `${u.conv}.weight`, shape: [u.outChannels, u.inChannels, u.kernel, u.kernel], layout: 'conv-hwio', init: { normal: Math.sqrt(2 / fanOut) } });
    if (folded) {
      specs.push({ name: `${u.conv}.bias`, shape: [u.outChannels], layout: 'identity', init: 'zeros' });
      continue;
    }
    const c = [u.outChannels];
    specs.push(
      { name: `${u.norm}.weight`, shape: c, layout: 'identity', init: 'ones' },
      { name: `${u.norm}.bias`, shape: c, layout: 'identity', init: 'zeros' },
      // Buffers, not parameters: the optimizer never sees them (ParameterStore.trainable()).
      { name: `${u.norm}.running_mean`, shape: c, layout: 'identity', init: 'zeros', trainable: false },
      { name: `${u.norm}.running_var`, shape: c, layout: 'identity', init: 'ones', trainable: false },
    );
  }
  return specs;
}

/**
 * Conv2d with PyTorch's symmetric zero padding (k // 2 on every side). TF's 'same' pads
 * asymmetrically for stride 2 (0 before, 1 after), which shifts every window by one pixel, so the
 * padding is given explicitly. It goes to the conv kernels themselves (not a tf.pad before a
 * 'valid' conv): no padded copy of the input forward and no Slice of its gradient backward.
 */
export function conv2dTorch(x: tf.Tensor4D, weightHwio: tf.Tensor4D, stride: number): tf.Tensor4D {
  const k = weightHwio.shape[0];
  const p = Math.floor(k / 2);
  return tf.conv2d(x, weightHwio, stride, p > 0 ? [[0, 0], [p, p], [p, p], [0, 0]] : 'valid');
}

/** MaxPool2d(kernel 3, stride 2, padding 1): PyTorch pads with -inf, symmetric (see conv2dTorch). */
export function maxPool3x3s2(x: tf.Tensor4D): tf.Tensor4D {
  const padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], -3.4e38);
  return tf.maxPool(padded, 3, 2, 'valid');
}

export interface BatchNormVariables {
  weight: tf.Tensor;
  bias: tf.Tensor;
  runningMean: tf.Variable;
  runningVar: tf.Variable;
}

/**
 * BatchNorm2d over NHWC. With `batchStatistics` it normalises by the batch's mean and biased
 * variance and moves the running statistics toward them (running_var gets the unbiased variance,
 * as PyTorch does); otherwise it is the affine map of the running statistics, written as one
 * scale and shift so its gradients are those of PyTorch's eval-mode BN.
 *
 * `epilogue` (a residual added after it, then ReLU) goes to core's batchNormTrain, which fuses it
 * where the backend has kernels for it; in eval mode it is plain tfjs ops.
 */
export function batchNorm2d(
  x: tf.Tensor4D,
  v: BatchNormVariables,
  batchStatistics: boolean,
  eps = BN_EPS,
  momentum = BN_MOMENTUM,
  epilogue: BatchNormEpilogue = {},
): tf.Tensor4D {
  if (!batchStatistics) {
    const scale = tf.mul(v.weight, tf.rsqrt(tf.add(v.runningVar, eps)));
    const shift = tf.sub(v.bias, tf.mul(v.runningMean, scale));
    let y = tf.add(tf.mul(x, scale), shift);
    if (epilogue.residual !== undefined) y = tf.add(y, epilogue.residual);
    return (epilogue.relu ? tf.relu(y) : y) as tf.Tensor4D;
  }
  const [b, h, w] = x.shape;
  const n = b * h * w;
  // core's op: native kernels on wasm when masksub's addon is built, tfjs ops otherwise.
  const { y, mean, variance } = batchNormTrain(x, v.weight, v.bias, eps, epilogue);
  // Running statistics are state: nothing the loss depends on reads them in this pass, so the
  // tape never differentiates through these updates.
  const unbiased = n > 1 ? tf.mul(variance, n / (n - 1)) : variance;
  v.runningMean.assign(tf.add(tf.mul(v.runningMean, 1 - momentum), tf.mul(mean, momentum)));
  v.runningVar.assign(tf.add(tf.mul(v.runningVar, 1 - momentum), tf.mul(unbiased, momentum)));
  return y as tf.Tensor4D;
}

/**
 * Fold batch norms into their convs on host arrays, as exporters do: W' = W * s, b' = beta - mu * s
 * with s = gamma / sqrt(var + eps), per output channel. `tensors` maps checkpoint names to values
 * in PyTorch layouts; returns the folded units' conv weights and biases under checkpoint names.
 */
export function foldBatchNormHost(
  units: readonly ConvUnit[],
  get: (name: string) => Float32Array,
  eps = BN_EPS,
): Map<string, { shape: number[]; data: Float32Array }> {
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const u of units) {
    const w = get(`${u.conv}.weight`);
    const gamma = get(`${u.norm}.weight`);
    const beta = get(`${u.norm}.bias`);
    const mu = get(`${u.norm}.running_mean`);
    const variance = get(`${u.norm}.running_var`);
    const per = u.inChannels * u.kernel * u.kernel;
    const folded = new Float32Array(w.length);
    const bias = new Float32Array(u.outChannels);
    for (let o = 0; o < u.outChannels; o++) {
      const s = gamma[o] / Math.sqrt(variance[o] + eps);
      for (let i = 0; i < per; i++) folded[o * per + i] = w[o * per + i] * s;
      bias[o] = beta[o] - mu[o] * s;
    }
    out.set(`${u.conv}.weight`, { shape: [u.outChannels, u.inChannels, u.kernel, u.kernel], data: folded });
    out.set(`${u.conv}.bias`, { shape: [u.outChannels], data: bias });
  }
  return out;
}
