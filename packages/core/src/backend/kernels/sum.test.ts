import { beforeAll, describe, it } from 'vitest';
import { Rng } from '../../rng.js';
import { tf } from '../../tf.js';
import { initBackend } from '../select.js';
import { expectWasmMatchesCpu, intInput, randomInput } from '../testing/compare.js';

beforeAll(async () => {
  delete process.env.MASKSUB_BACKEND;
  await initBackend({ prefer: 'wasm', log: () => {} });
});

const CASES: [number[], number | number[], boolean][] = [
  [[37, 5], 0, false],
  [[38, 3], 0, false], // rows not a multiple of 4: the remainder loop
  [[4, 9, 6], [0, 1], false],
  [[4, 9, 6], [1, 0], true],
  [[4, 9, 6], 0, true],
  [[3, 4, 5, 2], [0, 1, 2], false],
  // Not a leading prefix: the stock kernel, still correct.
  [[4, 9, 6], [0, 2], false],
  [[4, 9, 6], -1, false],
  [[7], 0, false],
];

describe('leading-axes Sum on wasm', () => {
  for (const [shape, axis, keepDims] of CASES) {
    it(`sum [${shape}] axis ${JSON.stringify(axis)} keepDims ${keepDims}: forward and gradient match cpu`, async () => {
      const rng = new Rng(shape.reduce((a, b) => a * 10 + b, 0));
      const outShape = tf.tidy(() => tf.sum(tf.zeros(shape), axis, keepDims).shape);
      await expectWasmMatchesCpu(
        [randomInput(rng, shape), randomInput(rng, outShape)],
        (x, w) => [tf.sum(x, axis, keepDims), tf.grad((xt: tf.Tensor) => tf.sum(tf.mul(tf.sum(xt, axis, keepDims), w)))(x)],
        `sum ${shape}`,
        1e-5,
      );
    });
  }

  it('int32 goes to the stock kernel', async () => {
    await expectWasmMatchesCpu([intInput([3, 2], [1, 2, 3, 4, 5, 6])], (x) => tf.sum(x, 0), 'int sum');
  });
});
