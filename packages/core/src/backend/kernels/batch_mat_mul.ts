/**
 * Fast BatchMatMul / _FusedMatMul for the wasm backend.
 *
 * tfjs-backend-wasm 4.22 sends exactly one case to XNNPACK: a single (batch 1) product with
 * neither operand transposed (~25 GFLOP/s on one core here). Every other case — transposeA,
 * transposeB, or a real batch — runs a scalar C++ loop at 0.4-2 GFLOP/s. Backward passes are
 * made almost entirely of those cases (dW = xᵀ·dy, dx = dy·Wᵀ, attention q·kᵀ and its grads).
 *
 * The replacement keeps XNNPACK doing all multiply-adds and only rearranges memory:
 *  - a transposed operand is materialised once, for the whole batch, by the native wasm
 *    Transpose (O(n²) work against the O(n³) product; 3x faster than a JS tiled copy);
 *  - when `b` has no batch (a linear layer on [B, T, K] activations), the batch of `a` is folded
 *    into rows, giving one big untransposed product;
 *  - a true batch (attention) is cut into 2-D slices that are zero-copy views of the operands'
 *    heap memory, each multiplied by XNNPACK.
 * A fresh view (new tensor id) is registered for every `b` slice on purpose: the wasm backend
 * caches XNNPACK operators (with packed weights) by the `b` tensor's id, so reusing one id would
 * reuse stale packed weights. (Tried and dropped: one depthwise convolution for the whole
 * attention batch — no faster than the per-slice GEMMs once those stopped copying.)
 *
 * When masksub's native GEMM addon is built (backend/native.ts), float32 products skip all of
 * the above: the addon reads the operands on the wasm heap in place (transposes are folded into
 * its packing) and writes the result into a fresh heap tensor, in one call for a whole batch —
 * 3-4x XNNPACK's rate here, and no per-slice set-up for the attention batch.
 */
import { tf } from '../../tf.js';
import {
  allocate,
  broadcastIndexer,
  heapF32,
  release,
  single,
  heapViewTensor,
  releaseView,
  sizeOf,
  type KernelCall,
  type TensorInfo,
  type WasmBackend,
} from '../wasm_heap.js';
import { nativeGemm, type NativeGemmAddon } from '../native.js';

/** Multiplies untransposed [1, M, K] x [1, K, N] -> [1, M, N] (an XNNPACK-served call). */
type Product2D = (a: TensorInfo, b: TensorInfo) => TensorInfo;

interface MatMulShapes {
  m: number;
  k: number;
  n: number;
  batchDimsA: number[];
  batchDimsB: number[];
  outBatchDims: number[];
}

function matMulShapes(a: TensorInfo, b: TensorInfo, transposeA: boolean, transposeB: boolean): MatMulShapes {
  const ra = a.shape.length;
  const rb = b.shape.length;
  const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
  const kA = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
  const kB = transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
  const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
  if (kA !== kB) {
    throw new Error(
      `matMul: inner dimensions differ (${kA} vs ${kB}) for shapes [${a.shape}] and [${b.shape}] ` +
        `with transposeA=${transposeA}, transposeB=${transposeB}`,
    );
  }
  const batchDimsA = a.shape.slice(0, -2);
  const batchDimsB = b.shape.slice(0, -2);
  const outBatchDims = tf.broadcast_util.assertAndGetBroadcastShape(batchDimsA, batchDimsB);
  return { m, k: kA, n, batchDimsA, batchDimsB, outBatchDims };
}

/** The same data under another shape (what the wasm Reshape kernel does, without a refcount). */
function view(info: TensorInfo, shape: number[]): TensorInfo {
  return { dataId: info.dataId, shape, dtype: info.dtype };
}

/** True when the stock kernel already takes its fast path. */
function isStockFastCase(a: TensorInfo, b: TensorInfo, transposeA: boolean, transposeB: boolean): boolean {
  return !transposeA && !transposeB && sizeOf(a.shape.slice(0, -2)) === 1 && sizeOf(b.shape.slice(0, -2)) === 1;
}

/** Materialises a tensor with its last two axes swapped (tfjs' native wasm Transpose). */
export type SwapLastAxes = (x: TensorInfo) => TensorInfo;

/** A SwapLastAxes over the stock wasm Transpose kernel (one native pass, any batch). */
export function swapLastAxesWith(stockTranspose: KernelCall, backend: WasmBackend): SwapLastAxes {
  return (x) => {
    const r = x.shape.length;
    const perm = [...Array.from({ length: r - 2 }, (_, i) => i), r - 1, r - 2];
    return single(stockTranspose({ inputs: { x }, backend, attrs: { perm } }));
  };
}

/**
 * Computes matMul(a, b, transposeA, transposeB) with broadcasting over batch dims, using only
 * untransposed 2-D products from `product`. Transposed operands are materialised once for the
 * whole batch by the native transpose (3x faster than a JS copy); batch slices are zero-copy
 * views into the operands' heap memory, so a true batch (attention) costs one XNNPACK call per
 * slice and no copies in.
 */
