import { describe, expect, it } from 'vitest';
import { tf } from '../tf.js';
import { clipGradNorm } from './clip.js';

describe('clipGradNorm (torch.nn.utils.clip_grad_norm_)', () => {
  it('scales by maxNorm/(norm+1e-6) when above, returns the pre-clip norm', () => {
    // Global norm sqrt(3^2 + 4^2 + 12^2) = 13.
    const grads = new Map([
      ['a', tf.tensor([3, 4])],
      ['b', tf.tensor([[12]])],
    ]);
    const before = tf.memory().numTensors;
    const { grads: out, norm } = clipGradNorm(grads, 6.5);
    expect(norm).toBeCloseTo(13, 5);
    const coef = 6.5 / (13 + 1e-6);
    expect(Array.from(out.get('a')!.dataSync())).toEqual([3, 4].map((x) => Math.fround(Math.fround(x) * Math.fround(coef))));
    expect(out.get('b')!.shape).toEqual([1, 1]);
    expect(out.get('b')!.dataSync()[0]).toBeCloseTo(6, 5);
    out.forEach((g) => g.dispose());
    expect(tf.memory().numTensors).toBe(before);
    // Inputs untouched.
    expect(Array.from(grads.get('a')!.dataSync())).toEqual([3, 4]);
  });

  it('leaves gradients under the limit unchanged', () => {
    const grads = new Map([['a', tf.tensor([0.3, 0.4])]]);
    const { grads: out, norm } = clipGradNorm(grads, 1);
    expect(norm).toBeCloseTo(0.5, 6);
    expect(Array.from(out.get('a')!.dataSync())).toEqual(Array.from(grads.get('a')!.dataSync()));
  });

  it('reports a non-finite norm', () => {
    const { norm } = clipGradNorm(new Map([['a', tf.tensor([Number.NaN, 1])]]), 1);
    expect(Number.isNaN(norm)).toBe(true);
    expect(() => clipGradNorm(new Map(), 0)).toThrow(/clipGrad/);
  });
});
