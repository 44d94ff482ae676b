import { describe, expect, it } from 'vitest';
import { Rng } from '../rng.js';
import { tf } from '../tf.js';
import { NATIVE_ADDON_PATH, nativeGemmStatus, setNativeGemmEnabled, type NativeGemmAddon } from './native.js';
import { initBackend } from './select.js';

const status = nativeGemmStatus();

/**
 * Runs when the addon is built; skips with the reason otherwise, except under CI=true (CI has a
 * compiler, so a missing addon there means the install-time build broke; MASKSUB_NATIVE=0 is a
 * deliberate skip).
 */
function describeNative(name: string, fn: (gemm: NativeGemmAddon) => void): void {
  const gemm = status.gemm;
  if (gemm !== null) {
    describe(name, () => fn(gemm));
  } else if (process.env.CI === 'true' && !status.reason.startsWith('disabled')) {
    describe(name, () => {
      it('has the native addon built', () => {
        throw new Error(`CI=true but the native gemm addon is not available: ${status.reason}`);
      });
    });
  } else {
    console.warn(`[skip] ${name}: native gemm addon not available (${status.reason})`);
    describe.skip(name, () => fn(null as unknown as NativeGemmAddon));
  }
}

function randomArray(rng: Rng, length: number, shared = false): Float32Array {
  // Shared: a view 3 floats into a SharedArrayBuffer, like a tensor on the threaded wasm heap.
  const x = shared ? new Float32Array(new SharedArrayBuffer((length + 3) * 4), 12, length) : new Float32Array(length);
  for (let i = 0; i < length; i++) x[i] = rng.next() * 2 - 1;
  return x;
}

interface Case {
  batch: number;
  m: number;
  k: number;
  n: number;
  transA: boolean;
  transB: boolean;
  /** Broadcast an operand over the batch (batch stride 0). */
  shareA: boolean;
  shareB: boolean;
}

/** Plain triple loop in float64: the reference. */
function referenceGemm(a: Float32Array, b: Float32Array, c: Case, bias: Float32Array | null, relu: boolean): Float64Array {
  const { batch, m, k, n, transA, transB } = c;
  const sa = c.shareA ? 0 : m * k;
  const sb = c.shareB ? 0 : k * n;
  const out = new Float64Array(batch * m * n);
  for (let s = 0; s < batch; s++) {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let acc = 0;
        for (let p = 0; p < k; p++) {
          const av = transA ? a[s * sa + p * m + i] : a[s * sa + i * k + p];
          const bv = transB ? b[s * sb + j * k + p] : b[s * sb + p * n + j];
          acc += av * bv;
        }
        if (bias) acc += bias[j];
        out[(s * m + i) * n + j] = relu && acc < 0 ? 0 : acc;
      }
    }
  }
  return out;
}

function runCase(gemm: NativeGemmAddon, rng: Rng, c: Case, opts: { shared?: boolean; bias?: boolean; relu?: boolean } = {}): void {
  const a = randomArray(rng, (c.shareA ? 1 : c.batch) * c.m * c.k, opts.shared);
  const b = randomArray(rng, (c.shareB ? 1 : c.batch) * c.k * c.n, opts.shared);
  const bias = opts.bias ? randomArray(rng, c.n, opts.shared) : null;
  // Garbage in `out` first: the kernel must overwrite, not accumulate into it.
  const out = randomArray(rng, c.batch * c.m * c.n, opts.shared).fill(1e3);
  gemm.sgemm(a, b, out, c.batch, c.m, c.k, c.n, c.transA, c.transB, c.shareA ? 0 : c.m * c.k, c.shareB ? 0 : c.k * c.n, bias, opts.relu ?? false);
  const ref = referenceGemm(a, b, c, bias, opts.relu ?? false);
  const label = JSON.stringify({ ...c, ...opts });
  let worst = 0;
  for (let i = 0; i < ref.length; i++) {
    // float32 accumulation over k terms of size <= 1: error grows ~ sqrt(k) * eps.
    const err = Math.abs(out[i] - ref[i]) / (1 + Math.abs(ref[i]));
    worst = Math.max(worst, err);
  }
  expect(worst, label).toBeLessThan(2e-5 * Math.sqrt(c.k + 1) + 1e-6);
}

const FORMS: [boolean, boolean][] = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
];

