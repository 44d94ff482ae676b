import { describe, expect, it } from 'vitest';
import { outsideTape } from './tape.js';
import { tf } from './tf.js';

describe('outsideTape', () => {
  it('ops inside are not recorded on the open tape: what they compute counts as a constant', () => {
    const x = tf.scalar(3);
    const [dx] = tf.grads((v: tf.Tensor) => {
      const c = outsideTape(() => tf.keep(tf.mul(v, v))); // 9, but not a function of v here
      const out = tf.mul(v, c); // d/dv = c = 9 (and 2 v^2 = 18 if c were on the tape)
      c.dispose();
      return out;
    })([x]);
    expect(dx.dataSync()[0]).toBe(9);
    x.dispose();
    dx.dispose();
  });

  it('a gradients() call inside takes its own tape and frees what it saved before the outer call ends', () => {
    const w = tf.variable(tf.tensor1d([1, 2, 3]));
    const x = tf.scalar(2);
    let innerGrad = 0;
    let liveAfterInner = 0;
    let liveBeforeInner = 0;
    const [dx] = tf.grads((v: tf.Tensor) => {
      const y = tf.mul(v, 5);
      liveBeforeInner = tf.memory().numTensors;
      outsideTape(() => {
        const { value, grads } = tf.engine().gradients(() => tf.sum(tf.square(tf.exp(tf.mul(w, 2)))), [w]);
        innerGrad = grads[0].dataSync()[0];
        value.dispose();
        grads[0].dispose();
      });
      liveAfterInner = tf.memory().numTensors;
      return y;
    })([x]);
    // d/dw e^(4w) = 4 e^(4w) at w = 1
    expect(innerGrad).toBeCloseTo(4 * Math.exp(4), 2);
    expect(liveAfterInner).toBe(liveBeforeInner);
    expect(dx.dataSync()[0]).toBe(5);
    for (const t of [w, x, dx]) t.dispose();
  });

  it('puts the open tape back when the function throws', () => {
    const x = tf.scalar(4);
    const [dx] = tf.grads((v: tf.Tensor) => {
      expect(() => outsideTape(() => { throw new Error('boom'); })).toThrow('boom');
      return tf.mul(v, v); // still recorded: the tape is open again
    })([x]);
    expect(dx.dataSync()[0]).toBe(8);
    x.dispose();
    dx.dispose();
  });
});
