/**
 * The in-place gradient sum (add_into.ts): the same bits as tf.add on cpu, native and JS paths,
 * in the owner's block only when nothing else holds it, never under a recording tape; and the
 * gradient walk, the MaskSub sum onto the main pass's gradients and micro-batch accumulation
 * using it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../rng.js';
import { tf } from '../../tf.js';
import { addGradients } from '../../optim/accumulate.js';
import { gradientsOnto } from '../../lean-gradients.js';
import { nativeAddInto, setNativeGemmEnabled } from '../native.js';
import { initBackend } from '../select.js';
import { peakAllocationDuring } from '../wasm_heap.js';
import { randomInput, runOn } from '../testing/compare.js';
import { ADD_INTO, addOwned } from './add_into.js';

beforeAll(async () => {
  delete process.env.MASKSUB_BACKEND;
  await initBackend({ prefer: 'wasm', log: () => {} });
});
afterAll(() => setNativeGemmEnabled(true));

// Below and above the native kernel's per-thread minimum (2^15 elements), with 8-lane tails.
const SHAPES = [[1], [7], [33, 5], [3, 4, 65], [100_003], [0, 3]];

/** addOwned(a, b) on wasm, `a` disposed as its contract says, against tf.add on cpu. */
async function expectSameBitsAsCpu(native: boolean): Promise<void> {
  setNativeGemmEnabled(native);
  try {
    expect(nativeAddInto() !== null).toBe(native);
    const rng = new Rng(native ? 1 : 2);
    for (const shape of SHAPES) {
      const inputs = [randomInput(rng, shape), randomInput(rng, shape)];
      const [want] = await runOn('cpu', inputs, (a, b) => tf.add(a, b));
      const [got] = await runOn('wasm', inputs, (a, b) => {
        // runOn's inputs stay alive to its end: an owned copy is what addOwned may overwrite.
        const owned = tf.add(a, 0);
        const sum = addOwned(owned, b);
        owned.dispose();
        return sum;
      });
      expect(got, `shape [${shape}]`).toEqual(want);
    }
  } finally {
    setNativeGemmEnabled(true);
  }
}

describe('in-place gradient sum on wasm', () => {
  it('is registered on wasm', () => {
    expect(tf.getKernel(ADD_INTO, 'wasm')).toBeDefined();
  });

  it('gives the bits of tf.add on cpu with the native addon', async () => {
    if (nativeAddInto() === null) {
      if (process.env.CI === 'true') throw new Error('CI=true but the native addon has no addInto (run node packages/core/native/build.mjs)');
      console.warn('skipped: the native addon has no addInto');
      return;
    }
    await expectSameBitsAsCpu(true);
  });

  it('gives the bits of tf.add on cpu without it (the JS loop)', async () => {
    await expectSameBitsAsCpu(false);
  });

  it('writes into the owner\'s block and allocates nothing', async () => {
    await tf.setBackend('wasm');
    const before = tf.memory().numTensors;
    const sum = tf.tensor([1, 2, 3, 4]);
    const addend = tf.tensor([0.5, 0.25, -1, 8]);
    const dataId = sum.dataId;
    let out: tf.Tensor | undefined;
    expect(peakAllocationDuring(() => (out = addOwned(sum, addend)))).toBe(0);
    sum.dispose();
    expect(out!.dataId).toBe(dataId);
    expect(Array.from(out!.dataSync())).toEqual([1.5, 2.25, 2, 12]);
    tf.dispose([out!, addend]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('leaves a block another tensor shares alone (a new block for the sum)', async () => {
    await tf.setBackend('wasm');
    const sum = tf.tensor([1, 2, 3]);
    // masksub's Identity shares the data: the clone and `sum` hold one block.
    const shared = tf.clone(sum);
    const out = addOwned(sum, tf.ones([3]));
    sum.dispose();
    expect(out.dataId).not.toBe(shared.dataId);
    expect(Array.from(shared.dataSync())).toEqual([1, 2, 3]);
    expect(Array.from(out.dataSync())).toEqual([2, 3, 4]);
    tf.dispose([out, shared]);
  });

  it('broadcasts as tf.add where the shapes differ', async () => {
    await tf.setBackend('wasm');
    const sum = tf.tensor([[1, 2], [3, 4]]);
    const out = addOwned(sum, tf.tensor([10, 20]));
    sum.dispose();
    expect(Array.from(out.dataSync())).toEqual([11, 22, 13, 24]);
    out.dispose();
  });

  it('under a recording tape it is tf.add: the forward keeps its inputs and the gradient flows', async () => {
    await tf.setBackend('wasm');
    const x = tf.tensor([1, -2, 3]);
    const dx = tf.grad((v: tf.Tensor) => {
      const doubled = tf.mul(v, 2);
      const sum = addOwned(doubled, v);
      // `doubled` is an input of a recorded Mul's consumer: it must still hold 2v.
      return tf.sum(tf.mul(sum, doubled));
    })(x);
    // d/dv sum(3v * 2v) = 12 v
    expect(Array.from(dx.dataSync())).toEqual([12, -24, 36]);
    tf.dispose([x, dx]);
  });

  it('the gradient walk sums an input\'s partial gradients with it, with the values of cpu', async () => {
    const rng = new Rng(5);
    const inputs = [randomInput(rng, [4, 6]), randomInput(rng, [4, 6]), randomInput(rng, [6, 6])];
    // x feeds three ops: its gradient is the sum of three partials.
    const f = (x: tf.Tensor, a: tf.Tensor, w: tf.Tensor) => tf.grad((v: tf.Tensor) => tf.sum(tf.add(tf.add(tf.mul(v, a), tf.matMul(v, w)), tf.square(v))))(x);
    const [want] = await runOn('cpu', inputs, f);
    const [got] = await runOn('wasm', inputs, f);
    for (let i = 0; i < want.length; i++) expect(got[i]).toBeCloseTo(want[i], 5);
    await tf.setBackend('wasm');
    const xs = inputs.map((i) => tf.tensor(i.values, i.shape));
    const profile = await tf.profile(() => tf.dispose(f(xs[0], xs[1], xs[2])));
    expect(profile.kernels.filter((k) => k.name === ADD_INTO).length).toBe(2);
    expect(profile.kernels.some((k) => k.name === 'Add')).toBe(true); // the forward's own adds
    tf.dispose(xs);
  });

  it('the sub pass adds onto the main pass\'s gradient in the gradient\'s block', async () => {
    await tf.setBackend('wasm');
    const w = tf.variable(tf.tensor([1, 2, 3]));
    const prior = tf.tensor([10, 20, 30]);
    const priorId = prior.dataId;
    const { value, grads } = gradientsOnto(() => tf.sum(tf.mul(w, w)), [w], [prior]);
    expect(grads[0].dataId).toBe(priorId);
    expect(Array.from(grads[0].dataSync())).toEqual([12, 24, 36]);
    tf.dispose([value, ...grads, w]);
  });

  it('micro-batch accumulation sums into the first map\'s blocks', async () => {
    await tf.setBackend('wasm');
    const a = new Map([['w', tf.tensor([1, 2])]]);
    const b = new Map([['w', tf.tensor([3, 4])], ['only-b', tf.tensor([5])]]);
    const id = a.get('w')!.dataId;
    const sum = addGradients(a, b);
    expect(sum.get('w')!.dataId).toBe(id);
    expect(Array.from(sum.get('w')!.dataSync())).toEqual([4, 6]);
    expect(Array.from(sum.get('only-b')!.dataSync())).toEqual([5]);
    tf.dispose([...sum.values()]);
  });
});
