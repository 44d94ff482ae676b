/**
 * One AdamW update of one parameter as a single kernel on the wasm heap.
 *
 * Written as tfjs ops, the update is 13-14 kernels per parameter (ViT-S/16-ish models: ~150
 * parameters, so ~2,000 small kernels per step, two thirds of all kernel calls). Each is cheap
 * but pays dispatch, allocation and a full read/write pass; one fused JS loop reads p, g, m, v
 * once and writes p', m', v' once. Same arithmetic as the op form (torch.optim.AdamW):
 *   m' = b1 m + (1 - b1) g;  v' = b2 v + (1 - b2) g²
 *   p' = p (1 - lr wd) - (lr / bc1) m' / (√v' / √bc2 + eps)
 * evaluated in float64 and stored as float32.
 *
 * In place where it may be: p, m and v are rewritten in their own blocks when no other tensor
 * holds their data (the usual case: the optimizer's variables). New blocks for all three at every
 * update, freed one parameter later, cut the heap into holes the next step's activations did not
 * fit: BERT-base batch 8 standard grew its wasm heap to 2,726 MiB with them (`pnpm bench --arch
 * bert-base` at ec9815e) and to 2,379 MiB in place (83ae75b), for 2,147 MiB of tensors at the
 * step's peak. A block another tensor shares (an EMA copy made from the weights) gets a new one.
 */
import { nativeFused } from '../native.js';
import type { tf } from '../../tf.js';
import { heapF32, updateInPlaceOrNew, type KernelCall, type TensorInfo, type WasmBackend } from '../wasm_heap.js';

export const ADAMW_UPDATE = 'MasksubAdamWUpdate';

export interface AdamWUpdateAttrs {
  beta1: number;
  beta2: number;
  eps: number;
  lr: number;
  weightDecay: number;
  /** 1 - beta1^t and 1 - beta2^t for this parameter's step t. */
  biasCorrection1: number;
  biasCorrection2: number;
}

/**
 * The arrays of an Adam-family update (AdamW here, LAMB in lamb.ts): the parameter, its gradient,
 * the two moments, and where each updated value goes (an output may be its input's own array).
 */
export interface MomentArrays {
  p: Float32Array;
  g: Float32Array;
  m: Float32Array;
  v: Float32Array;
  pOut: Float32Array;
  mOut: Float32Array;
  vOut: Float32Array;
}

/** The update on plain arrays (also the reference the kernel test checks the op form against). */
export function adamwUpdate({ p, g, m, v, pOut, mOut, vOut }: MomentArrays, a: AdamWUpdateAttrs): void {
  const { beta1, beta2, eps } = a;
  const decay = a.weightDecay !== 0 ? 1 - a.lr * a.weightDecay : 1;
  const step = a.lr / a.biasCorrection1;
  const sqrtBc2 = Math.sqrt(a.biasCorrection2);
  const c1 = 1 - beta1;
  const c2 = 1 - beta2;
  for (let i = 0; i < p.length; i++) {
    const gi = g[i];
    const mi = beta1 * m[i] + c1 * gi;
    const vi = beta2 * v[i] + c2 * gi * gi;
    mOut[i] = mi;
    vOut[i] = vi;
    pOut[i] = p[i] * decay - step * (mi / (Math.sqrt(vi) / sqrtBc2 + eps));
  }
}

/**
 * The blocks of an Adam-family update kernel (AdamW here, LAMB in lamb.ts): outputs [p', m', v'],
 * each its input's own block when only that input's tensor holds it, else a new one; and the
 * views of all seven, taken after those allocations (a heap growth detaches earlier views).
 * Reading element i of p, m and v before writing element i of the outputs is what makes both
 * updates safe in place.
 */
export function momentBlocks(backend: WasmBackend, inputs: tf.NamedTensorInfoMap): { outputs: TensorInfo[]; arrays: MomentArrays } {
  const [p, g, m, v] = (['param', 'grad', 'm', 'v'] as const).map((name) => inputs[name] as TensorInfo);
  const outputs = [p, m, v].map((t) => updateInPlaceOrNew(backend, t));
  const [hp, hg, hm, hv, hpo, hmo, hvo] = [p, g, m, v, ...outputs].map((t) => heapF32(backend, t));
  return { outputs, arrays: { p: hp, g: hg, m: hm, v: hv, pOut: hpo, mOut: hmo, vOut: hvo } };
}

/** Inputs param, grad, m, v (float32, same shape); outputs [param', m', v'] ({@link momentBlocks}). */
export const adamwUpdateKernel: KernelCall = ({ inputs, backend, attrs }) => {
  const { outputs, arrays: x } = momentBlocks(backend, inputs);
  const a = attrs as unknown as AdamWUpdateAttrs;
  const native = nativeFused();
  if (native !== null) {
    // Same arithmetic, threaded and vectorised: large tables (a BERT vocabulary) are ~4M values.
    native.adamwUpdate(x.p, x.g, x.m, x.v, x.pOut, x.mOut, x.vOut, a.beta1, a.beta2, a.eps, a.lr, a.weightDecay, a.biasCorrection1, a.biasCorrection2);
  } else {
    adamwUpdate(x, a);
  }
  return outputs;
};
