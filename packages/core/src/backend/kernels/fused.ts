/**
 * Fused training kernels on the wasm backend, computed by masksub's native addon on the wasm
 * heap: exact and quick GELU, LayerNorm, scaled softmax and dropout, each forward and backward in one kernel.
 *
 * Why: composed from tfjs ops, these are 4-12 kernels each (erf, mul, add, mean, sub, sum, ...),
 * every one a full pass over memory and several of them scalar loops on wasm: about 40% of a ViT
 * training step. Fused and vectorised they are a few percent, and the step dispatches ~1,000
 * fewer kernels — the fixed cost that kept MaskSub's half-length sub pass from costing half.
 *
 * The kernels are registered only when the addon has them; `fusedKernelsActive()` tells the
 * model code (nn.ts) whether to call them or compose tfjs ops as before. Each op's gradient is a
 * `tf.customGrad` around the backward kernel, so autodiff sees one node per op.
 */
import { tf } from '../../tf.js';
import { nativeFused, type NativeFusedAddon } from '../native.js';
import { allocate, heapF32, sizeOf, type KernelCall, type TensorInfo } from '../wasm_heap.js';

export const FUSED_GELU = 'MasksubGelu';
export const FUSED_GELU_GRAD = 'MasksubGeluGrad';
export const FUSED_QUICK_GELU = 'MasksubQuickGelu';
export const FUSED_QUICK_GELU_GRAD = 'MasksubQuickGeluGrad';
export const FUSED_LAYER_NORM = 'MasksubLayerNorm';
export const FUSED_LAYER_NORM_GRAD = 'MasksubLayerNormGrad';
export const FUSED_SOFTMAX = 'MasksubScaledSoftmax';
export const FUSED_SOFTMAX_GRAD = 'MasksubScaledSoftmaxGrad';
export const FUSED_DROPOUT = 'MasksubDropout';

const FUSED_KERNELS = [FUSED_GELU, FUSED_GELU_GRAD, FUSED_QUICK_GELU, FUSED_QUICK_GELU_GRAD, FUSED_LAYER_NORM, FUSED_LAYER_NORM_GRAD, FUSED_SOFTMAX, FUSED_SOFTMAX_GRAD, FUSED_DROPOUT];

function input(args: Parameters<KernelCall>[0], name: string, kernel: string): TensorInfo {
  const t = args.inputs[name] as TensorInfo | undefined;
  if (t === undefined) throw new Error(`${kernel}: missing input '${name}'`);
  if (t.dtype !== 'float32') throw new Error(`${kernel}: input '${name}' must be float32, got ${t.dtype}`);
  return t;
}

/** The addon at call time: a kernel registered while it was loaded must not run without it. */
function addon(kernel: string): NativeFusedAddon {
  const native = nativeFused();
  if (native === null) throw new Error(`${kernel}: masksub's native addon is not loaded or is disabled`);
  return native;
}

type ElementwiseForward = (native: NativeFusedAddon, x: Float32Array, y: Float32Array) => void;
type ElementwiseBackward = (native: NativeFusedAddon, x: Float32Array, dy: Float32Array, dx: Float32Array) => void;

/** An activation's forward kernel: y = f(x), element-wise. */
function activationKernel(kernel: string, compute: ElementwiseForward): KernelCall {
  return (args) => {
    const native = addon(kernel);
    const x = input(args, 'x', kernel);
    const y = allocate(args.backend, x.shape, 'float32');
    compute(native, heapF32(args.backend, x), heapF32(args.backend, y));
    return y;
  };
}

/** An activation's gradient kernel: dx = dy f'(x), element-wise. */
function activationGradKernel(kernel: string, compute: ElementwiseBackward): KernelCall {
  return (args) => {
    const native = addon(kernel);
    const x = input(args, 'x', kernel);
    const dy = input(args, 'dy', kernel);
    const dx = allocate(args.backend, x.shape, 'float32');
    compute(native, heapF32(args.backend, x), heapF32(args.backend, dy), heapF32(args.backend, dx));
    return dx;
  };
}

