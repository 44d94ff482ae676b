import { describe, expect, it } from 'vitest';
import { fromLayersModel } from './layers-model.js';
import { withMaskSub } from './masksub.js';
import { tf } from './tf.js';

describe('MaskSub on a plain tf.LayersModel (zero-fill)', () => {
  it('trains a tiny CNN with two passes and the sub pass sees zeroed squares', async () => {
    await tf.setBackend('cpu');
    const net = tf.sequential({
      layers: [
        tf.layers.conv2d({ inputShape: [16, 16, 3], filters: 4, kernelSize: 3, activation: 'relu' }),
        tf.layers.globalAveragePooling2d({}),
        tf.layers.dense({ units: 3 }),
      ],
    });
    const model = fromLayersModel(net, { patch: 8 });
    expect(model.numClasses).toBe(3);
    expect([...model.params.trainable().keys()].length).toBe(4);
    const x = tf.randomNormal([6, 16, 16, 3], 0, 1, 'float32', 1);
    const labels = tf.tensor1d([0, 1, 2, 0, 1, 2], 'int32');
    const trainer = withMaskSub(model, { seed: 3 });
    const r = trainer.computeGradients({ inputs: { pixel_values: x }, targets: { labels } });
    expect(r.mask?.kind).toBe('zero-fill');
    if (r.mask?.kind === 'zero-fill') {
      const kept = r.mask.pixelMask.reduce((a, b) => a + b, 0);
      expect(kept).toBe(6 * 16 * 16 * 0.5);
    }
    expect(r.lossSub).toBeGreaterThan(0);
    expect(r.grads.size).toBe(4);
    tf.dispose([...r.grads.values(), r.mainLogits, r.subLogits!]);
    // A few SGD steps lower the loss.
    const sgd = { step: (grads: Map<string, tf.Tensor>, lr: number) => {
      for (const [name, g] of grads) { const v = model.params.get(name); v.assign(tf.sub(v, tf.mul(g, lr))); }
    } };
    const first = trainer.step({ inputs: { pixel_values: x }, targets: { labels } }, sgd, 0.5, 0).lossMain;
    let last = first;
    for (let i = 1; i < 20; i++) last = trainer.step({ inputs: { pixel_values: x }, targets: { labels } }, sgd, 0.5, i).lossMain;
    expect(last).toBeLessThan(first);
    tf.dispose([x, labels]);
    model.dispose();
  });
});
