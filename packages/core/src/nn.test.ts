/**
 * The hand-written gradients of layerNorm and geluExact against autodiff through the plain
 * compositions, on cpu and wasm, for random shapes (forward and every input's gradient).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from './backend/select.js';
import { expectClose, randomInput, runOn, type Input } from './backend/testing/compare.js';
import { batchToken, blockDropPathRate, embedKeptPatches, embedding, geluExact, layerNorm, linear, multiHeadAttention, passDropoutRates, patchify, removeTokens, type AttentionWeights } from './nn.js';
import { Rng } from './rng.js';
import { tf } from './tf.js';

function referenceLayerNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps: number): tf.Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps))), gamma), beta);
}

function referenceGelu(x: tf.Tensor): tf.Tensor {
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
}

/** Forward value and gradients of sum(f(...) * w) for every input but the last (w). */
function valueAndGrads(f: (...xs: tf.Tensor[]) => tf.Tensor) {
  return (...xs: tf.Tensor[]) => {
    const w = xs[xs.length - 1];
    const inputs = xs.slice(0, -1);
    const { value, grads } = tf.valueAndGrads((...ts: tf.Tensor[]) => tf.sum(tf.mul(f(...ts), w)) as tf.Scalar)(inputs);
    return [f(...inputs), value, ...grads];
  };
}

beforeAll(async () => {
  delete process.env.MASKSUB_BACKEND;
  await initBackend({ prefer: 'wasm', log: () => {} });
});

const SHAPES = [[3, 7, 16], [5, 33], [2, 4, 5, 9]];

