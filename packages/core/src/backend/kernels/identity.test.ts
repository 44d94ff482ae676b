import { beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../rng.js';
import { tf } from '../../tf.js';
import { initBackend } from '../select.js';
import { expectWasmMatchesCpu, intInput, randomInput } from '../testing/compare.js';

beforeAll(async () => {
  delete process.env.MASKSUB_BACKEND;
  await initBackend({ prefer: 'wasm', log: () => {} });
});

describe('zero-copy Identity / same-dtype Cast on wasm', () => {
  it('clone and cast share data, survive the source being disposed, and leak nothing', async () => {
    await tf.setBackend('wasm');
    const before = tf.memory().numTensors;
    const x = tf.tensor([1, 2, 3, 4], [2, 2]);
    const c = tf.clone(x);
    const f = tf.cast(x, 'float32');
    const i = tf.cast(x, 'int32'); // a real conversion still goes to the stock kernel
    x.dispose();
    expect(Array.from(c.dataSync())).toEqual([1, 2, 3, 4]);
    expect(Array.from(f.dataSync())).toEqual([1, 2, 3, 4]);
    expect(i.dtype).toBe('int32');
    expect(Array.from(i.dataSync())).toEqual([1, 2, 3, 4]);
    tf.dispose([c, f, i]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('gradients through clone, cast and broadcasting adds match cpu', async () => {
    const rng = new Rng(3);
    await expectWasmMatchesCpu(
      [randomInput(rng, [4, 5]), randomInput(rng, [5]), intInput([4, 5], Array.from({ length: 20 }, (_, k) => k % 3))],
      (x, b, n) =>
        tf.grads((xt: tf.Tensor, bt: tf.Tensor) =>
          tf.sum(tf.mul(tf.add(tf.clone(xt), tf.cast(bt, 'float32')), tf.cast(n, 'float32'))),
        )([x, b]),
      'identity/cast gradients',
    );
  });
});
