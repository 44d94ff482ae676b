/**
 * A gradient summed into the block of the partial sum it joins, instead of into a new block.
 *
 * Gradient sums consume their first operand: the walk's accumulation of an input's gradients,
 * the MaskSub sub pass added onto the main pass's gradients, micro-batch accumulation. As
 * `tf.add` each writes a third block the size of the parameter while both operands are alive.
 * For a large table that block is where the heap grows: BERT-base batch 8 MaskSub held at most
 * 2,500 MiB of tensors, yet its heap grew from 2,552 to 2,731 MiB at the one allocation of the
 * word-embedding gradient sum (89 MiB, 23 M floats), which found no free run that long among the
 * holes the activations had left (bench/adhoc allocation trace at 04c885c). Written in place,
 * the sum allocates nothing.
 *
 * The arithmetic is float32 `sum + addend` per element, the same bits as tfjs' Add.
 */
import { nativeAddInto } from '../native.js';
import { tapeRecording } from '../../tape.js';
import { tf } from '../../tf.js';
import { heapF32, heapView, sizeOf, updateInPlaceOrNew, type KernelCall, type TensorInfo } from '../wasm_heap.js';

export const ADD_INTO = 'MasksubAddInto';

/**
 * Inputs sum and addend, float32 of one shape; output sum + addend, in sum's own block when only
 * its tensor holds the data, else in a new one.
 */
export const addIntoKernel: KernelCall = ({ inputs, backend }) => {
  const sum = inputs.sum as TensorInfo;
  const addend = inputs.addend as TensorInfo;
  if (sum.dtype !== 'float32' || addend.dtype !== 'float32' || !tf.util.arraysEqual(sum.shape, addend.shape)) {
    throw new Error(`${ADD_INTO}: sum and addend must be float32 of one shape, got ${sum.dtype} [${sum.shape}] and ${addend.dtype} [${addend.shape}]`);
  }
  const out = updateInPlaceOrNew(backend, sum);
  if (sizeOf(out.shape) === 0) return out;
  // Views after the allocation (the heap may have grown).
  const o = heapF32(backend, out);
  if (out.dataId !== sum.dataId) o.set(heapView(backend, sum));
  const a = heapF32(backend, addend);
  const native = nativeAddInto();
  if (native) native.addInto(o, a);
  else for (let i = 0; i < o.length; i++) o[i] += a[i];
  return out;
};

/**
 * `sum + addend` for a caller that owns `sum`: it disposes `sum` right after and never reads it
 * again (its data may now hold the result). In place on wasm where the shapes match and no
 * gradient tape records (a recorded op must keep its inputs); `tf.add` everywhere else, with
 * broadcasting. `addend` is left to the caller either way.
 */
export function addOwned(sum: tf.Tensor, addend: tf.Tensor): tf.Tensor {
  const fused =
    tf.getBackend() === 'wasm' &&
    sum.dtype === 'float32' &&
    addend.dtype === 'float32' &&
    tf.util.arraysEqual(sum.shape, addend.shape) &&
    tf.getKernel(ADD_INTO, 'wasm') != null &&
    !tapeRecording();
  return fused ? (tf.engine().runKernel(ADD_INTO, { sum, addend }, {}) as tf.Tensor) : tf.add(sum, addend);
}
