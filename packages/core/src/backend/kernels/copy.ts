/**
 * GatherV2, Slice and SplitV for the wasm backend as block copies on the heap.
 *
 * The stock wasm kernels are far slower than the memory they move: Slice starts with
 * `readSync(x)`, which copies the WHOLE input out of the heap just to take a piece of it (SplitV
 * calls that Slice once per output, so copies x once per output), and the C++ Gather walks the
 * output element by element through stride arithmetic. In a MaskSub ViT step that is ~15 ms
 * for a [4096,192] token gather that moves 1.5 MB.
 *
 * Here every kernel is a few `copyWithin` calls on one typed-array view of the whole heap: the
 * longest run that is contiguous in both input and output is copied at once (a gather's run is
 * everything after `axis`; consecutive indices merge into one run). Outputs are always fresh
 * tensors, never views into the input. String tensors (and non-int32 indices) go to the stock
 * kernels.
 */
import { tf } from '../../tf.js';
import { allocate, heapView, sizeOf, type KernelCall, type TensorInfo, type WasmBackend } from '../wasm_heap.js';

/** One element of each dtype these kernels copy, seen as raw bits of the same width. */
type ElementView = Int32Array | Uint8Array;

/**
 * Runs shorter than this are copied with a plain loop: `copyWithin` is a call into the runtime
 * with a fixed cost that a loop of a few elements beats (e.g. a gather along the last axis).
 */
const SHORT_RUN = 16;

function isCopyable(dtype: tf.DataType): boolean {
  return dtype === 'float32' || dtype === 'int32' || dtype === 'bool';
}

/**
 * The whole wasm heap as elements of `dtype`'s width (float32 is copied as its int32 bits, so
 * NaN payloads survive unchanged). Take it after the kernel's last allocation: growing the heap
 * detaches the buffer behind any earlier view.
 */
function heapElements(backend: WasmBackend, like: TensorInfo): ElementView {
  const buffer = heapView(backend, like).buffer;
  return like.dtype === 'bool' ? new Uint8Array(buffer) : new Int32Array(buffer);
}

/** Where a tensor's first element is in `heapElements`. */
function elementOffset(backend: WasmBackend, info: TensorInfo): number {
  const data = backend.dataIdMap.get(info.dataId);
  if (data === undefined) throw new Error(`tensor ${info.dataId} is not on the wasm backend`);
  return info.dtype === 'bool' ? data.memoryOffset : data.memoryOffset / 4;
}

function copyRun(heap: ElementView, dst: number, src: number, length: number): void {
  if (length < SHORT_RUN) {
    for (let i = 0; i < length; i++) heap[dst + i] = heap[src + i];
  } else {
    heap.copyWithin(dst, src, src + length);
  }
}

function stridesOf(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    strides[d] = s;
    s *= shape[d];
  }
  return strides;
}

/**
 * Copies the box `begin`..`begin+size` of a row-major tensor of shape `srcShape` at heap element
 * `src` to a dense tensor at `dst`. The innermost axes that the box spans fully, plus the first
 * one it cuts, form one contiguous run; an odometer walks the remaining outer axes (those of
 * size 1 only shift the start, so a box that is contiguous overall is a single copy).
 */
export function copyBox(
  heap: ElementView,
  src: number,
  srcShape: readonly number[],
  begin: readonly number[],
  size: readonly number[],
  dst: number,
): void {
  const rank = srcShape.length;
  if (sizeOf(size) === 0) return;
  const strides = stridesOf(srcShape);
  let start = src;
  for (let d = 0; d < rank; d++) start += begin[d] * strides[d];

  let firstRunAxis = rank;
  let run = 1;
  while (firstRunAxis > 0) {
    firstRunAxis--;
    run *= size[firstRunAxis];
    if (size[firstRunAxis] !== srcShape[firstRunAxis]) break;
  }
  const outerAxes: number[] = [];
  for (let d = 0; d < firstRunAxis; d++) if (size[d] > 1) outerAxes.push(d);

  if (outerAxes.length === 0) {
    copyRun(heap, dst, start, run);
    return;
  }
  const count = sizeOf(outerAxes.map((d) => size[d]));
  const coord = new Array<number>(outerAxes.length).fill(0);
  let from = start;
  let to = dst;
  for (let i = 0; i < count; i++) {
    copyRun(heap, to, from, run);
    to += run;
    for (let a = outerAxes.length - 1; a >= 0; a--) {
      const d = outerAxes[a];
      if (++coord[a] < size[d]) {
        from += strides[d];
        break;
      }
      coord[a] = 0;
      from -= (size[d] - 1) * strides[d];
    }
  }
}