const layerNorm: KernelCall = (args) => {
  const native = addon(FUSED_LAYER_NORM);
  const x = input(args, 'x', FUSED_LAYER_NORM);
  const gamma = input(args, 'gamma', FUSED_LAYER_NORM);
  const beta = input(args, 'beta', FUSED_LAYER_NORM);
  const { eps } = args.attrs as { eps: number };
  const rowsShape = x.shape.slice(0, -1);
  const y = allocate(args.backend, x.shape, 'float32');
  const mean = allocate(args.backend, rowsShape, 'float32');
  const rstd = allocate(args.backend, rowsShape, 'float32');
  const h = (t: TensorInfo) => heapF32(args.backend, t);
  native.layerNormForward(h(x), h(gamma), h(beta), eps, h(y), h(mean), h(rstd));
  return [y, mean, rstd];
};

const layerNormGrad: KernelCall = (args) => {
  const native = addon(FUSED_LAYER_NORM_GRAD);
  const get = (name: string) => input(args, name, FUSED_LAYER_NORM_GRAD);
  const [dy, x, mean, rstd, gamma] = ['dy', 'x', 'mean', 'rstd', 'gamma'].map(get);
  const dx = allocate(args.backend, x.shape, 'float32');
  const dgamma = allocate(args.backend, gamma.shape, 'float32');
  const dbeta = allocate(args.backend, gamma.shape, 'float32');
  const h = (t: TensorInfo) => heapF32(args.backend, t);
  native.layerNormBackward(h(dy), h(x), h(mean), h(rstd), h(gamma), h(dx), h(dgamma), h(dbeta));
  return [dx, dgamma, dbeta];
};

const softmax: KernelCall = (args) => {
  const native = addon(FUSED_SOFTMAX);
  const x = input(args, 'x', FUSED_SOFTMAX);
  const { scale } = args.attrs as { scale: number };
  const y = allocate(args.backend, x.shape, 'float32');
  if (sizeOf(x.shape) > 0) native.softmaxForward(heapF32(args.backend, x), scale, x.shape[x.shape.length - 1], heapF32(args.backend, y));
  return y;
};

const softmaxGrad: KernelCall = (args) => {
  const native = addon(FUSED_SOFTMAX_GRAD);
  const y = input(args, 'y', FUSED_SOFTMAX_GRAD);
  const dy = input(args, 'dy', FUSED_SOFTMAX_GRAD);
  const { scale } = args.attrs as { scale: number };
  const dx = allocate(args.backend, y.shape, 'float32');
  if (sizeOf(y.shape) > 0) {
    native.softmaxBackward(heapF32(args.backend, y), heapF32(args.backend, dy), scale, y.shape[y.shape.length - 1], heapF32(args.backend, dx));
  }
  return dx;
};

/** Inverted dropout; applied to dy with the same attrs it is its own backward pass. */
const dropout: KernelCall = (args) => {
  const native = addon(FUSED_DROPOUT);
  const x = input(args, 'x', FUSED_DROPOUT);
  const { rate, seed } = args.attrs as { rate: number; seed: number };
  const y = allocate(args.backend, x.shape, 'float32');
  if (sizeOf(x.shape) > 0) native.dropout(heapF32(args.backend, x), heapF32(args.backend, y), seed >>> 0, rate);
  return y;
};

const IMPLEMENTATIONS: Record<string, KernelCall> = {
  [FUSED_GELU]: activationKernel(FUSED_GELU, (n, x, y) => n.geluForward(x, y)),
  [FUSED_GELU_GRAD]: activationGradKernel(FUSED_GELU_GRAD, (n, x, dy, dx) => n.geluBackward(x, dy, dx)),
  [FUSED_QUICK_GELU]: activationKernel(FUSED_QUICK_GELU, (n, x, y) => n.quickGeluForward(x, y)),
  [FUSED_QUICK_GELU_GRAD]: activationGradKernel(FUSED_QUICK_GELU_GRAD, (n, x, dy, dx) => n.quickGeluBackward(x, dy, dx)),
  [FUSED_LAYER_NORM]: layerNorm,
  [FUSED_LAYER_NORM_GRAD]: layerNormGrad,
  [FUSED_SOFTMAX]: softmax,
  [FUSED_SOFTMAX_GRAD]: softmaxGrad,
  [FUSED_DROPOUT]: dropout,
};

