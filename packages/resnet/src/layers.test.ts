/**
 * conv2dTorch: PyTorch's symmetric padding handed to the conv kernel (no PadV2 / Slice), equal
 * to an explicit zero pad + 'valid' conv in value and both gradients, for 3x3 s1/s2, the 7x7 s2
 * stem and 1x1 s2 on odd sizes.
 */
import { describe, expect, it } from 'vitest';
import { Rng, tf } from '@masksub/core';
import { conv2dTorch } from './layers.js';

function randomTensor(rng: Rng, shape: number[]): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(Float32Array.from({ length: n }, () => rng.normal()), shape);
}

function padThenValid(x: tf.Tensor4D, w: tf.Tensor4D, stride: number): tf.Tensor4D {
  const p = Math.floor(w.shape[0] / 2);
  return tf.conv2d(tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]]), w, stride, 'valid');
}

const CASES: [number[], number[], number][] = [
  [[2, 9, 9, 3], [3, 3, 3, 4], 1],
  [[2, 9, 8, 3], [3, 3, 3, 5], 2],
  [[1, 15, 13, 3], [7, 7, 3, 4], 2],
  [[2, 7, 7, 4], [1, 1, 4, 6], 2],
];

describe('conv2dTorch', () => {
  for (const [xs, ws, stride] of CASES) {
    it(`x [${xs}] w [${ws}] stride ${stride}: equals pad + valid conv (value, dx, dW) without a PadV2`, async () => {
      await tf.setBackend('cpu');
      const rng = new Rng(xs.concat(ws).reduce((a, b) => a * 7 + b, stride));
      const x = randomTensor(rng, xs) as tf.Tensor4D;
      const w = randomTensor(rng, ws) as tf.Tensor4D;
      const check = (f: typeof conv2dTorch) => {
        const loss = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.square(f(a as tf.Tensor4D, b as tf.Tensor4D, stride)));
        return [f(x, w, stride), ...tf.grads(loss)([x, w])];
      };
      const info = await tf.profile(() => check(conv2dTorch));
      expect(info.kernelNames).not.toContain('PadV2');
      const got = info.result as tf.Tensor[];
      const want = check(padThenValid);
      for (let i = 0; i < want.length; i++) {
        expect(got[i].shape).toEqual(want[i].shape);
        const diff = tf.max(tf.abs(tf.sub(got[i], want[i]))).dataSync()[0];
        expect(diff, `output ${i}`).toBeLessThan(1e-4);
      }
      tf.dispose([x, w, ...got, ...want]);
    });
  }
});
