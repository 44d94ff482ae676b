/**
 * Small helpers for kernels that run in TypeScript on the tfjs wasm backend's memory.
 *
 * Why a structural type instead of importing `BackendWasm`: the kernels only need a few members,
 * and typing against them keeps this package independent of the wasm package's internal d.ts
 * (which drags in `@tensorflow/tfjs-core` types from a second path).
 *
 * Caution that shapes every kernel here: the wasm heap can grow on any allocation, which detaches
 * the old `ArrayBuffer`. Typed-array views must therefore be (re)taken after the last
 * `makeOutput` / kernel call that precedes their use.
 */
import { tf } from '../tf.js';

export type TensorInfo = tf.TensorInfo;
export type NumericDType = 'float32' | 'int32' | 'bool';
export type HeapArray = Float32Array | Int32Array | Uint8Array;

/** The members of tfjs' `BackendWasm` that masksub's kernels use. */
export interface WasmBackend {
  dataIdMap: {
    get(dataId: object): { id: number; shape: number[]; dtype: tf.DataType; memoryOffset: number } | undefined;
    delete(dataId: object): unknown;
  };
  makeOutput(shape: number[], dtype: tf.DataType, memoryOffset?: number): TensorInfo;
  typedArrayFromHeap(info: TensorInfo): tf.TypedArray;
  disposeData(dataId: object, force?: boolean): boolean;
  incRef(dataId: object): void;
  /** How many tensors hold the data (1: only the tensor the kernel was given). */
  refCount(dataId: object): number;
  /** The Emscripten module; `tfjs.disposeData` unregisters a tensor id without freeing memory. */
  wasm: { tfjs: { disposeData(id: number): void } };
}

/** Signature of a registered kernel function, narrowed to what we call. */
export type KernelCall = (args: { inputs: tf.NamedTensorInfoMap; backend: WasmBackend; attrs?: tf.NamedAttrMap }) =>
  TensorInfo | TensorInfo[];

/** A live view of a tensor's data on the wasm heap (valid until the next allocation). */
export function heapView(backend: WasmBackend, info: TensorInfo): HeapArray {
  return backend.typedArrayFromHeap(info) as HeapArray;
}

export function heapF32(backend: WasmBackend, info: TensorInfo): Float32Array {
  const view = backend.typedArrayFromHeap(info);
  if (!(view instanceof Float32Array)) throw new Error(`expected a float32 tensor, got ${info.dtype}`);
  return view;
}

/**
 * The block an update kernel writes its result for `input` into: the input's own when only its
 * tensor holds it (the output is that data with one more holder, as tfjs' Identity does), else a
 * new one (a block another tensor shares, such as an EMA copy made from the weights, keeps its
 * values). Update kernels read element i of every input before writing element i of any output.
 */
export function updateInPlaceOrNew(backend: WasmBackend, input: TensorInfo): TensorInfo {
  if (backend.refCount(input.dataId) === 1) {
    backend.incRef(input.dataId);
    return { dataId: input.dataId, shape: [...input.shape], dtype: input.dtype };
  }
  return allocate(backend, [...input.shape], input.dtype);
}

/** Allocate a new tensor on the wasm heap (contents undefined unless `zero`). */
export function allocate(backend: WasmBackend, shape: number[], dtype: tf.DataType, zero = false): TensorInfo {
  const info = backend.makeOutput(shape, dtype);
  if (zero) heapView(backend, info).fill(0);
  return info;
}

/**
 * A tensor over `size(shape)` elements of existing heap memory, `elementOffset` float32s into
 * `base` (no copy). Release it with `releaseView`, never `release`: disposeData would `free()`
 * a pointer into the middle of another tensor's block.
 */
export function heapViewTensor(backend: WasmBackend, base: TensorInfo, elementOffset: number, shape: number[]): TensorInfo {
  const baseData = backend.dataIdMap.get(base.dataId);
  if (baseData === undefined) throw new Error('heapViewTensor: base tensor is not on the wasm backend');
  const offset = baseData.memoryOffset + elementOffset * 4;
  return backend.makeOutput(shape, base.dtype, offset);
}

/** Unregisters views made by `heapViewTensor` (and any XNNPACK operator cached for them). */
export function releaseView(backend: WasmBackend, ...infos: TensorInfo[]): void {
  for (const info of infos) {
    const data = backend.dataIdMap.get(info.dataId);
    if (data === undefined) continue;
    backend.wasm.tfjs.disposeData(data.id);
    backend.dataIdMap.delete(info.dataId);
  }
}

export function release(backend: WasmBackend, ...infos: TensorInfo[]): void {
  for (const info of infos) backend.disposeData(info.dataId);
}

/** A kernel's single output (kernels may return arrays; the ones we delegate to return one). */
export function single(out: TensorInfo | TensorInfo[]): TensorInfo {
  return Array.isArray(out) ? out[0] : out;
}

