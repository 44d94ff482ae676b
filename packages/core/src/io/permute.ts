/** Axis permutation of host tensors (what ONNX Transpose does), for re-laying weights out as PyTorch stores them. */
import type { HostTensor, TypedData } from './types.js';

/** out.shape[i] = in.shape[perm[i]], like onnx Transpose / numpy.transpose. */
export function permute(t: HostTensor, perm: readonly number[]): HostTensor {
  const rank = t.shape.length;
  if (perm.length !== rank || [...perm].sort((a, b) => a - b).some((p, i) => p !== i)) {
    throw new Error(`permute: [${perm}] is not a permutation of rank ${rank} (tensor '${t.name}')`);
  }
  if (perm.every((p, i) => p === i)) return t;
  const outShape = perm.map((p) => t.shape[p]);
  const inStrides = stridesOf(t.shape);
  const stepIn = perm.map((p) => inStrides[p]); // input stride of each output axis
  const n = t.data.length;
  const Ctor = t.data.constructor as new (n: number) => TypedData;
  const out = new Ctor(n);
  const src = t.data as unknown as ArrayLike<number>;
  const dst = out as unknown as { [i: number]: number };
  const idx = new Array<number>(rank).fill(0);
  let inOff = 0;
  for (let o = 0; o < n; o++) {
    dst[o] = src[inOff];
    // odometer over output indices, keeping the input offset in step
    for (let ax = rank - 1; ax >= 0; ax--) {
      idx[ax]++;
      inOff += stepIn[ax];
      if (idx[ax] < outShape[ax]) break;
      inOff -= stepIn[ax] * outShape[ax];
      idx[ax] = 0;
    }
  }
  return { ...t, shape: outShape, data: out };
}

/** Swap the two axes of a matrix ([in,out] <-> [out,in]). */
export function transpose2d(t: HostTensor): HostTensor {
  return permute(t, [1, 0]);
}

/** Compose: applying `first` then `second` equals applying the result. */
export function composePerm(first: readonly number[], second: readonly number[]): number[] {
  return second.map((s) => first[s]);
}

function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1] * shape[i + 1];
  return s;
}
