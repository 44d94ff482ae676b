import { describe, expect, it } from 'vitest';
import { tf } from './tf.js';
import { gradientsOnto } from './lean-gradients.js';

/** An identity op whose gradient records the tensor bytes live when the backward reaches it. */
function memoryProbe(): { probe: (x: tf.Tensor) => tf.Tensor; bytesSeen: () => number } {
  let seen = -1;
  const probe = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
    value: tf.clone(args[0] as tf.Tensor),
    gradFunc: (dy: tf.Tensor) => {
      seen = tf.memory().numBytes;
      return tf.clone(dy);
    },
  }));
  return { probe: (x) => probe(x) as tf.Tensor, bytesSeen: () => seen };
}

/**
 * Tensor bytes live when the last op of a deep chain's backward runs (the op next to the input):
 * tfjs' own walk still holds every op's gradient and saved tensors then, the lean walk has freed them.
 */
function bytesAtLastBackwardOp(depth: number): number {
  const x = tf.variable(tf.randomNormal([256, 256], 0, 1, 'float32', 3));
  const { probe, bytesSeen } = memoryProbe();
  const base = tf.memory().numBytes;
  const { value, grads } = tf.variableGrads(() => {
    let h = probe(x);
    for (let i = 0; i < depth; i++) h = tf.sin(tf.mul(h, 1.01));
    return tf.sum(h) as tf.Scalar;
  }, [x]);
  tf.dispose([value, ...Object.values(grads), x]);
  return bytesSeen() - base;
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

  describe('gradientsOnto', () => {
    // w is read twice (fan-out: its partial gradients are summed on the tape), b once through a
    // reshape, u not at all; x is an input, not a variable.
    const w = tf.variable(tf.randomNormal([6, 5], 0, 1, 'float32', 11));
    const b = tf.variable(tf.randomNormal([5], 0, 1, 'float32', 12));
    const u = tf.variable(tf.randomNormal([3], 0, 1, 'float32', 13));
    const x = tf.randomNormal([4, 6], 0, 1, 'float32', 14);
    const loss = () => {
      const h = tf.tanh(tf.add(tf.matMul(x, w), tf.reshape(tf.reshape(b, [1, 5]), [5])));
      return tf.sum(tf.mul(h, tf.sum(w))) as tf.Scalar;
    };
    const priorsOf = () => [tf.randomNormal([6, 5], 0, 1, 'float32', 21), tf.randomNormal([5], 0, 1, 'float32', 22), tf.randomNormal([3], 0, 1, 'float32', 23)];

    it('returns prior + own, bit for bit the sum taken after the walk; the prior alone where the tape never reads the variable', () => {
      const { value, grads: own } = tf.engine().gradients(loss, [w, b, u], undefined, true);
      value.dispose();
      const priors = priorsOf();
      const expected = [tf.add(priors[0], own[0]), tf.add(priors[1], own[1]), tf.clone(priors[2])];
      expect(own[2]).toBeUndefined(); // u gets no gradient of its own
      const got = gradientsOnto(loss, [w, b, u], priors);
      expect(got.reached).toBe(true);
      for (let i = 0; i < 3; i++) expect(Array.from(got.grads[i].dataSync())).toEqual(Array.from(expected[i].dataSync()));
      expect(got.grads[2]).toBe(priors[2]);
      // The priors that were added onto are consumed.
      expect(priors[0].isDisposed && priors[1].isDisposed).toBe(true);
      tf.dispose([got.value, ...got.grads, ...own.filter((g) => g !== undefined), ...expected]);
    });

    it('leaves no tensors behind, and reports a loss that reads no variable', () => {
      const before = tf.memory().numTensors;
      const priors = priorsOf();
      const got = gradientsOnto(loss, [w, b, u], [priors[0], null, priors[2]]);
      tf.dispose([got.value, ...got.grads, priors[1]]);
      expect(tf.memory().numTensors).toBe(before);
      const none = gradientsOnto(() => tf.sum(x) as tf.Scalar, [u], [null]);
      expect(none.reached).toBe(false);
      none.value.dispose();
    });

    it('hold one set of gradients at the end of the walk: a prior is freed as soon as its variable is done', () => {
      // A chain of layers: the first layer's weight is the last one the backward finishes; when its
      // gradient arrives, every other layer's prior has already been added onto and freed.
      const layers = Array.from({ length: 8 }, (_, i) => tf.variable(tf.randomNormal([64, 64], 0, 0.1, 'float32', 30 + i)));
      const input = tf.randomNormal([16, 64], 0, 1, 'float32', 40);
      const bytes = 64 * 64 * 4;
      const { probe, bytesSeen } = memoryProbe();
      const chain = () => {
        let h: tf.Tensor = probe(tf.matMul(input, layers[0]));
        for (const l of layers.slice(1)) h = tf.matMul(h, l);
        return tf.sum(h) as tf.Scalar;
      };
      const priors = layers.map((l, i) => tf.randomNormal(l.shape, 0, 1, 'float32', 50 + i));
      const base = tf.memory().numBytes - priors.length * bytes;
      // The control: the walk's own gradients, the priors held beside them to be added afterwards.
      const plain = tf.engine().gradients(chain, layers, undefined, true);
      const held = bytesSeen() - base;
      tf.dispose([plain.value, ...plain.grads]);
      const got = gradientsOnto(chain, layers, priors);
      // At the probe (the backward's last op, before layer 0's weight gradient): 7 finished sums,
      // layer 0's prior and a few 16 x 64 activations; the control holds 8 priors + 7 gradients.
      expect(held).toBeGreaterThanOrEqual(15 * bytes);
      expect(bytesSeen() - base).toBeLessThan(10 * bytes);
      tf.dispose([got.value, ...got.grads, ...layers, input]);
    });
  });
});
