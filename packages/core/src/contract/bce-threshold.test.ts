import { describe, expect, it } from 'vitest';
import { tf } from '../tf.js';
import { withMaskSub } from '../masksub.js';
import { bceWithLogits, binaryCrossEntropyLoss, crossEntropyLoss, relaxedLoss } from './loss.js';

const value = (t: tf.Tensor) => Array.from(t.dataSync());

describe('BCE target threshold (issue 10 item 8)', () => {
  // A mixed target (mixup lam 0.7 of classes 0 and 2) and logits.
  const soft = () => tf.tensor2d([[0.7, 0, 0.3, 0]]);
  const logits = () => tf.tensor2d([[1.5, -0.5, 0.2, -2]]);

  it('timm target_threshold: the main target becomes target > t (soft without a threshold)', () => {
    const x = logits();
    const plain = binaryCrossEntropyLoss().main(x, { soft: soft() }).dataSync()[0];
    expect(plain).toBeCloseTo(bceWithLogits(x, soft()).dataSync()[0], 6);
    // t = 0.2: [0.7, 0, 0.3, 0] -> [1, 0, 1, 0]; t = 0.5 -> [1, 0, 0, 0]; t = 0 (DeiT's gt(0.0)) -> [1, 0, 1, 0].
    for (const [t, hard] of [[0.2, [1, 0, 1, 0]], [0.5, [1, 0, 0, 0]], [0, [1, 0, 1, 0]]] as const) {
      const got = binaryCrossEntropyLoss({ targetThreshold: t }).main(x, { soft: soft() }).dataSync()[0];
      expect(got).toBeCloseTo(bceWithLogits(x, tf.tensor2d([[...hard]])).dataSync()[0], 6);
      expect(got).not.toBeCloseTo(plain, 3);
    }
    // Smoothed one-hot labels (timm builds them first, then thresholds): eps 0.1 over 4 classes -> on 0.925, off 0.025.
    const fromLabels = binaryCrossEntropyLoss({ labelSmoothing: 0.1, targetThreshold: 0.05 }).main(x, { labels: tf.tensor1d([2], 'int32') }).dataSync()[0];
    expect(fromLabels).toBeCloseTo(bceWithLogits(x, tf.tensor2d([[0, 0, 1, 0]])).dataSync()[0], 6);
  });

  it("scope 'all' (RSB: the loss function of both passes) binarises the sub target; 'main' (DeiT-III) keeps it soft", () => {
    const main = tf.tensor2d([[2, -1, 0.1, -3]]); // sigmoid: 0.88, 0.27, 0.52, 0.05
    const all = binaryCrossEntropyLoss({ targetThreshold: 0.5 }).teacher(main);
    expect(value(all)).toEqual([1, 0, 1, 0]);
    const mainOnly = binaryCrossEntropyLoss({ targetThreshold: 0.5, thresholdScope: 'main' }).teacher(main);
    expect(value(mainOnly)).toEqual(value(tf.sigmoid(main)));
    expect(value(binaryCrossEntropyLoss().teacher(main))).toEqual(value(tf.sigmoid(main)));
  });

  it('refuses a threshold where there is no BCE target to binarise', () => {
    expect(() => crossEntropyLoss({ targetThreshold: 0.2 })).toThrow(/targetThreshold/);
    expect(() => relaxedLoss('contrastive', { targetThreshold: 0.2 })).toThrow(/targetThreshold/);
    expect(() => binaryCrossEntropyLoss({ targetThreshold: 1 })).toThrow(/targetThreshold.*\[0, 1\)/);
  });

  it('withMaskSub passes the threshold and its scope to the BCE loss', () => {
    const model = {
      architecture: 'toy',
      config: {},
      numClasses: 4,
      params: { trainable: () => new Map() },
      forward: () => tf.zeros([1, 4]),
      dispose: () => undefined,
    } as unknown as Parameters<typeof withMaskSub>[0];
    const t = withMaskSub(model, { variant: 'none', loss: 'bce', targetThreshold: 0.5, thresholdScope: 'main' });
    expect(value(t.loss.teacher(tf.tensor2d([[2, -1]])))).toEqual(value(tf.sigmoid(tf.tensor2d([[2, -1]]))));
    const got = t.loss.main(logits(), { soft: soft() }).dataSync()[0];
    expect(got).toBeCloseTo(bceWithLogits(logits(), tf.tensor2d([[1, 0, 0, 0]])).dataSync()[0], 6);
    expect(() => withMaskSub(model, { variant: 'none', loss: 'ce', targetThreshold: 0.5 })).toThrow(/targetThreshold/);
  });
});
