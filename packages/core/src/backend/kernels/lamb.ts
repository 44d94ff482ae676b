/**
 * One LAMB update of one parameter (timm's Lamb, grad averaging on) as a single kernel on the
 * wasm heap:
 *   g = grad / clip (clip: the global-norm divisor, 1 when off)
 *   m' = b1 m + (1 - b1) g;  v' = b2 v + (1 - b2) g²
 *   u = (m' / bc1) / (√v' / √bc2 + eps) + wd p
 *   adapt (wd != 0 or always_adapt): u *= trust, trust = ||p|| / ||u|| (1 where either norm is 0),
 *                                    at most 1 with trust_clip
 *   p' = p - lr u
 * evaluated in float64 and stored as float32; u is evaluated from the stored float32 m' and v'
 * (the op form's values), once for its norm and once for the write.
 *
 * Why a kernel: as tfjs ops the update is ~20 kernels per parameter, each a pass over memory,
 * and writes new blocks for p, m and v at every update: the holes those leave in the heap are
 * what AdamW's and SGD's in-place kernels removed (adamw.ts, sgd.ts). LAMB is DeiT-III's
 * optimizer, so it runs on ViT-B-sized tables too. The trust ratio needs both norms before any
 * write of p: two passes, the first writing m' and v' (in place) and summing the squares, the
 * second writing p'.
 */
import { momentBlocks, type AdamWUpdateAttrs, type MomentArrays } from './adamw.js';
import { nativeLamb } from '../native.js';
import { heapF32, type KernelCall, type TensorInfo } from '../wasm_heap.js';

export const LAMB_UPDATE = 'MasksubLambUpdate';

/** AdamW's hyper-parameters (the same moments and bias corrections), and what LAMB adds. */
export interface LambUpdateAttrs extends AdamWUpdateAttrs {
  /** Scale the update by the trust ratio (timm: weight_decay != 0 or always_adapt). */
  adapt: boolean;
  /** Clip the trust ratio at 1 (timm's trust_clip, LAMBC). */
  trustClip: boolean;
}

/**
 * Elements per block of the norms' sums: each block sums its squares in four interleaved lanes,
 * joined as (0 + 1) + (2 + 3), and the blocks' sums are joined in order; the native kernel
 * (threaded over blocks, four float64 lanes) does the same, so both give the same bits whatever
 * the thread count. Equal to the addon's kLambBlock.
 */
export const LAMB_NORM_BLOCK = 8192;

/**
 * The update on plain arrays; `clip` divides the gradient (1: no clipping). Element i of p is read
 * before element i of pOut is written and m', v' are written before anything reads them back,
 * so the outputs may alias the inputs.
 */
export function lambUpdate({ p, g, m, v, pOut, mOut, vOut }: MomentArrays, clip: number, a: LambUpdateAttrs): void {
  const { beta1, beta2, eps, weightDecay: wd, adapt } = a;
  const c1 = 1 - beta1;
  const c2 = 1 - beta2;
  const bc1 = a.biasCorrection1;
  const sqrtBc2 = Math.sqrt(a.biasCorrection2);
  const n = p.length;
  let pSquares = 0;
  let uSquares = 0;
  for (let begin = 0; begin < n; begin += LAMB_NORM_BLOCK) {
    const end = Math.min(n, begin + LAMB_NORM_BLOCK);
    // The four lanes as locals (element begin + 4j + l goes to lane l), in the addon's order.
    let p0 = 0, p1 = 0, p2 = 0, p3 = 0;
    let u0 = 0, u1 = 0, u2 = 0, u3 = 0;
    for (let i = begin; i < end; i++) {
      const gi = g[i] / clip;
      mOut[i] = beta1 * m[i] + c1 * gi;
      vOut[i] = beta2 * v[i] + c2 * gi * gi;
      if (!adapt) continue;
      const pi = p[i];
      // u from the stored float32 m' and v' (what the second pass reads back).
      const u = mOut[i] / bc1 / (Math.sqrt(vOut[i]) / sqrtBc2 + eps) + wd * pi;
      const lane = (i - begin) & 3;
      if (lane === 0) (p0 += pi * pi), (u0 += u * u);
      else if (lane === 1) (p1 += pi * pi), (u1 += u * u);
      else if (lane === 2) (p2 += pi * pi), (u2 += u * u);
      else (p3 += pi * pi), (u3 += u * u);
    }
    pSquares += p0 + p1 + (p2 + p3);
    uSquares += u0 + u1 + (u2 + u3);
  }
  let scale = a.lr;
  if (adapt) {
    const pNorm = Math.sqrt(pSquares);
    const uNorm = Math.sqrt(uSquares);
    let trust = pNorm > 0 && uNorm > 0 ? pNorm / uNorm : 1;
    if (a.trustClip) trust = Math.min(trust, 1);
    scale *= trust;
  }
  for (let i = 0; i < n; i++) {
    const pi = p[i];
    pOut[i] = pi - scale * (mOut[i] / bc1 / (Math.sqrt(vOut[i]) / sqrtBc2 + eps) + wd * pi);
  }
}

/**
 * Inputs param, grad, m, v (float32, one shape) and, when the gradients are clipped, clip (the
 * divisor, one float32); outputs [param', m', v'] (adamw.ts' momentBlocks: in place where only
 * the input's tensor holds its block).
 */
export const lambUpdateKernel: KernelCall = ({ inputs, backend, attrs }) => {
  const { outputs, arrays: x } = momentBlocks(backend, inputs);
  const clipInput = inputs.clip as TensorInfo | undefined;
  const clip = clipInput ? heapF32(backend, clipInput)[0] : 1;
  const a = attrs as unknown as LambUpdateAttrs;
  const native = nativeLamb();
  if (native !== null) {
    // Same arithmetic, threaded and vectorised (a ViT-B/16 step updates 86 M values).
    native.lambUpdate(x.p, x.g, x.m, x.v, x.pOut, x.mOut, x.vOut, a.beta1, a.beta2, a.eps, a.lr, a.weightDecay, a.biasCorrection1, a.biasCorrection2, clip, a.adapt, a.trustClip);
  } else {
    lambUpdate(x, clip, a);
  }
  return outputs;
};