export function matMulViaUntransposed2D(
  backend: WasmBackend,
  a: TensorInfo,
  b: TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  product: Product2D,
  swapLastAxes: SwapLastAxes,
  /** Whether C may be computed as (Bᵀ·A)ᵀ (not with a bias or activation applied by `product`). */
  swappable = false,
): TensorInfo {
  const { m, k, n, batchDimsA, batchDimsB, outBatchDims } = matMulShapes(a, b, transposeA, transposeB);
  const batchA = sizeOf(batchDimsA);
  const batchB = sizeOf(batchDimsB);
  const batch = sizeOf(outBatchDims);
  const outShape = [...outBatchDims, m, n];
  if (swappable && batch === 1 && transposeA && !transposeB && n > m) {
    // A weight gradient xᵀ·dy with the wider side in dy (MLP fc1: 192 x 4160 x 768): computing
    // (dyᵀ·x)ᵀ transposes the wide operand instead but gives XNNPACK more rows and a narrower
    // packed weight; ~12% faster, and the [N, M] result is small to swap back.
    const bT = swapLastAxes(view(b, [k, n]));
    const outT = product(view(bT, [1, n, k]), view(a, [1, k, m]));
    const out = swapLastAxes(view(outT, [n, m]));
    release(backend, bT, outT);
    return view(out, outShape);
  }
  const temps: TensorInfo[] = [];
  const aReady = transposeA ? swapLastAxes(a) : a;
  if (transposeA) temps.push(aReady);
  const bReady = transposeB ? swapLastAxes(b) : b;
  if (transposeB) temps.push(bReady);

  if (batchB === 1) {
    // Fold a's batch into rows: [batchA * M, K] x [K, N]. Broadcasting a against a batch-1 b
    // leaves batchA === batch, so the rows come out in output order.
    const out = product(view(aReady, [1, batchA * m, k]), view(bReady, [1, k, n]));
    release(backend, ...temps);
    return view(out, outShape);
  }

  const out = allocate(backend, outShape, 'float32');
  const aIndex = broadcastIndexer(batchDimsA, outBatchDims);
  const bIndex = broadcastIndexer(batchDimsB, outBatchDims);
  const sizeOut = m * n;
  for (let i = 0; i < batch; i++) {
    // A fresh b view (new tensor id) per slice: XNNPACK operators are cached by b's id.
    const aSlice = heapViewTensor(backend, aReady, aIndex(i) * m * k, [1, m, k]);
    const bSlice = heapViewTensor(backend, bReady, bIndex(i) * k * n, [1, k, n]);
    const r = product(aSlice, bSlice);
    heapF32(backend, out).set(heapF32(backend, r), i * sizeOut);
    release(backend, r);
    releaseView(backend, aSlice, bSlice);
  }
  release(backend, ...temps);
  return out;
}

interface MatMulAttrs {
  transposeA: boolean;
  transposeB: boolean;
}

/** What the native GEMM applies after the product (the rest of _FusedMatMul stays on wasm). */
interface NativeEpilogue {
  bias: TensorInfo | null;
  relu: boolean;
}

/**
 * Computes matMul(a, b) (+ bias, relu) with the native GEMM straight on the wasm heap. Batch
 * broadcasting maps to a batch stride of 0; the rare two-way broadcast ([2,1] x [1,3]) runs one
 * call per output slice. A batch-1 `b` under an untransposed `a` folds a's batch into rows (one
 * large product splits better across threads than many small ones).
 */
export function nativeMatMul(
  backend: WasmBackend,
  gemm: NativeGemmAddon,
  a: TensorInfo,
  b: TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  epilogue: NativeEpilogue = { bias: null, relu: false },
): TensorInfo {
  const { m, k, n, batchDimsA, batchDimsB, outBatchDims } = matMulShapes(a, b, transposeA, transposeB);
  const batchA = sizeOf(batchDimsA);
  const batchB = sizeOf(batchDimsB);
  const batch = sizeOf(outBatchDims);
  const out = allocate(backend, [...outBatchDims, m, n], 'float32');
  // Views only after the allocation: a heap growth detaches earlier ones.
  const av = heapF32(backend, a);
  const bv = heapF32(backend, b);
  const ov = heapF32(backend, out);
  const bias = epilogue.bias === null ? null : heapF32(backend, epilogue.bias);
  if (batchB === 1 && !transposeA) {
    gemm.sgemm(av, bv, ov, 1, batchA * m, k, n, false, transposeB, 0, 0, bias, epilogue.relu);
    return out;
  }
  // An operand whose batch size equals the output's has the identity batch mapping.
  const linearA = batchA === batch || batchA === 1;
  const linearB = batchB === batch || batchB === 1;
  if (linearA && linearB) {
    const strideA = batchA === 1 ? 0 : m * k;
    const strideB = batchB === 1 ? 0 : k * n;
    gemm.sgemm(av, bv, ov, batch, m, k, n, transposeA, transposeB, strideA, strideB, bias, epilogue.relu);
    return out;
  }
  const aIndex = broadcastIndexer(batchDimsA, outBatchDims);
  const bIndex = broadcastIndexer(batchDimsB, outBatchDims);
  for (let i = 0; i < batch; i++) {
    const aSlice = av.subarray(aIndex(i) * m * k, (aIndex(i) + 1) * m * k);
    const bSlice = bv.subarray(bIndex(i) * k * n, (bIndex(i) + 1) * k * n);
    const oSlice = ov.subarray(i * m * n, (i + 1) * m * n);
    gemm.sgemm(aSlice, bSlice, oSlice, 1, m, k, n, transposeA, transposeB, 0, 0, bias, epilogue.relu);
  }
  return out;
}