describe.each(['cpu', 'wasm'])('nn fused-gradient ops on %s', (backend) => {
  for (const shape of [[6, 5], [2, 9, 5]]) {
    it(`linear with bias [${shape}] (fused matmul) matches matMul + add, forward and gradients`, async () => {
      const rng = new Rng(50 + shape.length);
      const outDim = 7;
      const inputs: Input[] = [randomInput(rng, shape), randomInput(rng, [5, outDim]), randomInput(rng, [outDim]), randomInput(rng, [...shape.slice(0, -1), outDim])];
      const got = await runOn(backend, inputs, valueAndGrads((x, w, b) => linear(x, w, b)));
      const want = await runOn(
        backend,
        inputs,
        valueAndGrads((x, w, b) => tf.add(tf.reshape(tf.matMul(tf.reshape(x, [-1, 5]), w), [...shape.slice(0, -1), outDim]), b)),
      );
      expectClose(got, want, 1e-5, `linear [${shape}]`);
    });
  }

  it("linear computes an input's gradient only when asked: no product for x when only W and b are differentiated", async () => {
    const rng = new Rng(57);
    const inputs: Input[] = [randomInput(rng, [2, 9, 5]), randomInput(rng, [5, 7]), randomInput(rng, [7]), randomInput(rng, [2, 9, 7])];
    const loss = (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor, dy: tf.Tensor) => tf.sum(tf.mul(linear(x, w, b), dy)) as tf.Scalar;
    // W's and b's gradients alone are those of the full gradient, bit for bit.
    const weightsOnly = (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor, dy: tf.Tensor) => {
      const { value, grads } = tf.valueAndGrads((wt: tf.Tensor, bt: tf.Tensor) => loss(x, wt, bt, dy))([w, b]);
      return [value, ...grads];
    };
    const all = (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor, dy: tf.Tensor) => {
      const { value, grads } = tf.valueAndGrads((xt: tf.Tensor, wt: tf.Tensor, bt: tf.Tensor) => loss(xt, wt, bt, dy))([x, w, b]);
      return [value, grads[1], grads[2]];
    };
    expectClose(await runOn(backend, inputs, weightsOnly), await runOn(backend, inputs, all), 0, 'W and b alone', 0);
    // The backward's products: x^T dy only (one [5, 7] matmul), no dy W^T of x's shape [18, 5].
    await tf.setBackend(backend);
    const [x, w, b, dy] = inputs.map((i) => tf.tensor(i.values, i.shape));
    const products = async (withX: boolean) => {
      const info = await tf.profile(() => (withX ? tf.grads((xt: tf.Tensor, wt: tf.Tensor, bt: tf.Tensor) => loss(xt, wt, bt, dy))([x, w, b]) : tf.grads((wt: tf.Tensor, bt: tf.Tensor) => loss(x, wt, bt, dy))([w, b])));
      return info.kernels.filter((k) => k.name === 'BatchMatMul').map((k) => k.outputShapes[0]?.join('x'));
    };
    expect(await products(false)).toEqual(['5x7']);
    expect((await products(true)).sort()).toEqual(['18x5', '5x7']);
    // x's gradient, when asked for, is dy W^T.
    const dx = tf.grad((xt: tf.Tensor) => loss(xt, w, b, dy))(x);
    const want = tf.reshape(tf.matMul(tf.reshape(dy, [18, 7]), w, false, true), [2, 9, 5]);
    expect(Array.from(dx.dataSync())).toEqual(Array.from(want.dataSync()));
    tf.dispose([x, w, b, dy, dx, want]);
  });

  for (const shape of SHAPES) {
    it(`layerNorm [${shape}] matches autodiff of the plain composition`, async () => {
      const rng = new Rng(shape.length * 100 + shape[shape.length - 1]);
      const d = shape[shape.length - 1];
      const x = randomInput(rng, shape);
      // Shift and scale rows so the variance path is exercised away from 1.
      for (let i = 0; i < x.values.length; i++) x.values[i] = x.values[i] * 3 + 2;
      const inputs: Input[] = [x, randomInput(rng, [d]), randomInput(rng, [d]), randomInput(rng, shape)];
      const eps = 1e-6;
      const got = await runOn(backend, inputs, valueAndGrads((a, g, b) => layerNorm(a, g, b, eps)));
      const want = await runOn(backend, inputs, valueAndGrads((a, g, b) => referenceLayerNorm(a, g, b, eps)));
      expectClose(got, want, 2e-5, `layerNorm [${shape}]`);
    });

    it(`geluExact [${shape}] matches autodiff of the plain composition`, async () => {
      const rng = new Rng(7 + shape[0]);
      const x = randomInput(rng, shape);
      // Cover the tails, where the density's exp underflows.
      for (let i = 0; i < x.values.length; i++) x.values[i] *= 4;
      x.values[0] = -12;
      x.values[1] = 12;
      x.values[2] = 0;
      const inputs: Input[] = [x, randomInput(rng, shape)];
      const got = await runOn(backend, inputs, valueAndGrads((a) => geluExact(a)));
      const want = await runOn(backend, inputs, valueAndGrads((a) => referenceGelu(a)));
      expectClose(got, want, 1e-5, `gelu [${shape}]`);
    });
  }
});

