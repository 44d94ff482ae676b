/**
 * masksub's optional native GEMM (packages/core/native, an AVX2/FMA N-API addon built by
 * `pnpm install` when a compiler is present). The wasm backend's BatchMatMul / _FusedMatMul
 * hand float32 products to it, operating directly on the wasm heap; without it they keep using
 * XNNPACK. Nothing here throws: an absent or unloadable addon is reported as `null` with a reason.
 *
 * MASKSUB_NATIVE=0 disables it (read when first loaded; `setNativeGemmEnabled` for tests/benches).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export const NATIVE_ENV = 'MASKSUB_NATIVE';

/** The arrays of an Adam-family update, in the addon's order (outputs may alias inputs). */
type MomentArrays = [p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, pOut: Float32Array, mOut: Float32Array, vOut: Float32Array];
/** Its hyper-parameters, after the arrays. */
type AdamHypers = [beta1: number, beta2: number, eps: number, lr: number, weightDecay: number, biasCorrection1: number, biasCorrection2: number];

/** The addon's exports (see native/src/binding.cc). */
export interface NativeGemmAddon {
  /**
   * out[i] = op(a[i]) @ op(b[i]) for i < batch, row-major, with op = transpose when the flag is
   * set; slice i of a starts at i * aBatchStride floats (0 broadcasts), out is contiguous.
   * `bias` (n floats) is added to every output row, then max(0, x) when `relu`.
   * The arrays may be views on a SharedArrayBuffer (the threaded wasm heap).
   */
  sgemm(
    a: Float32Array,
    b: Float32Array,
    out: Float32Array,
    batch: number,
    m: number,
    k: number,
    n: number,
    transA: boolean,
    transB: boolean,
    aBatchStride: number,
    bBatchStride: number,
    bias?: Float32Array | null,
    relu?: boolean,
  ): void;
  /** Threads the addon uses (itself plus a persistent worker pool, sized on first use). */
  setThreads(threads: number): void;
  /** Default thread count chosen at load (hardware threads, at most 8). */
  readonly threads: number;
  // Fused training kernels (native/src/fused_avx2.cc); absent from addons built before them.
  /** y = x Phi(x) (exact GELU). */
  geluForward?(x: Float32Array, y: Float32Array): void;
  /** dx = dy (Phi(x) + x phi(x)). */
  geluBackward?(x: Float32Array, dy: Float32Array, dx: Float32Array): void;
  /** y = x sigmoid(1.702 x) (CLIP's quick GELU). */
  quickGeluForward?(x: Float32Array, y: Float32Array): void;
  /** dx = dy (s + 1.702 x s (1 - s)), s = sigmoid(1.702 x). */
  quickGeluBackward?(x: Float32Array, dy: Float32Array, dx: Float32Array): void;
  /** LayerNorm over rows of gamma.length; writes y and each row's mean and 1/sqrt(var + eps). */
  layerNormForward?(x: Float32Array, gamma: Float32Array, beta: Float32Array, eps: number, y: Float32Array, mean: Float32Array, rstd: Float32Array): void;
  layerNormBackward?(
    dy: Float32Array,
    x: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    gamma: Float32Array,
    dx: Float32Array,
    dgamma: Float32Array,
    dbeta: Float32Array,
  ): void;
  /** y = softmax(scale x) over rows of `cols`. */
  softmaxForward?(x: Float32Array, scale: number, cols: number, y: Float32Array): void;
  /** dx = scale y (dy - sum(dy y)) over rows of `cols`. */
  softmaxBackward?(y: Float32Array, dy: Float32Array, scale: number, cols: number, dx: Float32Array): void;
  /** out[c] = sum over rows of x[r * cols + c]. */
  columnSums?(x: Float32Array, cols: number, out: Float32Array): void;
  /**
   * y = x * keep / (1 - rate), keep drawn per element from a counter-based hash of (seed, index):
   * the same call on dy is the backward pass. seed is a uint32, rate in [0, 1).
   */
  dropout?(x: Float32Array, y: Float32Array, seed: number, rate: number): void;
  /** One AdamW step, float64 math as kernels/adamw.ts (identical bits), threaded. */
  adamwUpdate?(...args: [...MomentArrays, ...AdamHypers]): void;
  /** One LAMB step, float64 math and norm order as kernels/lamb.ts (identical bits), threaded; absent from addons built before it. */
  lambUpdate?(...args: [...MomentArrays, ...AdamHypers, clip: number, adapt: boolean, trustClip: boolean]): void;
  /** sum[i] += addend[i] (native/src/fused_avx2.cc); absent from addons built before it. */
  addInto?(sum: Float32Array, addend: Float32Array): void;
  /**
   * out[ids[s], :] += x[s, :] over rows of x.length / ids.length floats, s in order (ids outside
   * [0, numSegments) skipped): gather's gradient, the bits of a sequential loop; absent from addons
   * built before it.
   */
  segmentSum?(x: Float32Array, ids: Int32Array, numSegments: number, out: Float32Array): void;
  /**
   * y = x transposed by perm (shape and perm of one rank 2-8, perm keeping the last axis last):
   * whole rows of the last axis copied, on the pool's threads. 4-byte elements (int32 as their
   * bits in a Float32Array view).
   */
  permuteRows?(x: Float32Array, y: Float32Array, shape: Int32Array, perm: Int32Array): void;
  // NHWC convolution (native/src/conv_avx2.cc); absent from addons built before it.
  /**
   * dims: [batch, inH, inW, inC, outH, outW, outC, kH, kW, strideH, strideW, dilationH,
   * dilationW, padTop, padLeft]; filters HWIO. Each array's length must match dims.
   */
  conv2dForward?(x: Float32Array, w: Float32Array, y: Float32Array, dims: number[]): void;
  conv2dBackpropInput?(dy: Float32Array, w: Float32Array, dx: Float32Array, dims: number[]): void;
  conv2dBackpropFilter?(x: Float32Array, dy: Float32Array, dw: Float32Array, dims: number[]): void;
  // Training-mode batch norm (native/src/batch_norm_avx2.cc), channels last.
  /** Per-channel mean and biased variance over the rows of mean.length channels. */
  batchNormStats?(x: Float32Array, mean: Float32Array, variance: Float32Array): void;
  /**
   * y = (x - mean) / sqrt(variance + eps) * gamma + beta per channel; with the epilogue
   * (batchNormEpilogue builds) `residual` is added after it and max(0, .) taken when `relu`.
   */
  batchNormApply?(
    x: Float32Array,
    gamma: Float32Array,
    beta: Float32Array,
    mean: Float32Array,
    variance: Float32Array,
    eps: number,
    y: Float32Array,
    residual?: Float32Array | null,
    relu?: boolean,
  ): void;
  /**
   * The closed-form backward; `reluOut` (the forward's y when it fused a ReLU) masks dy by
   * y > 0, `dresidual` receives the masked dy (the residual's gradient).
   */
  batchNormTrainBackward?(
    dy: Float32Array,
    x: Float32Array,
    mean: Float32Array,
    variance: Float32Array,
    gamma: Float32Array,
    eps: number,
    dx: Float32Array,
    dgamma: Float32Array,
    dbeta: Float32Array,
    reluOut?: Float32Array | null,
    dresidual?: Float32Array | null,
  ): void;
  /** True when batchNormApply / batchNormTrainBackward take the residual + ReLU epilogue. */
  readonly batchNormEpilogue?: boolean;
  /** Test hook: patch-matrix floats per chunk of images; returns the previous value. */
  setConvChunkFloats?(floats: number): number;
}

