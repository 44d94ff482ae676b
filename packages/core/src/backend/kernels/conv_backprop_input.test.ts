import { beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../rng.js';
import { tf } from '../../tf.js';
import { initBackend } from '../select.js';
import { expectWasmMatchesCpu, randomInput } from '../testing/compare.js';

beforeAll(async () => {
  delete process.env.MASKSUB_BACKEND;
  await initBackend({ prefer: 'wasm', log: () => {} });
});

type Pad = 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]];
// [x NHWC, filter HWIO, strides, pad]: ResNet's shapes (3x3 s1/s2 with PyTorch-style explicit
// pads, 1x1 s2 shortcuts, the 7x7 s2 stem), odd sizes where a strided conv skips the last rows.
const CASES: [number[], number[], [number, number], Pad][] = [
  [[2, 8, 8, 4], [3, 3, 4, 5], [1, 1], 'same'],
  [[2, 8, 8, 4], [3, 3, 4, 6], [2, 2], [[0, 0], [1, 1], [1, 1], [0, 0]]],
  [[1, 9, 7, 3], [3, 3, 3, 2], [2, 2], [[0, 0], [1, 1], [1, 1], [0, 0]]],
  [[2, 8, 8, 4], [1, 1, 4, 8], [2, 2], 'valid'],
  [[1, 15, 15, 3], [7, 7, 3, 4], [2, 2], [[0, 0], [3, 3], [3, 3], [0, 0]]],
  [[2, 6, 10, 3], [3, 2, 3, 4], [1, 3], 'valid'],
  [[1, 7, 7, 2], [3, 3, 2, 3], [2, 1], 'same'],
];

describe('Conv2DBackpropInput on wasm as a forward convolution', () => {
  for (const [xShape, wShape, strides, pad] of CASES) {
    it(`x [${xShape}] filter [${wShape}] strides ${strides} pad ${JSON.stringify(pad)}: dx and dW match cpu`, async () => {
      const rng = new Rng(xShape.concat(wShape).reduce((a, b) => a * 7 + b, 1));
      const outShape = tf.tidy(() => tf.conv2d(tf.zeros(xShape as [number, number, number, number]) as tf.Tensor4D, tf.zeros(wShape as [number, number, number, number]) as tf.Tensor4D, strides, pad).shape);
      await expectWasmMatchesCpu(
        [randomInput(rng, xShape), randomInput(rng, wShape), randomInput(rng, outShape)],
        (x, w, probe) => {
          const loss = (xt: tf.Tensor, wt: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(xt as tf.Tensor4D, wt as tf.Tensor4D, strides, pad), probe));
          return tf.grads(loss)([x, w]);
        },
        `conv grads ${xShape} ${wShape}`,
        1e-4,
      );
    });
  }

  it('is the registered kernel', () => {
    const fn = tf.getKernel(tf.Conv2DBackpropInput, 'wasm')?.kernelFunc as unknown as { [k: symbol]: unknown } | undefined;
    expect(fn?.[Symbol.for('masksub.stockKernel')]).toBeDefined();
  });
});
