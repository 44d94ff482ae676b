/**
 * UnsortedSegmentSum for the wasm backend (missing in tfjs-backend-wasm 4.22). It is the gradient
 * of gather, so every embedding / position-table / token-select backward pass needs it.
 *
 * out[id, ...] += x[s, ...] for each segment position s with id = segmentIds[s]. Ids outside
 * [0, numSegments) are dropped, as in TensorFlow. One linear pass over x: native (AVX2, threads
 * over the inner columns) for float32 with masksub's addon, a JS loop otherwise; both add in the
 * order of s, so they give the same bits.
 */
import { nativeSegmentSum } from '../native.js';
import { tf } from '../../tf.js';
import { allocate, heapView, sizeOf, type KernelCall, type TensorInfo } from '../wasm_heap.js';

export const unsortedSegmentSum: KernelCall = ({ inputs, backend, attrs }) => {
  const x = inputs.x as TensorInfo;
  const segmentIds = inputs.segmentIds as TensorInfo;
  const numSegments = (attrs ?? {}).numSegments as number;
  if (x.dtype !== 'float32' && x.dtype !== 'int32') {
    throw new Error(`UnsortedSegmentSum (wasm): dtype ${x.dtype} is not supported`);
  }
  const positions = sizeOf(segmentIds.shape);
  const segRank = segmentIds.shape.length;
  if (!tf.util.arraysEqual(x.shape.slice(0, segRank), segmentIds.shape)) {
    throw new Error(`UnsortedSegmentSum (wasm): segmentIds shape [${segmentIds.shape}] must prefix x shape [${x.shape}]`);
  }
  const rest = x.shape.slice(segRank);
  const inner = sizeOf(rest);
  const out = allocate(backend, [numSegments, ...rest], x.dtype, true);
  // Views after the allocation: it may have grown (and detached) the heap.
  const xs = heapView(backend, x);
  const ids = heapView(backend, segmentIds);
  const os = heapView(backend, out);
  const native = x.dtype === 'float32' && numSegments > 0 && positions > 0 ? nativeSegmentSum() : null;
  if (native && xs instanceof Float32Array && os instanceof Float32Array && ids instanceof Int32Array) {
    native.segmentSum(xs, ids, numSegments, os);
    return out;
  }
  for (let s = 0; s < positions; s++) {
    const id = ids[s];
    if (id < 0 || id >= numSegments) continue;
    const src = s * inner;
    const dst = id * inner;
    for (let j = 0; j < inner; j++) os[dst + j] += xs[src + j];
  }
  return out;
};
