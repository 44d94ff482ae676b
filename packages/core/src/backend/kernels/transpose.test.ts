import { beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../rng.js';
import { tf } from '../../tf.js';
import { nativePermuteRows } from '../native.js';
import { initBackend } from '../select.js';
import { expectWasmMatchesCpu, intInput, randomInput } from '../testing/compare.js';
import type { KernelCall, TensorInfo, WasmBackend } from '../wasm_heap.js';
import { keepsRowsWhole, makeFastTranspose } from './transpose.js';

beforeAll(async () => {
  delete process.env.MASKSUB_BACKEND;
  await initBackend({ prefer: 'wasm', log: () => {} });
});

/** A random permutation of 0..rank-2, then rank-1: the last axis stays last. */
function rowPerm(rng: Rng, rank: number): number[] {
  const lead = Array.from({ length: rank - 1 }, (_, i) => i);
  for (let i = lead.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [lead[i], lead[j]] = [lead[j], lead[i]];
  }
  return [...lead, rank - 1];
}

/** A shape of `rank` axes with about `elements` elements (each axis at least 1). */
function shapeOf(rng: Rng, rank: number, elements: number): number[] {
  const shape = Array.from({ length: rank }, () => 1 + rng.int(4));
  let size = shape.reduce((a, b) => a * b, 1);
  while (size < elements) {
    const axis = rng.int(rank);
    size = (size / shape[axis]) * (shape[axis] + 1);
    shape[axis] += 1;
  }
  return shape;
}

describe('fast Transpose on wasm', () => {
  const rng = new Rng(5);
  const cases: { shape: number[]; perm: number[] }[] = [
    // The hot shapes: the bench ViT's head split (main and sub pass) and a rank-6 window partition.
    { shape: [64, 65, 3, 64], perm: [0, 2, 1, 3] },
    { shape: [64, 3, 33, 64], perm: [0, 2, 1, 3] },
    { shape: [2, 4, 2, 4, 2, 32], perm: [0, 1, 3, 2, 4, 5] },
  ];
  for (let c = 0; c < 12; c++) {
    const rank = 2 + (c % 5);
    // Above and below the size the addon takes over at (4,096 elements).
    const elements = c % 3 === 2 ? 200 : 4096 + rng.int(20000);
    cases.push({ shape: shapeOf(rng, rank, elements), perm: rowPerm(rng, rank) });
  }
  for (const { shape, perm } of cases) {
    it(`[${shape}] by [${perm}]: forward and gradient equal cpu's bits; int32 exact`, async () => {
      const x = randomInput(rng, shape);
      const w = randomInput(rng, perm.map((a) => shape[a]));
      await expectWasmMatchesCpu(
        [x, w],
        (xt, wt) => [tf.transpose(xt, perm), tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.transpose(v, perm), wt)))(xt)],
        `transpose [${shape}] by [${perm}]`,
        0,
      );
      const n = shape.reduce((a, b) => a * b, 1);
      await expectWasmMatchesCpu([intInput(shape, Array.from({ length: n }, (_, i) => i * 3 - 7))], (xt) => tf.transpose(xt, perm), 'int32', 0);
    });
  }

  it('copies on the addon for whole-row perms of 4,096 elements and more, and leaves other perms to tfjs', async () => {
    await initBackend({ prefer: 'wasm', log: () => {} });
    if (nativePermuteRows() === null) {
      if (process.env.CI === 'true') throw new Error('the native addon is not built: CI builds it');
      console.warn('skipped: the native addon is not built here');
      return;
    }
    const calls: string[] = [];
    const counted: typeof nativePermuteRows = () => {
      const native = nativePermuteRows()!;
      return { ...native, permuteRows: (...args) => (calls.push('native'), native.permuteRows(...args)) };
    };
    const registered = tf.getKernel(tf.Transpose, 'wasm')!.kernelFunc as unknown as Record<symbol, KernelCall>;
    const stock = registered[Symbol.for('masksub.stockKernel')];
    const kernel = makeFastTranspose((args) => (calls.push('stock'), stock(args)), counted);
    const backend = tf.backend() as unknown as WasmBackend;
    const run = (x: tf.Tensor, perm: number[]): Float32Array | Int32Array => {
      const out = kernel({ inputs: { x: { dataId: x.dataId, shape: x.shape, dtype: x.dtype } }, backend, attrs: { perm } }) as TensorInfo;
      const values = backend.typedArrayFromHeap(out).slice() as Float32Array | Int32Array;
      backend.disposeData(out.dataId);
      return values;
    };
    const x = tf.randomNormal([8, 65, 3, 64]);
    const xi = tf.range(0, 8 * 65 * 3 * 64, 1, 'int32').reshape([8, 65, 3, 64]);
    expect(run(x, [0, 2, 1, 3])).toEqual(tf.transpose(x, [0, 2, 1, 3]).dataSync());
    expect(run(xi, [2, 0, 1, 3])).toEqual(tf.transpose(xi, [2, 0, 1, 3]).dataSync());
    expect(calls).toEqual(['native', 'native']);
    run(x, [0, 1, 3, 2]); // the last axis moves
    run(tf.ones([4, 8, 16]), [1, 0, 2]); // 512 elements
    run(tf.ones([8, 65, 3, 64], 'bool'), [0, 2, 1, 3]); // 1-byte elements
    expect(calls).toEqual(['native', 'native', 'stock', 'stock', 'stock']);
    tf.dispose([x, xi]);
    expect(keepsRowsWhole([1, 0, 2])).toBe(true);
    expect(keepsRowsWhole([0, 2, 1])).toBe(false);
    expect(keepsRowsWhole([0])).toBe(false);
  });
});