export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * dst[dstOff + c*rows + r] = src[srcOff + r*cols + c], in 32x32 tiles so both sides stay in
 * cache (a naive loop strides through one side by a whole row per element).
 */
export function transposeInto(
  src: Float32Array,
  srcOff: number,
  rows: number,
  cols: number,
  dst: Float32Array,
  dstOff: number,
): void {
  const T = 32;
  for (let r0 = 0; r0 < rows; r0 += T) {
    const r1 = Math.min(r0 + T, rows);
    for (let c0 = 0; c0 < cols; c0 += T) {
      const c1 = Math.min(c0 + T, cols);
      for (let r = r0; r < r1; r++) {
        const s = srcOff + r * cols;
        for (let c = c0; c < c1; c++) dst[dstOff + c * rows + r] = src[s + c];
      }
    }
  }
}

/**
 * For an output batch index, the batch index of an operand with (possibly broadcast) leading
 * dims `operandDims` against the broadcast result `outDims` (numpy rules, right-aligned).
 */
export function broadcastIndexer(operandDims: readonly number[], outDims: readonly number[]): (outIndex: number) => number {
  const rank = outDims.length;
  const offset = rank - operandDims.length;
  const same = operandDims.length === outDims.length && operandDims.every((d, i) => d === outDims[i]);
  if (same) return (i) => i;
  if (sizeOf(operandDims) === 1) return () => 0;
  return (outIndex) => {
    let rem = outIndex;
    let idx = 0;
    let stride = 1;
    for (let ax = rank - 1; ax >= 0; ax--) {
      const coord = rem % outDims[ax];
      rem = Math.floor(rem / outDims[ax]);
      const od = ax - offset;
      if (od >= 0) {
        const d = operandDims[od];
        idx += (d === 1 ? 0 : coord) * stride;
        stride *= d;
      }
    }
    return idx;
  };
}

/** The Emscripten allocator behind the backend's tensors: tfjs' `move` mallocs each tensor's block, `disposeData` frees it. */
interface EmscriptenAllocator {
  _malloc(bytes: number): number;
  _free(pointer: number): void;
  /** Set while observeAllocations runs (it does not nest). */
  masksubObserving?: boolean;
}

/** Told of every block the wasm backend's JS side allocates on the heap, and of its release. */
export interface AllocationObserver {
  allocated(pointer: number, bytes: number): void;
  /** A block allocated while observed is freed (the release of blocks from before is not reported). */
  freed(pointer: number, bytes: number): void;
}

/**
 * Runs `run` with every malloc / free of the wasm backend's JS side (tensor data) reported to
 * `observer`, pointers unsigned (wasm only). Allocations inside the module's C++ (XNNPACK's packed weights)
 * and the allocator's own fragmentation are not seen.
 */
export function observeAllocations<T>(observer: AllocationObserver, run: () => T): T {
  if (tf.getBackend() !== 'wasm') throw new Error(`observeAllocations needs the wasm backend, not '${tf.getBackend()}'`);
  const module = (tf.backend() as unknown as WasmBackend).wasm as unknown as EmscriptenAllocator;
  if (module.masksubObserving) throw new Error('observeAllocations does not nest');
  // Emscripten's first call of each replaces the module's property with the raw export: resolve
  // both now, so that replacement cannot drop the wrappers below.
  module._free(module._malloc(4));
  const malloc = module._malloc;
  const free = module._free;
  const blocks = new Map<number, number>();
  module.masksubObserving = true;
  // _malloc returns a signed int32 above 2 GiB; tfjs keeps `>>> 0` of it and frees that.
  module._malloc = (bytes) => {
    const pointer = malloc(bytes);
    blocks.set(pointer >>> 0, bytes);
    observer.allocated(pointer >>> 0, bytes);
    return pointer;
  };
  module._free = (pointer) => {
    const bytes = blocks.get(pointer >>> 0);
    if (bytes !== undefined) {
      blocks.delete(pointer >>> 0);
      observer.freed(pointer >>> 0, bytes);
    }
    free(pointer);
  };
  try {
    return run();
  } finally {
    module._malloc = malloc;
    module._free = free;
    module.masksubObserving = false;
  }
}

/**
 * The most bytes `run`'s tensor allocations on the wasm heap held at once (what was alive before
 * is not counted, and a block of before freed inside `run` is not subtracted, so the count errs
 * high). Exact where the heap's size cannot be: the heap grows in steps of up to 96 MiB and never
 * shrinks, so its size says little about one step's needs, and nothing after an earlier, larger
 * one. What the module's C++ and fragmentation add is not seen: a plan keeps headroom for it.
 */
export function peakAllocationDuring(run: () => void): number {
  let live = 0;
  let peak = 0;
  const observer: AllocationObserver = {
    allocated: (_, bytes) => {
      live += bytes;
      if (live > peak) peak = live;
    },
    freed: (_, bytes) => {
      live -= bytes;
    },
  };
  observeAllocations(observer, run);
  return peak;
}
