import { describe, expect, it } from 'vitest';
import { tf } from './tf.js';

/**
 * Tensor bytes live when the last op of a deep chain's backward runs (the op next to the input):
 * tfjs' own walk still holds every op's gradient and saved tensors then, the lean walk has freed them.
 */
function bytesAtLastBackwardOp(depth: number): number {
  const x = tf.variable(tf.randomNormal([256, 256], 0, 1, 'float32', 3));
  let seen = -1;
  const probe = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
    value: tf.clone(args[0] as tf.Tensor),
    gradFunc: (dy: tf.Tensor) => {
      seen = tf.memory().numBytes;
      return tf.clone(dy);
    },
  }));
  const base = tf.memory().numBytes;
  const { value, grads } = tf.variableGrads(() => {
    let h: tf.Tensor = probe(x) as tf.Tensor;
    for (let i = 0; i < depth; i++) h = tf.sin(tf.mul(h, 1.01));
    return tf.sum(h) as tf.Scalar;
  }, [x]);
  tf.dispose([value, ...Object.values(grads), x]);
  return seen - base;
}

describe('lean gradients (the engine gradients installed by core/tf.ts)', () => {
  it('are installed on the engine core uses', () => {
    expect((tf.engine() as unknown as { leanGradientsInstalled?: boolean }).leanGradientsInstalled).toBe(true);
  });

  it('free each op gradient and saved tensor once the op is done (tfjs keeps them to the end of the walk)', () => {
    const bytes = 256 * 256 * 4;
    const depth = 32;
    const lean = bytesAtLastBackwardOp(depth);
    const engine = tf.engine() as unknown as { gradients: unknown; tfjsGradients: unknown };
    const installed = engine.gradients;
    engine.gradients = engine.tfjsGradients;
    let tfjs: number;
    try {
      tfjs = bytesAtLastBackwardOp(depth);
    } finally {
      engine.gradients = installed;
    }
    // tfjs: one gradient per op (2 per sin/mul pair) plus the saved inputs of each; lean: the
    // gradient flowing in and its copy, a few tensors whatever the depth.
    expect(tfjs).toBeGreaterThan(3 * depth * bytes);
    expect(lean).toBeLessThan(6 * bytes);
  });

  it('match finite differences on a graph with fan-out, an identity pass-through and a gradient w.r.t. an intermediate', () => {
    const a = tf.tensor1d([0.3, -1.2, 2.0]);
    const f = (x: tf.Tensor) => {
      const s = tf.sin(x);
      const same = tf.clone(s); // the gradient of Identity (clone) is dy itself, shared by two entries
      const r = tf.reshape(tf.mul(x, s), [3, 1]); // Reshape's gradient comes from the walk, not from tfjs
      return tf.sum(tf.add(tf.mul(same, s), tf.reshape(r, [3]))) as tf.Scalar;
    };
    const g = tf.grad(f)(a);
    const h = 1e-3;
    const numeric = [0, 1, 2].map((i) => {
      const e = tf.oneHot(i, 3).asType('float32');
      const up = f(tf.add(a, tf.mul(e, h))).dataSync()[0];
      const down = f(tf.sub(a, tf.mul(e, h))).dataSync()[0];
      return (up - down) / (2 * h);
    });
    const got = Array.from(g.dataSync());
    for (let i = 0; i < 3; i++) expect(got[i]).toBeCloseTo(numeric[i], 2);
    g.dispose();

    // A gradient with respect to an intermediate tensor as well as the input (b = a * 2 is an op output).
    const b = tf.mul(a, 2);
    const [ga, gb] = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(p, q)) as tf.Scalar)([a, b]);
    expect(Array.from(ga.dataSync())).toEqual(Array.from(b.dataSync()));
    expect(Array.from(gb.dataSync())).toEqual(Array.from(a.dataSync()));
    tf.dispose([a, b, ga, gb]);
  });

  it('leave no tensors behind and keep a caller-supplied dy alive', () => {
    const x = tf.variable(tf.randomNormal([4, 5], 0, 1, 'float32', 1));
    const w = tf.variable(tf.randomNormal([5, 3], 0, 1, 'float32', 2));
    const before = tf.memory().numTensors;
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.relu(tf.matMul(tf.tanh(x), w))) as tf.Scalar, [x, w]);
    tf.dispose([value, ...Object.values(grads)]);
    expect(tf.memory().numTensors).toBe(before);
    const dy = tf.ones([4, 3]);
    const g = tf.grads((p: tf.Tensor) => tf.matMul(p, w))([x], dy);
    expect(dy.isDisposed).toBe(false);
    expect(g[0].shape).toEqual([4, 5]);
    tf.dispose([dy, ...g, x, w]);
  });
});
