/**
 * Registers masksub's kernels on the tfjs wasm backend: the ones it lacks for training, and
 * faster replacements for BatchMatMul / _FusedMatMul (see kernels/batch_mat_mul.ts).
 *
 * Must run after `@tensorflow/tfjs-backend-wasm` has been imported (it registers the stock
 * kernels we wrap). Safe to call any number of times: a replaced kernel remembers its stock
 * function, so a second call neither double-wraps nor loses the original.
 */
import { tf } from '../tf.js';
import { makeFastBatchMatMul, makeFastFusedMatMul } from './kernels/batch_mat_mul.js';
import {
  depthwiseConv2dBackpropFilter,
  depthwiseConv2dBackpropInput,
  makeConv2DBackpropFilter,
} from './kernels/conv_backprop.js';
import { ADAMW_UPDATE, adamwUpdateKernel } from './kernels/adamw.js';
import { SGD_UPDATE, sgdUpdateKernel } from './kernels/sgd.js';
import { ADD_INTO, addIntoKernel, addOwned } from './kernels/add_into.js';
import { LAMB_UPDATE, lambUpdateKernel } from './kernels/lamb.js';
import { setOwnedSum } from '../lean-gradients.js';
import { registerFusedKernels } from './kernels/fused.js';
import { registerBatchNormKernels } from './kernels/batch_norm.js';
import { makeConv2DBackpropInput } from './kernels/conv_backprop_input.js';
import { makeNativeConv2D, makeNativeConv2DBackpropFilter, makeNativeConv2DBackpropInput } from './kernels/conv_native.js';
import { makeFastGatherV2, makeFastSlice, makeFastSplitV } from './kernels/copy.js';
import { makeSharedCast, makeSharedIdentity } from './kernels/identity.js';
import { makeLeadingAxesSum } from './kernels/sum.js';
import { makeFastTranspose } from './kernels/transpose.js';
import { unsortedSegmentSum } from './kernels/unsorted_segment_sum.js';
import type { KernelCall } from './wasm_heap.js';

const STOCK = Symbol.for('masksub.stockKernel');
type Wrapped = tf.KernelFunc & { [STOCK]?: tf.KernelFunc };

export interface WasmKernelRegistration {
  /** Kernels the wasm backend lacked and masksub added. */
  added: string[];
  /** Stock wasm kernels masksub wrapped (the stock one is still used where it is fast). */
  replaced: string[];
}

function asKernelFunc(call: KernelCall): tf.KernelFunc {
  return call as unknown as tf.KernelFunc;
}

/** The stock wasm kernel function, also when masksub already wrapped it. */
function stockKernel(name: string): tf.KernelFunc {
  const config = tf.getKernel(name, 'wasm');
  if (config == null) {
    throw new Error(`wasm kernel ${name} is not registered: import '@tensorflow/tfjs-backend-wasm' first`);
  }
  const fn = config.kernelFunc as Wrapped;
  return fn[STOCK] ?? fn;
}

function replace(name: string, make: (stock: KernelCall) => KernelCall): void {
  // Idempotent: a second call re-wraps the remembered stock function, never the wrapper.
  const config = tf.getKernel(name, 'wasm');
  const stock = stockKernel(name);
  const wrapped = asKernelFunc(make(stock as unknown as KernelCall)) as Wrapped;
  wrapped[STOCK] = stock;
  tf.unregisterKernel(name, 'wasm');
  // Keep setupFunc/disposeFunc: the stock kernelFunc depends on its setup (a cwrap of the C++
  // entry point) having run when the backend initialises.
  tf.registerKernel({ ...config, kernelName: name, backendName: 'wasm', kernelFunc: wrapped });
}

/**
 * Registers `fn` unless the backend has the kernel already: either from an earlier call (keeps
 * this idempotent) or natively from a later tfjs release, whose own kernel should win.
 */
function addIfMissing(name: string, fn: KernelCall, added: string[]): void {
  if (tf.getKernel(name, 'wasm') != null) return;
  tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: asKernelFunc(fn) });
  added.push(name);
}

/** Registers (or re-registers) all masksub wasm kernels. Returns what was added / replaced. */
export function registerWasmKernels(): WasmKernelRegistration {
  const stockMatMul = stockKernel(tf.BatchMatMul) as unknown as KernelCall;
  const stockTranspose = stockKernel(tf.Transpose) as unknown as KernelCall;
  const stockConv2D = stockKernel(tf.Conv2D) as unknown as KernelCall;
  replace(tf.BatchMatMul, (stock) => makeFastBatchMatMul(stock, stockTranspose));
  // Convolutions: the native im2col + GEMM kernels when the addon has them (decided per call in
  // conv_native.ts), else XNNPACK / masksub's wasm fallbacks.
  replace(tf.Conv2D, (stock) => makeNativeConv2D(stock));
  replace(tf.Conv2DBackpropInput, (stock) => makeNativeConv2DBackpropInput(makeConv2DBackpropInput(stock, stockConv2D)));
  replace(tf._FusedMatMul, (stock) => makeFastFusedMatMul(stock, stockTranspose));
  replace(tf.Identity, makeSharedIdentity);
  replace(tf.Cast, makeSharedCast);
  replace(tf.Sum, makeLeadingAxesSum);
  replace(tf.GatherV2, makeFastGatherV2);
  replace(tf.Slice, makeFastSlice);
  replace(tf.SplitV, makeFastSplitV);
  replace(tf.Transpose, makeFastTranspose);
  const added: string[] = [];
  addIfMissing(tf.UnsortedSegmentSum, unsortedSegmentSum, added);
  // im2col + the fast BatchMatMul (native GEMM when loaded, else XNNPACK).
  addIfMissing(tf.Conv2DBackpropFilter, makeNativeConv2DBackpropFilter(makeConv2DBackpropFilter(makeFastBatchMatMul(stockMatMul, stockTranspose))), added);
  addIfMissing(tf.DepthwiseConv2dNativeBackpropFilter, depthwiseConv2dBackpropFilter, added);
  addIfMissing(tf.DepthwiseConv2dNativeBackpropInput, depthwiseConv2dBackpropInput, added);
  addIfMissing(ADAMW_UPDATE, adamwUpdateKernel, added);
  addIfMissing(SGD_UPDATE, sgdUpdateKernel, added);
  addIfMissing(LAMB_UPDATE, lambUpdateKernel, added);
  addIfMissing(ADD_INTO, addIntoKernel, added);
  setOwnedSum(addOwned);
  added.push(...registerFusedKernels());
  added.push(...registerBatchNormKernels());
  return { added, replaced: [tf.BatchMatMul, tf._FusedMatMul, tf.Identity, tf.Cast, tf.Sum, tf.GatherV2, tf.Slice, tf.SplitV, tf.Transpose, tf.Conv2D, tf.Conv2DBackpropInput] };
}

/** Test/bench hook: put the stock BatchMatMul / _FusedMatMul back (to measure "before"). */
export function restoreStockMatMul(): void {
  for (const name of [tf.BatchMatMul, tf._FusedMatMul]) {
    const config = tf.getKernel(name, 'wasm');
    if (config == null) continue;
    const stock = (config.kernelFunc as Wrapped)[STOCK];
    if (stock === undefined) continue;
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({ ...config, kernelFunc: stock });
  }
}
