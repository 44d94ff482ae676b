import { describe, expect, it } from 'vitest';
import { OptionError } from '../errors.js';
import { tf } from '../tf.js';
import { benchMatmul, formatMatmulRows } from './matmul.js';

describe('benchMatmul', () => {
  it('measures the four transpose forms and two batched forms, and restores the backend', async () => {
    await tf.setBackend('cpu');
    const rows = await benchMatmul('wasm', { size: 48, batched: [6, 9, 8, 7], warmup: 0, runs: 1 });
    expect(rows.map((r) => r.form)).toEqual(['A·B', 'A·Bᵀ', 'Aᵀ·B', 'Aᵀ·Bᵀ', 'batched A·Bᵀ', 'batched A·B']);
    expect(rows[0].shape).toEqual([1, 48, 48, 48]);
    expect(rows[5].shape).toEqual([6, 9, 8, 7]);
    for (const r of rows) {
      expect(r.gflops).toBeGreaterThan(0);
      expect(Number.isFinite(r.gflops)).toBe(true);
      expect(r.gflops).toBeCloseTo((2 * r.shape.reduce((a, b) => a * b, 1)) / (r.medianMs * 1e6), 6);
    }
    expect(tf.getBackend()).toBe('cpu');
    expect(formatMatmulRows(rows).split('\n')).toHaveLength(6);
  });

  it('stock mode measures the stock kernel and puts masksub kernels back', async () => {
    const rows = await benchMatmul('wasm', { size: 32, batched: [2, 5, 4, 3], warmup: 0, runs: 1, stock: true });
    expect(rows.every((r) => r.kernel === 'stock')).toBe(true);
    const fn = tf.getKernel('BatchMatMul', 'wasm')?.kernelFunc as unknown as Record<symbol, unknown>;
    expect(fn[Symbol.for('masksub.stockKernel')]).toBeDefined();
  });

  it('rejects bad options with OptionError', async () => {
    await expect(benchMatmul('cpu', { stock: true })).rejects.toBeInstanceOf(OptionError);
    await expect(benchMatmul('wasm', { size: 0 })).rejects.toThrow(/size/);
  });
});