describeNative('native sgemm addon', (gemm) => {
  it('matches a float64 reference on random odd shapes 1..70, all transpose forms, batched and broadcast', () => {
    const rng = new Rng(42);
    const pick = (lo: number, hi: number) => lo + Math.floor(rng.next() * (hi - lo + 1));
    for (let t = 0; t < 120; t++) {
      const [transA, transB] = FORMS[t % 4];
      const batch = pick(1, 4);
      runCase(gemm, rng, {
        batch,
        m: pick(1, 70),
        k: pick(1, 70),
        n: pick(1, 70),
        transA,
        transB,
        shareA: batch > 1 && t % 5 === 1,
        shareB: batch > 1 && t % 7 === 2,
      }, { shared: t % 3 === 0 });
    }
  });

  it('handles blocking edges: k across the 256 panel, m across 144, n across 4080, and threaded sizes', () => {
    const rng = new Rng(7);
    for (const [transA, transB] of FORMS) {
      // k > KC exercises accumulation across packed panels; sizes are not multiples of 6 / 16.
      runCase(gemm, rng, { batch: 1, m: 13, k: 521, n: 17, transA, transB, shareA: false, shareB: false });
      // An output over 256 Ki floats (kLargeOutputFloats) takes k in ceil(k / 512) equal blocks
      // (304 and 297 rows of k here) instead of 256s; threaded over rows.
      runCase(gemm, rng, { batch: 1, m: 517, k: 601, n: 523, transA, transB, shareA: false, shareB: false });
      // m > MC (two row blocks) and large enough (> 2 MFLOP) to split rows over threads.
      runCase(gemm, rng, { batch: 1, m: 301, k: 67, n: 53, transA, transB, shareA: false, shareB: false });
      // n > NC (two column panels), split over columns when threaded.
      runCase(gemm, rng, { batch: 1, m: 3, k: 9, n: 4101, transA, transB, shareA: false, shareB: false });
      // A threaded batch (split over slices), one operand broadcast.
      runCase(gemm, rng, { batch: 5, m: 65, k: 64, n: 65, transA, transB, shareA: false, shareB: true }, { shared: true });
      // k = 0: the product is all zeros.
      runCase(gemm, rng, { batch: 2, m: 4, k: 0, n: 5, transA, transB, shareA: false, shareB: false });
    }
  });

  it('adds a row bias and applies relu after the product', () => {
    const rng = new Rng(3);
    for (const [transA, transB] of FORMS) {
      runCase(gemm, rng, { batch: 2, m: 19, k: 33, n: 23, transA, transB, shareA: false, shareB: true }, { bias: true, relu: true });
      runCase(gemm, rng, { batch: 1, m: 200, k: 40, n: 300, transA, transB, shareA: false, shareB: false }, { bias: true });
    }
  });

  it('refuses arrays too short for the shape instead of reading past them', () => {
    const a = new Float32Array(6);
    const b = new Float32Array(6);
    const out = new Float32Array(4);
    expect(() => gemm.sgemm(a, b, out, 1, 2, 3, 2, false, false, 6, 6)).not.toThrow();
    expect(() => gemm.sgemm(a, b, out, 2, 2, 3, 2, false, false, 6, 6)).toThrow(/a is too short/);
    expect(() => gemm.sgemm(a, b, out, 1, 2, 4, 2, false, false, 0, 0)).toThrow(/too short/);
    expect(() => gemm.sgemm(a, b, new Float32Array(3), 1, 2, 3, 2, false, false, 0, 0)).toThrow(/out is too short/);
    expect(() => gemm.sgemm(a, b, out, 1, 2, 3, 2, false, false, 0, 0, new Float32Array(5))).toThrow(/bias/);
  });

  it('serves the wasm backend: matMul never reaches the stock kernel, the detail says native gemm', async () => {
    delete process.env.MASKSUB_BACKEND;
    const info = await initBackend({ prefer: 'wasm', log: () => {} });
    expect(info.detail).toContain('native gemm');
    setNativeGemmEnabled(true);
    const { restoreStockMatMul, registerWasmKernels } = await import('./wasm_kernels.js');
    restoreStockMatMul();
    const stock = tf.getKernel('BatchMatMul', 'wasm')!;
    let stockCalls = 0;
    tf.unregisterKernel('BatchMatMul', 'wasm');
    tf.registerKernel({ ...stock, kernelFunc: (args) => (stockCalls++, stock.kernelFunc(args)) });
    registerWasmKernels();
    try {
      const a = tf.tensor3d([1, 2, 3, 4, 5, 6], [1, 2, 3]);
      const b = tf.tensor3d([1, 0, 0, 1, 1, 1], [1, 3, 2]);
      const out = tf.matMul(a, b);
      expect(Array.from(out.dataSync())).toEqual([4, 5, 10, 11]);
      expect(stockCalls).toBe(0);
      tf.dispose([a, b, out]);
    } finally {
      restoreStockMatMul();
      tf.unregisterKernel('BatchMatMul', 'wasm');
      tf.registerKernel(stock);
      registerWasmKernels();
    }
  });
});

describe('native gemm loader', () => {
  it('reports why when the addon is not in use, and points at the built file', () => {
    expect(NATIVE_ADDON_PATH).toMatch(/native[\\/]build[\\/]Release[\\/]masksub_native\.node$/);
    expect(status.reason.length).toBeGreaterThan(0);
    if (status.gemm === null) expect(status.reason).toMatch(/not built|failed to load|disabled/);
  });
});