/** The addon's convolution kernels, all present. */
export type NativeConvAddon = NativeGemmAddon & Required<Pick<NativeGemmAddon, 'conv2dForward' | 'conv2dBackpropInput' | 'conv2dBackpropFilter'>>;

/** The addon's batch-norm kernels, all present. */
export type NativeBatchNormAddon = NativeGemmAddon & Required<Pick<NativeGemmAddon, 'batchNormStats' | 'batchNormApply' | 'batchNormTrainBackward'>>;

/** The addon's fused kernels, all present (a build that has them has every one). */
export type NativeFusedAddon = NativeGemmAddon & Required<Pick<NativeGemmAddon,
  'geluForward' | 'geluBackward' | 'quickGeluForward' | 'quickGeluBackward' | 'layerNormForward' | 'layerNormBackward' | 'softmaxForward' | 'softmaxBackward' | 'columnSums' | 'dropout' | 'adamwUpdate'>>;

export interface NativeGemmStatus {
  gemm: NativeGemmAddon | null;
  /** Why it is or is not in use, e.g. "loaded from …", "MASKSUB_NATIVE=0", "not built (…)". */
  reason: string;
}

/** The built addon, at the same relative place from src/backend and dist/backend. */
export const NATIVE_ADDON_PATH = fileURLToPath(new URL('../../native/build/Release/masksub_native.node', import.meta.url));

