/**
 * The contrastive main loss with caption groups: distinct pairs give CLIP's CE(S, arange) both
 * ways; pairs of one group share the row's (and column's) target mass; values against a plain
 * JS computation.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../tf.js';
import { contrastiveLoss, contrastiveTargets } from './loss.js';

/** mean_i -sum_j T_ij log softmax(row_i)_j on host arrays. */
function softCe(s: number[][], t: number[][]): number {
  let total = 0;
  for (let i = 0; i < s.length; i++) {
    const m = Math.max(...s[i]);
    const z = Math.log(s[i].reduce((a, v) => a + Math.exp(v - m), 0)) + m;
    for (let j = 0; j < s[i].length; j++) total -= t[i][j] * (s[i][j] - z);
  }
  return total / s.length;
}
const transpose = (a: number[][]) => a[0].map((_, j) => a.map((r) => r[j]));
const S = [
  [2.0, 0.5, -1.0, 0.3],
  [0.1, 1.5, 0.2, -0.4],
  [-0.3, 0.8, 1.1, 0.0],
  [0.6, -0.2, 0.4, 2.2],
];

describe('contrastive targets (caption groups)', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  it('distinct groups: CLIP loss (CE(S, arange) + CE(S^T, arange)) / 2', () => {
    const eye = S.map((r, i) => r.map((_, j) => (i === j ? 1 : 0)));
    const want = (softCe(S, eye) + softCe(transpose(S), eye)) / 2;
    const got = contrastiveLoss().main(tf.tensor2d(S), { labels: tf.tensor1d([0, 1, 2, 3], 'int32') }).dataSync()[0];
    expect(got).toBeCloseTo(want, 5);
    // Group ids are only compared, not used as indices.
    const relabelled = contrastiveLoss().main(tf.tensor2d(S), { labels: tf.tensor1d([7, 3, 9, 0], 'int32') }).dataSync()[0];
    expect(relabelled).toBeCloseTo(want, 5);
  });

  it('pairs 0 and 2 in one group: their rows and columns spread uniformly over both', () => {
    const t = [
      [0.5, 0, 0.5, 0],
      [0, 1, 0, 0],
      [0.5, 0, 0.5, 0],
      [0, 0, 0, 1],
    ];
    const want = (softCe(S, t) + softCe(transpose(S), t)) / 2;
    const labels = tf.tensor1d([4, 1, 4, 2], 'int32');
    const { rows, cols } = contrastiveTargets({ labels }, 4);
    expect(Array.from(rows.dataSync())).toEqual(t.flat());
    expect(Array.from(cols.dataSync())).toEqual(t.flat());
    expect(contrastiveLoss().main(tf.tensor2d(S), { labels }).dataSync()[0]).toBeCloseTo(want, 5);
  });

  it('identical captions (equal similarity columns): shared and one-hot targets give the same loss and gradient', () => {
    // Why the grouping is about different captions of one class, not about exact duplicates:
    // with tied columns CE is linear in the target and the tied probabilities are equal.
    const tied = S.map((r) => [r[0], r[1], r[0], r[3]]);
    const tiedRows = [tied[0], tied[1], tied[0].map((v, j) => v + (j === 1 ? 0.3 : 0)), tied[3]];
    const lossAndGrad = (labels: number[]) => {
      const x = tf.tensor2d(tiedRows);
      const f = (s: tf.Tensor) => contrastiveLoss().main(s, { labels: tf.tensor1d(labels, 'int32') });
      const { value, grad } = tf.valueAndGrad(f)(x);
      return { value: value.dataSync()[0], grad: Array.from(grad.dataSync()) };
    };
    const oneHot = lossAndGrad([0, 1, 2, 3]);
    const grouped = lossAndGrad([0, 1, 0, 3]);
    expect(grouped.value).toBeCloseTo(oneHot.value, 5);
    // The gradient reaching each pair of tied entries (what the text embedding sees) is the same.
    const summed = (g: number[]) => [0, 1, 2, 3].map((i) => g[i * 4] + g[i * 4 + 2]);
    summed(grouped.grad).forEach((v, i) => expect(v).toBeCloseTo(summed(oneHot.grad)[i], 5));
  });

  it('soft targets: rows as given, columns their transpose renormalised per text', () => {
    const soft = [
      [0.6, 0.4, 0, 0],
      [0.2, 0.8, 0, 0],
      [0, 0, 1, 0],
      [0, 0, 0.5, 0.5],
    ];
    const colT = transpose(soft).map((r) => r.map((v) => v / r.reduce((a, b) => a + b, 0)));
    const want = (softCe(S, soft) + softCe(transpose(S), colT)) / 2;
    expect(contrastiveLoss().main(tf.tensor2d(S), { soft: tf.tensor2d(soft) }).dataSync()[0]).toBeCloseTo(want, 5);
  });

  it('errors name the mismatch', () => {
    expect(() => contrastiveTargets({ labels: tf.tensor1d([0, 1], 'int32') }, 3)).toThrow(/2 caption groups for a 3 x 3/);
    expect(() => contrastiveTargets({ soft: tf.zeros([3, 2]) as tf.Tensor2D }, 3)).toThrow(/\[3, 3\]/);
  });
});
