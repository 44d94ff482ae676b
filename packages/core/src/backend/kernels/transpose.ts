/**
 * Transpose for the wasm backend, by the native addon where every output row is one contiguous
 * run of the input: perms that keep the last axis last. Those are attention's head split and
 * merge ([B, T, H, D] <-> [B, H, T, D], in every ViT, BERT, CLIP and Swin block, forward and
 * backward) and Swin's window partitions. tfjs' C++ Transpose walks them element by element on
 * one thread: [64, 65, 3, 64] (the bench ViT's heads) took 0.22-0.35 ms alone against 0.09-0.10
 * ms for whole rows copied on the addon's two threads. Inside a training step the data comes
 * cold from memory and the gain shrinks: the bench ViT's 44 head transposes per standard step
 * went from 15.1 to 8.6 ms (`pnpm bench:profile --shapes`, about 1.4 % of the step); Swin's
 * smaller ones did not measurably change (docs/perf.md, 2026-12-08). A copy, so the same bits.
 * Other perms, other dtypes, small tensors and an absent addon keep the stock kernel.
 */
import { nativePermuteRows } from '../native.js';
import { allocate, sizeOf, type KernelCall, type TensorInfo, type WasmBackend } from '../wasm_heap.js';

/** Below this many elements a call into the addon costs about what the stock copy does. */
const MIN_NATIVE_ELEMENTS = 4096;
/** The addon's limit on rank. */
const MAX_RANK = 8;

/** True when `perm` leaves the last axis last (rank 2 and up): output rows are input runs. */
export function keepsRowsWhole(perm: readonly number[]): boolean {
  return perm.length >= 2 && perm[perm.length - 1] === perm.length - 1;
}

/** A tensor's 4-byte elements as a Float32Array view (int32 data as its bits). */
function words(backend: WasmBackend, info: TensorInfo): Float32Array {
  const view = backend.typedArrayFromHeap(info);
  return view instanceof Float32Array ? view : new Float32Array(view.buffer, view.byteOffset, view.length);
}

/** `addon` is the addon's getter (a seam for the test that checks which path a call takes). */
export function makeFastTranspose(stock: KernelCall, addon: typeof nativePermuteRows = nativePermuteRows): KernelCall {
  return (args) => {
    const x = args.inputs.x as TensorInfo;
    const perm = (args.attrs?.perm ?? []) as number[];
    const native = addon();
    const eligible =
      native !== null &&
      (x.dtype === 'float32' || x.dtype === 'int32') &&
      perm.length === x.shape.length &&
      perm.length <= MAX_RANK &&
      keepsRowsWhole(perm) &&
      sizeOf(x.shape) >= MIN_NATIVE_ELEMENTS;
    if (!eligible) return stock(args);
    const backend = args.backend;
    const out = allocate(backend, perm.map((axis) => x.shape[axis]), x.dtype);
    // Views after the allocation: growing the heap detaches the buffer behind earlier ones.
    native.permuteRows(words(backend, x), words(backend, out), Int32Array.from(x.shape), Int32Array.from(perm));
    return out;
  };
}