/** Registers the fused kernels on wasm when the addon has them; returns the names registered. */
export function registerFusedKernels(): string[] {
  if (nativeFused() === null) return [];
  const added: string[] = [];
  for (const name of FUSED_KERNELS) {
    if (tf.getKernel(name, 'wasm') != null) continue;
    tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: IMPLEMENTATIONS[name] as unknown as tf.KernelFunc });
    added.push(name);
  }
  return added;
}

/** True when the current backend runs the fused kernels (wasm with the native addon enabled). */
export function fusedKernelsActive(): boolean {
  return tf.getBackend() === 'wasm' && nativeFused() !== null && tf.getKernel(FUSED_GELU, 'wasm') != null;
}

function run(kernel: string, inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap = {}): tf.Tensor | tf.Tensor[] {
  return tf.engine().runKernel(kernel, inputs, attrs) as tf.Tensor | tf.Tensor[];
}

/** An element-wise activation as one autodiff node: its forward kernel, its gradient kernel on the saved x. */
function fusedActivation(forward: string, backward: string, x: tf.Tensor): tf.Tensor {
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const xt = args[0] as tf.Tensor;
    const save = args[1] as tf.GradSaveFunc;
    save([xt]);
    return {
      value: run(forward, { x: xt }) as tf.Tensor,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => run(backward, { x: saved[0], dy }) as tf.Tensor,
    };
  });
  return op(x);
}

/** Exact GELU through the fused kernels (caller checks `fusedKernelsActive()`). */
export function fusedGelu(x: tf.Tensor): tf.Tensor {
  return fusedActivation(FUSED_GELU, FUSED_GELU_GRAD, x);
}

/** Quick GELU, x sigmoid(1.702 x), through the fused kernels (caller checks `fusedKernelsActive()`). */
export function fusedQuickGelu(x: tf.Tensor): tf.Tensor {
  return fusedActivation(FUSED_QUICK_GELU, FUSED_QUICK_GELU_GRAD, x);
}

/**
 * LayerNorm over the last axis through the fused kernels. Keeps x, the row means and 1/std for
 * the backward pass (x̂ is recomputed there: one tensor of activations fewer held per layer).
 */
export function fusedLayerNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps: number): tf.Tensor {
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xt, g, b] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    const [y, mean, rstd] = run(FUSED_LAYER_NORM, { x: xt, gamma: g, beta: b }, { eps }) as tf.Tensor[];
    save([xt, mean, rstd, g]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, m, r, gam] = saved;
        return run(FUSED_LAYER_NORM_GRAD, { dy, x: xs, mean: m, rstd: r, gamma: gam }) as tf.Tensor[];
      },
    };
  });
  return op(x, gamma, beta);
}

/** softmax(scale * x) over the last axis through the fused kernels. */
export function fusedScaledSoftmax(x: tf.Tensor, scale: number): tf.Tensor {
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const xt = args[0] as tf.Tensor;
    const save = args[1] as tf.GradSaveFunc;
    const y = run(FUSED_SOFTMAX, { x: xt }, { scale }) as tf.Tensor;
    save([y]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => run(FUSED_SOFTMAX_GRAD, { y: saved[0], dy }, { scale }) as tf.Tensor,
    };
  });
  return op(x);
}

/**
 * Inverted dropout through the fused kernel: the mask is a hash of (seed, element index), so the
 * backward pass regenerates it instead of keeping a mask tensor per dropout site. Its random
 * stream differs from tf.randomUniform's (the composed path), so masks differ across backends.
 */
export function fusedDropout(x: tf.Tensor, rate: number, seed: number): tf.Tensor {
  const attrs = { rate, seed: seed >>> 0 };
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const xt = args[0] as tf.Tensor;
    return {
      value: run(FUSED_DROPOUT, { x: xt }, attrs) as tf.Tensor,
      gradFunc: (dy: tf.Tensor) => run(FUSED_DROPOUT, { x: dy }, attrs) as tf.Tensor,
    };
  });
  return op(x);
}