describe.each(['cpu', 'wasm'])('multiHeadAttention with `queries` on %s', (backend) => {
  // The leading query rows of the full attention, values and every gradient (x, weights, biases):
  // a final layer read only at CLS computes those rows alone.
  for (const [queries, biasKind] of [[1, 'none'], [2, 'per-key'], [3, 'per-query']] as const) {
    it(`${queries} of 7 queries, ${biasKind} bias: the full attention's leading rows`, async () => {
      const rng = new Rng(90 + queries);
      const [b, t, d, heads] = [2, 7, 8, 2];
      const weights = ['q', 'k', 'v', 'out'].flatMap(() => [randomInput(rng, [d, d]), randomInput(rng, [d])]);
      const biasShape = biasKind === 'per-key' ? [b, 1, 1, t] : [1, heads, t, t];
      const bias = biasKind === 'none' ? [] : [randomInput(rng, biasShape)];
      const inputs: Input[] = [randomInput(rng, [b, t, d]), ...weights, ...bias, randomInput(rng, [b, queries, d])];
      const attention = (rows: number | undefined) => (x: tf.Tensor, ...rest: tf.Tensor[]) => {
        const w = rest.slice(0, 8);
        const pair = (i: number): [tf.Tensor, tf.Tensor] => [w[2 * i], w[2 * i + 1]];
        const attn: AttentionWeights = { q: pair(0), k: pair(1), v: pair(2), out: pair(3) };
        const y = multiHeadAttention(x, attn, heads, { bias: biasKind === 'none' ? undefined : rest[8], queries: rows });
        return rows === undefined ? tf.slice(y, [0, 0, 0], [b, queries, d]) : y;
      };
      const got = await runOn(backend, inputs, valueAndGrads(attention(queries)));
      const want = await runOn(backend, inputs, valueAndGrads(attention(undefined)));
      expectClose(got, want, 1e-5, `attention, ${queries} queries`);
    });
  }

  // One query row per sequence at its own position (a text tower's EOS pool), bias of one or B rows.
  for (const biasKind of ['none', 'per-key', 'per-query shared', 'per-query per sequence'] as const) {
    it(`one query per sequence at its position, ${biasKind} bias: the full attention's rows there`, async () => {
      const rng = new Rng(120 + biasKind.length);
      const [b, t, d, heads] = [3, 6, 8, 2];
      const at = Int32Array.of(5, 0, 3);
      const weights = ['q', 'k', 'v', 'out'].flatMap(() => [randomInput(rng, [d, d]), randomInput(rng, [d])]);
      const biasShape = biasKind === 'per-key' ? [b, 1, 1, t] : biasKind === 'per-query shared' ? [1, 1, t, t] : [b, heads, t, t];
      const bias = biasKind === 'none' ? [] : [randomInput(rng, biasShape)];
      // The last input weighs the output [B, 1, D] (valueAndGrads' cotangent).
      const inputs: Input[] = [randomInput(rng, [b, t, d]), ...weights, ...bias, randomInput(rng, [b, 1, d])];
      const attention = (select: boolean) => (x: tf.Tensor, ...rest: tf.Tensor[]) => {
        const w = rest.slice(0, 8);
        const pair = (i: number): [tf.Tensor, tf.Tensor] => [w[2 * i], w[2 * i + 1]];
        const attn: AttentionWeights = { q: pair(0), k: pair(1), v: pair(2), out: pair(3) };
        const opts = { bias: biasKind === 'none' ? undefined : rest[8] };
        if (select) return multiHeadAttention(x, attn, heads, { ...opts, queries: { at } });
        const full = multiHeadAttention(x, attn, heads, opts);
        // Row at[i] of sequence i, by slices (a different path from the selection's gather).
        return tf.concat(Array.from(at, (p, i) => tf.slice(full, [i, p, 0], [1, 1, d])), 0);
      };
      const got = await runOn(backend, inputs, valueAndGrads(attention(true)));
      const want = await runOn(backend, inputs, valueAndGrads(attention(false)));
      expectClose(got, want, 1e-5, `attention at ${Array.from(at)}, ${biasKind} bias`);
    });
  }

  it('refuses positions outside [0, T) or not one per sequence, naming the option', async () => {
    await tf.setBackend(backend);
    const x = tf.zeros([2, 3, 4]);
    const w = tf.zeros([4, 4]);
    const attn: AttentionWeights = { q: [w], k: [w], v: [w], out: [w] };
    expect(() => multiHeadAttention(x, attn, 2, { queries: { at: Int32Array.of(0, 3) } })).toThrow(/queries.*position 3 of sequence 1 is outside \[0, 3\)/);
    expect(() => multiHeadAttention(x, attn, 2, { queries: { at: Int32Array.of(1) } })).toThrow(/queries.*1 positions for a batch of 2/);
    tf.dispose([x, w]);
  });

  it('refuses a query count outside [1, T], naming the option', async () => {
    await tf.setBackend(backend);
    const x = tf.zeros([1, 3, 4]);
    const w = tf.zeros([4, 4]);
    const attn: AttentionWeights = { q: [w], k: [w], v: [w], out: [w] };
    expect(() => multiHeadAttention(x, attn, 2, { queries: 4 })).toThrow(/queries must be an integer in \[1, 3\], got 4/);
    expect(() => multiHeadAttention(x, attn, 2, { queries: 0 })).toThrow(/queries/);
    tf.dispose([x, w]);
  });
});