/** A _FusedMatMul bias the native epilogue can add: float32, one value per output column. */
function isRowBias(bias: TensorInfo, n: number): boolean {
  const shape = bias.shape;
  return (
    bias.dtype === 'float32' &&
    sizeOf(shape) === n &&
    shape.length >= 1 &&
    shape[shape.length - 1] === n
  );
}

/** BatchMatMul that keeps every float32 case on XNNPACK; delegates the rest to `stock`. */
export function makeFastBatchMatMul(stock: KernelCall, stockTranspose: KernelCall): KernelCall {
  return ({ inputs, backend, attrs }) => {
    const a = inputs.a as TensorInfo;
    const b = inputs.b as TensorInfo;
    const { transposeA, transposeB } = (attrs ?? {}) as unknown as MatMulAttrs;
    if (
      a.dtype !== 'float32' ||
      b.dtype !== 'float32' ||
      a.shape.length < 2 ||
      b.shape.length < 2 ||
      sizeOf(a.shape) === 0 ||
      sizeOf(b.shape) === 0
    ) {
      return stock({ inputs, backend, attrs });
    }
    const gemm = nativeGemm();
    if (gemm !== null) return nativeMatMul(backend, gemm, a, b, transposeA, transposeB);
    if (isStockFastCase(a, b, transposeA, transposeB)) return stock({ inputs, backend, attrs });
    const product: Product2D = (a3, b3) =>
      single(stock({ inputs: { a: a3, b: b3 }, backend, attrs: { transposeA: false, transposeB: false } }));
    return matMulViaUntransposed2D(backend, a, b, transposeA, transposeB, product, swapLastAxesWith(stockTranspose, backend), true);
  };
}

/**
 * _FusedMatMul (matmul + rank-1 bias + activation) on the same plan: the stock fused kernel runs
 * on each untransposed 2-D piece, so bias and activation are applied exactly as before.
 * PReLU with per-element weights is left to the stock kernel (its weights follow the output
 * layout, which slicing would break).
 */
export function makeFastFusedMatMul(stock: KernelCall, stockTranspose: KernelCall): KernelCall {
  return ({ inputs, backend, attrs }) => {
    const a = inputs.a as TensorInfo;
    const b = inputs.b as TensorInfo;
    const { transposeA, transposeB } = (attrs ?? {}) as unknown as MatMulAttrs;
    if (
      a.dtype !== 'float32' ||
      b.dtype !== 'float32' ||
      a.shape.length !== 3 ||
      b.shape.length !== 3 ||
      inputs.preluActivationWeights != null ||
      sizeOf(a.shape) === 0 ||
      sizeOf(b.shape) === 0
    ) {
      return stock({ inputs, backend, attrs });
    }
    const gemm = nativeGemm();
    if (gemm !== null) {
      // Linear and relu are applied in the native epilogue; other activations (and biases that
      // are not one value per column) stay on the wasm path below.
      const activation = (attrs as { activation?: string } | undefined)?.activation ?? 'linear';
      const bias = (inputs.bias as TensorInfo | undefined) ?? null;
      const n = transposeB ? b.shape[1] : b.shape[2];
      if ((activation === 'linear' || activation === 'relu') && (bias === null || isRowBias(bias, n))) {
        return nativeMatMul(backend, gemm, a, b, transposeA, transposeB, { bias, relu: activation === 'relu' });
      }
    }
    if (isStockFastCase(a, b, transposeA, transposeB)) return stock({ inputs, backend, attrs });
    const product: Product2D = (a3, b3) =>
      single(
        stock({
          inputs: { a: a3, b: b3, bias: inputs.bias },
          backend,
          attrs: { ...attrs, transposeA: false, transposeB: false },
        }),
      );
    return matMulViaUntransposed2D(backend, a, b, transposeA, transposeB, product, swapLastAxesWith(stockTranspose, backend));
  };
}
