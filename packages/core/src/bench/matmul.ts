/**
 * Matmul throughput (GFLOP/s) of one backend for the shapes training actually runs:
 * the four transpose forms of a square product (forward uses A·B, backward Aᵀ·B and A·Bᵀ) and
 * two attention-like batched products (q·kᵀ and attn·v for 192 = batch x heads slices).
 *
 * `stock: true` measures tfjs' own wasm BatchMatMul (masksub's replacement taken out for the
 * duration), which gives the before/after comparison on the same machine.
 * Inputs are reused across runs, as in any matmul benchmark; note the stock untransposed wasm
 * path caches XNNPACK's packed weights per `b` tensor, so its A·B figure is a best case.
 */
import { activateBackend, type BackendName } from '../backend/select.js';
import { registerWasmKernels, restoreStockMatMul } from '../backend/wasm_kernels.js';
import { OptionError } from '../errors.js';
import { median } from '../stats.js';
import { tf } from '../tf.js';

export interface MatmulBenchOptions {
  /** Square size n of the n x n x n products (default 1024). */
  size?: number;
  /** Batched products as [batch, m, k, n] (default [192, 65, 64, 65]). */
  batched?: [number, number, number, number];
  /** Untimed runs first (default 2: the JS around XNNPACK needs a couple of runs to be JIT-compiled). */
  warmup?: number;
  /** Timed runs; the median is reported (default 5). */
  runs?: number;
  /** Measure tfjs' stock wasm matmul instead of masksub's (wasm only). */
  stock?: boolean;
}

export interface MatmulBenchRow {
  backend: string;
  /** 'A·B', 'A·Bᵀ', 'Aᵀ·B', 'Aᵀ·Bᵀ', 'batched A·Bᵀ', 'batched A·B'. */
  form: string;
  /** [batch, m, k, n] of the product. */
  shape: [number, number, number, number];
  medianMs: number;
  gflops: number;
  kernel: 'masksub' | 'stock';
  /** What the backend is running, e.g. "wasm simd, 2 threads". */
  detail: string;
}

function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw new OptionError(name, `must be a positive integer, got ${v}`);
  return v;
}

/** Times `fn` (which must force its result) `runs` times after `warmup` runs; median in ms. */
function timeMedian(fn: () => void, warmup: number, runs: number): number {
  for (let i = 0; i < warmup; i++) fn();
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    fn();
    ms.push(performance.now() - t0);
  }
  return median(ms) ?? Number.NaN;
}

export async function benchMatmul(backendName: BackendName, opts: MatmulBenchOptions = {}): Promise<MatmulBenchRow[]> {
  const size = positiveInt('size', opts.size ?? 1024);
  const warmup = Math.max(0, opts.warmup ?? 2);
  const runs = positiveInt('runs', opts.runs ?? 5);
  const [bb, bm, bk, bn] = opts.batched ?? [192, 65, 64, 65];
  for (const [i, v] of [bb, bm, bk, bn].entries()) positiveInt(`batched[${i}]`, v);
  const stock = opts.stock ?? false;
  if (stock && backendName !== 'wasm') throw new OptionError('stock', `only applies to the wasm backend, not ${backendName}`);

  const previous = tf.getBackend();
  const { detail } = await activateBackend(backendName);
  if (stock) restoreStockMatMul();
  const rows: MatmulBenchRow[] = [];
  try {
    const cases: { form: string; shape: [number, number, number, number]; aShape: number[]; bShape: number[]; ta: boolean; tb: boolean }[] = [];
    for (const [ta, tb] of [
      [false, false],
      [false, true],
      [true, false],
      [true, true],
    ] as const) {
      cases.push({ form: `${ta ? 'Aᵀ' : 'A'}·${tb ? 'Bᵀ' : 'B'}`, shape: [1, size, size, size], aShape: [size, size], bShape: [size, size], ta, tb });
    }
    cases.push({ form: 'batched A·Bᵀ', shape: [bb, bm, bk, bn], aShape: [bb, bm, bk], bShape: [bb, bn, bk], ta: false, tb: true });
    cases.push({ form: 'batched A·B', shape: [bb, bm, bk, bn], aShape: [bb, bm, bk], bShape: [bb, bk, bn], ta: false, tb: false });

    for (const c of cases) {
      const a = tf.randomNormal(c.aShape, 0, 1, 'float32', 1);
      const b = tf.randomNormal(c.bShape, 0, 1, 'float32', 2);
      // Block body: tidy must not be handed the typed array (it would walk every element).
      const once = () =>
        tf.tidy(() => {
          tf.matMul(a, b, c.ta, c.tb).dataSync();
        });
      const ms = timeMedian(once, warmup, runs);
      tf.dispose([a, b]);
      const [batch, m, k, n] = c.shape;
      const flops = 2 * batch * m * k * n;
      rows.push({ backend: backendName, form: c.form, shape: c.shape, medianMs: ms, gflops: flops / (ms * 1e6), kernel: backendName === 'wasm' && !stock ? 'masksub' : 'stock', detail });
    }
  } finally {
    if (stock) registerWasmKernels();
    if (previous && previous !== tf.getBackend()) await tf.setBackend(previous);
  }
  return rows;
}

/** One line per row, for logs and reports. */
export function formatMatmulRows(rows: MatmulBenchRow[]): string {
  return rows
    .map((r) => `${r.detail.padEnd(20)} ${r.kernel.padEnd(7)} ${r.form.padEnd(13)} [${r.shape.join('x')}]`.padEnd(50) + `${r.gflops.toFixed(2).padStart(7)} GFLOP/s  ${r.medianMs.toFixed(1)} ms`)
    .join('\n');
}
