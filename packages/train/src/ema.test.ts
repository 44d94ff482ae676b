/** ModelEma: timm ModelEmaV2's update over parameters and buffers (batch-norm running statistics). */
import { describe, expect, it } from 'vitest';
import { Rng, tf } from '@masksub/core';
import { ResNetModel } from '@masksub/resnet';
import { ModelEma, emaMetrics } from './ema.js';

describe('ModelEma', () => {
  it('moves every tensor, buffers included, by ema = decay * ema + (1 - decay) * w, and swaps in without touching the live weights', async () => {
    await tf.setBackend('cpu');
    const m = new ResNetModel({ model_type: 'resnet', embedding_size: 8, hidden_sizes: [8, 16], depths: [1, 1], layer_type: 'basic', num_labels: 5 }, { rng: new Rng(2) });
    const vars = m.params.variables;
    const stat = 'resnet.embedder.embedder.normalization.running_mean';
    expect(m.params.trainable().has(stat)).toBe(false);
    const ema = new ModelEma(0.75, vars);
    expect([...ema.tensors.keys()]).toEqual([...vars.keys()]);
    const before = new Map([...vars].map(([n, v]) => [n, Float32Array.from(v.dataSync())]));
    // A training pass moves the running statistics; pretend an optimizer moved every weight by +1.
    const x = tf.randomNormal([2, 3, 16, 16], 0, 1, 'float32', 3);
    tf.dispose(m.forward({ pixel_values: x }, { training: true }));
    for (const v of m.params.trainable().values()) v.assign(tf.add(v, 1));
    ema.update();
    for (const [name, v] of vars) {
      const w = v.dataSync();
      const e = ema.tensors.get(name)!.dataSync();
      const b = before.get(name)!;
      e.forEach((value, i) => expect(value).toBeCloseTo(0.75 * b[i] + 0.25 * w[i], 5));
    }
    expect(Array.from(ema.tensors.get(stat)!.dataSync())).not.toEqual(Array.from(before.get(stat)!));
    // swapIn: the model computes with the EMA weights inside, its own outside.
    const live = tf.tidy(() => m.forward({ pixel_values: x }));
    const inside = await ema.swapIn(() => tf.tidy(() => m.forward({ pixel_values: x })));
    const after = tf.tidy(() => m.forward({ pixel_values: x }));
    expect(Array.from(after.dataSync())).toEqual(Array.from(live.dataSync()));
    expect(Array.from(inside.dataSync())).not.toEqual(Array.from(live.dataSync()));
    expect(() => new ModelEma(1, vars)).toThrow(/train\.ema_decay/);
    expect(emaMetrics({ top1: 50, loss: 1 })).toEqual({ ema_top1: 50, ema_loss: 1 });
    tf.dispose([x, live, inside, after]);
    ema.dispose();
    m.dispose();
  });
});