export function makeFastSlice(stock: KernelCall): KernelCall {
  return (args) => {
    const x = args.inputs.x as TensorInfo;
    if (!isCopyable(x.dtype)) return stock(args);
    const { begin, size } = (args.attrs ?? {}) as unknown as { begin: number | number[]; size?: number | number[] };
    // parseSliceParams pads a short `begin`/`size` with 0 / the rest of the axis and resolves -1.
    const [begin_, size_] = tf.slice_util.parseSliceParams(x, begin, size);
    const backend = args.backend;
    const out = allocate(backend, size_, x.dtype);
    const heap = heapElements(backend, out);
    copyBox(heap, elementOffset(backend, x), x.shape, begin_, size_, elementOffset(backend, out));
    return out;
  };
}

export function makeFastSplitV(stock: KernelCall): KernelCall {
  return (args) => {
    const x = args.inputs.x as TensorInfo;
    if (!isCopyable(x.dtype)) return stock(args);
    const { numOrSizeSplits, axis } = (args.attrs ?? {}) as unknown as { numOrSizeSplits: number | number[]; axis: number };
    const backend = args.backend;
    const ax = tf.util.parseAxisParam(axis, x.shape)[0];
    const splitSizes = tf.backend_util.prepareSplitSize(x, numOrSizeSplits, ax);
    // Allocate every output before taking the heap view: each allocation may grow the heap.
    const outs = splitSizes.map((s) => {
      const shape = [...x.shape];
      shape[ax] = s;
      return allocate(backend, shape, x.dtype);
    });
    const heap = heapElements(backend, x);
    const src = elementOffset(backend, x);
    const begin = new Array<number>(x.shape.length).fill(0);
    for (const out of outs) {
      copyBox(heap, src, x.shape, begin, out.shape, elementOffset(backend, out));
      begin[ax] += out.shape[ax];
    }
    return outs;
  };
}

/**
 * Throws on the first index outside [0, axisSize) — the stock wasm and cpu kernels assert the
 * same (with the same message start), rather than reading outside the tensor.
 */
function checkIndices(indices: Int32Array, axis: number, xShape: readonly number[]): void {
  const axisSize = xShape[axis];
  for (let i = 0; i < indices.length; i++) {
    const index = indices[i];
    if (index < 0 || index >= axisSize) {
      throw new Error(
        `GatherV2: the index value ${index} is not in [0, ${axisSize - 1}] ` +
          `(indices element ${i}; axis ${axis} of x [${xShape.join(',')}] has size ${axisSize})`,
      );
    }
  }
}

export function makeFastGatherV2(stock: KernelCall): KernelCall {
  return (args) => {
    const { x, indices } = args.inputs as { x: TensorInfo; indices: TensorInfo };
    if (!isCopyable(x.dtype) || indices.dtype !== 'int32') return stock(args);
    const attrs = (args.attrs ?? {}) as unknown as { axis: number; batchDims?: number };
    const backend = args.backend;
    const axis = tf.util.parseAxisParam(attrs.axis, x.shape)[0];
    // Before any allocation, so a bad index leaks nothing.
    checkIndices(heapView(backend, indices) as Int32Array, axis, x.shape);
    // x viewed as [batch, outer, dim, slice], indices as [batch, n], out as [batch, outer, n, slice].
    const info = tf.backend_util.segment_util.collectGatherOpShapeInfo(x, indices, axis, attrs.batchDims ?? 0);
    const out = allocate(backend, info.outputShape, x.dtype);
    const { batchSize, outerSize, dimSize, sliceSize } = info;
    if (sizeOf(info.outputShape) === 0) return out;

    const heap = heapElements(backend, out);
    const idx = heapView(backend, indices) as Int32Array;
    const n = idx.length / batchSize;
    const xStart = elementOffset(backend, x);
    let to = elementOffset(backend, out);
    for (let b = 0; b < batchSize; b++) {
      const idxBase = b * n;
      for (let o = 0; o < outerSize; o++) {
        const xBase = xStart + (b * outerSize + o) * dimSize * sliceSize;
        if (sliceSize === 1) {
          // Gather along the last axis: single elements, where run bookkeeping costs more than it saves.
          for (let j = 0; j < n; j++) heap[to + j] = heap[xBase + idx[idxBase + j]];
          to += n;
          continue;
        }
        let j = 0;
        while (j < n) {
          // Consecutive indices (a sorted keep-list has many) are one contiguous run of x.
          const first = idx[idxBase + j];
          let k = j + 1;
          while (k < n && idx[idxBase + k] === first + (k - j)) k++;
          const length = (k - j) * sliceSize;
          copyRun(heap, to, xBase + first * sliceSize, length);
          to += length;
          j = k;
        }
      }
    }
    return out;
  };
}
