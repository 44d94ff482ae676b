/**
 * Fast BatchMatMul / _FusedMatMul for the wasm backend.
 *
 * tfjs-backend-wasm 4.22 sends exactly one case to XNNPACK: a single (batch 1) product with
 * neither operand transposed (~25 GFLOP/s on one core here). Every other case — transposeA,
 * transposeB, or a real batch — runs a scalar C++ loop at 0.4-2 GFLOP/s. Backward passes are
 * made almost entirely of those cases (dW = xᵀ·dy, dx = dy·Wᵀ, attention q·kᵀ and its grads).
 *
 * The replacement keeps XNNPACK doing all multiply-adds and only rearranges memory in JS:
 *  - a transposed operand is materialised with a cache-blocked transposing copy (O(n²) work
 *    against the O(n³) product);
 *  - when `b` has no batch (a linear layer on [B, T, K] activations), the batch of `a` is folded
 *    into rows, giving one big untransposed product;
 *  - a true batch (attention) is cut into contiguous 2-D slices, each multiplied by XNNPACK.
 * A fresh tensor is allocated for every `b` slice on purpose: the wasm backend caches XNNPACK
 * operators (with packed weights) by the `b` tensor's id, so reusing one buffer would reuse
 * stale packed weights.
 */
import { tf } from '../../tf.js';
import {
  allocate,
  broadcastIndexer,
  heapF32,
  release,
  single,
  sizeOf,
  transposeInto,
  type KernelCall,
  type TensorInfo,
  type WasmBackend,
} from '../wasm_heap.js';

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

/**
 * Computes matMul(a, b, transposeA, transposeB) with broadcasting over batch dims, using only
 * untransposed 2-D products from `product`.
 */
export function matMulViaUntransposed2D(
  backend: WasmBackend,
  a: TensorInfo,
  b: TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  product: Product2D,
): TensorInfo {
  const { m, k, n, batchDimsA, batchDimsB, outBatchDims } = matMulShapes(a, b, transposeA, transposeB);
  const batchA = sizeOf(batchDimsA);
  const batchB = sizeOf(batchDimsB);
  const batch = sizeOf(outBatchDims);
  const outShape = [...outBatchDims, m, n];

  if (batchB === 1) {
    // Fold a's batch into rows: [batchA * M, K] x [K, N]. Broadcasting a against a batch-1 b
    // leaves batchA === batch, so the rows come out in output order.
    const temps: TensorInfo[] = [];
    let bReady: TensorInfo;
    if (transposeB) {
      bReady = allocate(backend, [1, k, n], 'float32');
      temps.push(bReady);
    } else {
      bReady = view(b, [1, k, n]);
    }
    let aReady: TensorInfo;
    if (transposeA) {
      aReady = allocate(backend, [1, batchA * m, k], 'float32');
      temps.push(aReady);
    } else {
      aReady = view(a, [1, batchA * m, k]);
    }
    // Views after the allocations above (the heap may have grown).
    if (transposeB) transposeInto(heapF32(backend, b), 0, n, k, heapF32(backend, bReady), 0);
    if (transposeA) {
      const src = heapF32(backend, a);
      const dst = heapF32(backend, aReady);
      for (let i = 0; i < batchA; i++) transposeInto(src, i * k * m, k, m, dst, i * m * k);
    }
    const out = product(aReady, bReady);
    release(backend, ...temps);
    return view(out, outShape);
  }

  const out = allocate(backend, outShape, 'float32');
  const aIndex = broadcastIndexer(batchDimsA, outBatchDims);
  const bIndex = broadcastIndexer(batchDimsB, outBatchDims);
  const sizeA = m * k;
  const sizeB = k * n;
  const sizeOut = m * n;
  for (let i = 0; i < batch; i++) {
    const aSlice = allocate(backend, [1, m, k], 'float32');
    const bSlice = allocate(backend, [1, k, n], 'float32');
    const aOff = aIndex(i) * sizeA;
    const bOff = bIndex(i) * sizeB;
    const aSrc = heapF32(backend, a);
    const bSrc = heapF32(backend, b);
    if (transposeA) transposeInto(aSrc, aOff, k, m, heapF32(backend, aSlice), 0);
    else heapF32(backend, aSlice).set(aSrc.subarray(aOff, aOff + sizeA));
    if (transposeB) transposeInto(bSrc, bOff, n, k, heapF32(backend, bSlice), 0);
    else heapF32(backend, bSlice).set(bSrc.subarray(bOff, bOff + sizeB));
    const r = product(aSlice, bSlice);
    heapF32(backend, out).set(heapF32(backend, r), i * sizeOut);
    release(backend, aSlice, bSlice, r);
  }
  return out;
}

interface MatMulAttrs {
  transposeA: boolean;
  transposeB: boolean;
}

/** BatchMatMul that keeps every float32 case on XNNPACK; delegates the rest to `stock`. */
export function makeFastBatchMatMul(stock: KernelCall): KernelCall {
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
      sizeOf(b.shape) === 0 ||
      isStockFastCase(a, b, transposeA, transposeB)
    ) {
      return stock({ inputs, backend, attrs });
    }
    const product: Product2D = (a3, b3) =>
      single(stock({ inputs: { a: a3, b: b3 }, backend, attrs: { transposeA: false, transposeB: false } }));
    return matMulViaUntransposed2D(backend, a, b, transposeA, transposeB, product);
  };
}

/**
 * _FusedMatMul (matmul + rank-1 bias + activation) on the same plan: the stock fused kernel runs
 * on each untransposed 2-D piece, so bias and activation are applied exactly as before.
 * PReLU with per-element weights is left to the stock kernel (its weights follow the output
 * layout, which slicing would break).
 */
export function makeFastFusedMatMul(stock: KernelCall): KernelCall {
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
      sizeOf(b.shape) === 0 ||
      isStockFastCase(a, b, transposeA, transposeB)
    ) {
      return stock({ inputs, backend, attrs });
    }
    const product: Product2D = (a3, b3) =>
      single(
        stock({
          inputs: { a: a3, b: b3, bias: inputs.bias },
          backend,
          attrs: { ...attrs, transposeA: false, transposeB: false },
        }),
      );
    return matMulViaUntransposed2D(backend, a, b, transposeA, transposeB, product);
  };
}