describe('embedding (gather with a scatter-add gradient)', () => {
  it('matches tf.gather forward and gradient, repeated ids summed, on cpu', async () => {
    await tf.setBackend('cpu');
    const table = tf.tensor2d([[1, 2], [3, 4], [5, 6], [7, 8]]);
    const ids = tf.tensor1d([2, 0, 2, 3], 'int32');
    const w = tf.tensor2d([[1, -1], [2, 0], [0.5, 3], [1, 1]]);
    const ours = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(embedding(t, ids), w)));
    const ref = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.gather(t, ids), w)));
    expect(Array.from(embedding(table, ids).dataSync())).toEqual(Array.from(tf.gather(table, ids).dataSync()));
    expect(Array.from(ours(table).dataSync())).toEqual(Array.from(ref(table).dataSync()));
    expect(Array.from(ours(table).dataSync())).toEqual([2, 0, 0, 0, 1.5, 2, 1, 1]);
    expect(() => embedding(table, tf.tensor1d([0, 1]))).toThrow(/int32/);
    tf.dispose([table, ids, w]);
  });
});

describe('patch tokens: patchify, removeTokens, embedKeptPatches', () => {
  it('patchify orders each patch (C, ph, pw) as a flattened conv weight', async () => {
    await tf.setBackend('cpu');
    const [b, c, h, w, p] = [2, 3, 4, 6, 2];
    const values = Float32Array.from({ length: b * c * h * w }, (_, i) => i);
    const x = tf.tensor4d(values, [b, c, h, w]);
    const got = patchify(x, p).arraySync() as number[][][];
    for (let bi = 0; bi < b; bi++) {
      for (let gy = 0; gy < h / p; gy++) {
        for (let gx = 0; gx < w / p; gx++) {
          const expected: number[] = [];
          for (let ci = 0; ci < c; ci++) for (let py = 0; py < p; py++) for (let px = 0; px < p; px++) expected.push(values[((bi * c + ci) * h + gy * p + py) * w + gx * p + px]);
          expect(got[bi][gy * (w / p) + gx]).toEqual(expected);
        }
      }
    }
    expect(() => patchify(tf.zeros([1, 3, 5, 4]), 2)).toThrow(/multiples of 2/);
    x.dispose();
  });

  it('embedding the kept patches equals removing tokens after embedding, gradients included', async () => {
    await tf.setBackend('cpu');
    const rng = new Rng(4);
    const [b, n, f, d, k] = [3, 6, 5, 4, 3];
    const rand = (shape: number[]) => tf.tensor(Float32Array.from({ length: shape.reduce((a, s) => a * s, 1) }, () => rng.normal()), shape);
    const raw = rand([b, n, f]);
    const weight = rand([f, d]);
    const pos = rand([n, d]);
    const keep = tf.tensor2d([[0, 2, 5], [1, 3, 4], [5, 0, 1]], [b, k], 'int32');
    const after = (wt: tf.Tensor, ps: tf.Tensor) => {
      const cls = tf.zeros([b, 1, d]);
      const h = tf.concat([cls, tf.add(tf.matMul(raw.reshape([b * n, f]), wt).reshape([b, n, d]), ps)], 1);
      return tf.slice(removeTokens(h, keep, 1), [0, 1, 0], [b, k, d]);
    };
    const before = (wt: tf.Tensor, ps: tf.Tensor) => embedKeptPatches(raw, keep, (x) => tf.matMul(x, wt), ps);
    const probe = rand([b, k, d]);
    expectClose([before(weight, pos).dataSync() as Float32Array], [after(weight, pos).dataSync() as Float32Array], 1e-6, 'values');
    const g1 = tf.grads((wt: tf.Tensor, ps: tf.Tensor) => tf.sum(tf.mul(before(wt, ps), probe)))([weight, pos]);
    const g2 = tf.grads((wt: tf.Tensor, ps: tf.Tensor) => tf.sum(tf.mul(after(wt, ps), probe)))([weight, pos]);
    expectClose(g1.map((g) => g.dataSync() as Float32Array), g2.map((g) => g.dataSync() as Float32Array), 1e-5, 'gradients');
    expect(() => removeTokens(tf.zeros([b, n + 1, d]), tf.zeros([b + 1, k], 'int32'), 1)).toThrow(/keepIndices/);
    tf.dispose([raw, weight, pos, keep, probe, ...g1, ...g2]);
  });
});