let status: NativeGemmStatus | null = null;
let enabled = true;
let fusedAddon: NativeFusedAddon | null | undefined;

function load(): NativeGemmStatus {
  if (process.env[NATIVE_ENV]?.trim() === '0') return { gemm: null, reason: `disabled by ${NATIVE_ENV}=0` };
  if (!existsSync(NATIVE_ADDON_PATH)) {
    return { gemm: null, reason: `not built (${NATIVE_ADDON_PATH} is absent; run node packages/core/native/build.mjs)` };
  }
  try {
    const addon = createRequire(import.meta.url)(NATIVE_ADDON_PATH) as NativeGemmAddon;
    if (typeof addon.sgemm !== 'function') return { gemm: null, reason: `${NATIVE_ADDON_PATH} has no sgemm export` };
    return { gemm: addon, reason: `loaded from ${NATIVE_ADDON_PATH}` };
  } catch (e) {
    // E.g. a CPU without AVX2/FMA (the addon refuses to load) or a Node ABI mismatch.
    const msg = e instanceof Error ? e.message.split('\n')[0] : String(e);
    return { gemm: null, reason: `failed to load ${NATIVE_ADDON_PATH}: ${msg}` };
  }
}

/** Loads the addon once per process; the status says why it is absent. */
export function nativeGemmStatus(): NativeGemmStatus {
  status ??= load();
  return status;
}

/** The addon when it is loaded and enabled, else null (callers then use XNNPACK). */
export function nativeGemm(): NativeGemmAddon | null {
  return enabled ? nativeGemmStatus().gemm : null;
}

/** The addon when it is loaded, enabled and has the fused kernels; else null. */
export function nativeFused(): NativeFusedAddon | null {
  if (!enabled) return null;
  // Asked per op in the training step: decided once per process (the addon does not change).
  if (fusedAddon === undefined) fusedAddon = hasFusedKernels(nativeGemmStatus().gemm);
  return fusedAddon;
}

function hasFusedKernels(gemm: NativeGemmAddon | null): NativeFusedAddon | null {
  if (gemm === null) return null;
  const fused = [gemm.geluForward, gemm.geluBackward, gemm.quickGeluForward, gemm.quickGeluBackward, gemm.layerNormForward, gemm.layerNormBackward, gemm.softmaxForward, gemm.softmaxBackward, gemm.columnSums, gemm.dropout, gemm.adamwUpdate];
  return fused.every((f) => typeof f === 'function') ? (gemm as NativeFusedAddon) : null;
}

/** The addon with the optional kernels K (absent from addons built before them) present. */
type NativeWith<K extends keyof NativeGemmAddon> = NativeGemmAddon & Required<Pick<NativeGemmAddon, K>>;

/** The addon when it is loaded, enabled and has every kernel of `names`; else null. */
function nativeWith<K extends keyof NativeGemmAddon>(...names: K[]): NativeWith<K> | null {
  if (!enabled) return null;
  const gemm = nativeGemmStatus().gemm;
  return gemm !== null && names.every((name) => typeof gemm[name] === 'function') ? (gemm as NativeWith<K>) : null;
}

/** The addon when it is loaded, enabled and has `lambUpdate`; else null. */
export function nativeLamb(): NativeWith<'lambUpdate'> | null {
  return nativeWith('lambUpdate');
}

/** The addon when it is loaded, enabled and has `addInto`; else null. */
export function nativeAddInto(): NativeWith<'addInto'> | null {
  return nativeWith('addInto');
}

/** The addon when it is loaded, enabled and has `segmentSum`; else null. */
export function nativeSegmentSum(): NativeWith<'segmentSum'> | null {
  return nativeWith('segmentSum');
}

/** The addon when it is loaded, enabled and has `permuteRows`; else null. */
export function nativePermuteRows(): NativeWith<'permuteRows'> | null {
  return nativeWith('permuteRows');
}

/** The addon when it is loaded, enabled and has the convolution kernels; else null. */
export function nativeConv(): NativeConvAddon | null {
  return nativeWith('conv2dForward', 'conv2dBackpropInput', 'conv2dBackpropFilter');
}

/** The addon when it is loaded, enabled and has the batch-norm kernels; else null. */
export function nativeBatchNorm(): NativeBatchNormAddon | null {
  return nativeWith('batchNormStats', 'batchNormApply', 'batchNormTrainBackward');
}

/** Turns routing to the native GEMM on or off at run time (tests and benches compare both). */
export function setNativeGemmEnabled(on: boolean): void {
  enabled = on;
}