describe('drop rules', () => {
  it("drop-path: 'linear' is timm's linspace(0, r, n), 'uniform' is r in every block (DeiT-III, PathSub)", () => {
    expect([0, 1, 2, 3, 4].map((i) => blockDropPathRate(0.2, 'linear', i, 5))).toEqual([0, 0.05, 0.1, 0.15000000000000002, 0.2]);
    expect([0, 1, 2].map((i) => blockDropPathRate(0.2, 'uniform', i, 3))).toEqual([0.2, 0.2, 0.2]);
    // torch.linspace(0, r, 1) = [0]
    expect(blockDropPathRate(0.2, 'linear', 0, 1)).toBe(0);
  });

  it('DropSub drops the attention output and the MLP (after the activation and fc2), not the attention probabilities', () => {
    const cfg = { hidden: 0.1, attentionProbs: 0.05 };
    expect(passDropoutRates({ training: true, dropoutRate: 0.5 }, cfg)).toEqual({ attentionProbs: 0.05, attentionOutput: 0.5, mlpHidden: 0.5, mlpOutput: 0.5, other: 0.1 });
    expect(passDropoutRates({ training: true }, cfg)).toEqual({ attentionProbs: 0.05, attentionOutput: 0.1, mlpHidden: 0, mlpOutput: 0.1, other: 0.1 });
    expect(passDropoutRates({}, cfg)).toEqual({ attentionProbs: 0, attentionOutput: 0, mlpHidden: 0, mlpOutput: 0, other: 0 });
    // HF Swin drops its attention output with the probabilities' rate.
    expect(passDropoutRates({ training: true }, { ...cfg, attentionOutput: 0.05 }).attentionOutput).toBe(0.05);
  });
});

describe('batchToken (a learned token repeated over the batch)', () => {
  it("gives tf.tile's values and gradient, with a row sum instead of per-row slices", () => {
    const token = tf.tensor3d([[[0.5, -1.25, 2]]]);
    const upstream = tf.randomNormal([5, 1, 3], 0, 1, 'float32', 3);
    const ours = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(batchToken(t, 5), upstream)))(token);
    const tiled = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.tile(t, [5, 1, 1]), upstream)))(token);
    expect(batchToken(token, 5).shape).toEqual([5, 1, 3]);
    expect(Array.from(batchToken(token, 5).dataSync())).toEqual(Array.from(tf.tile(token, [5, 1, 1]).dataSync()));
    expect(batchToken(tf.tensor1d([0.5, -1.25, 2]), 2).shape).toEqual([2, 1, 3]);
    const a = ours.dataSync(), b = tiled.dataSync();
    for (let i = 0; i < 3; i++) expect(a[i]).toBeCloseTo(b[i], 5);
  });
});
