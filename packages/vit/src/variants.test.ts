/** DropSub / PathSub on ViT, DeiT's distillation token, and the MAE sub pass costing about half. */
import { describe, expect, it } from 'vitest';
import { Rng, tf, withMaskSub } from '@masksub/core';
import { ViTModel } from './index.js';

const tiny = { model_type: 'vit', image_size: 16, patch_size: 4, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 32, num_labels: 5 };

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

describe('ViT sub-pass variants', () => {
  const model = new ViTModel(tiny, { rng: new Rng(3) });
  const x = tf.randomNormal([3, 3, 16, 16], 0, 1, 'float32', 2);
  const labels = tf.tensor1d([0, 1, 4], 'int32');
  const batch = { inputs: { pixel_values: x }, targets: { labels } };

  for (const variant of ['dropsub', 'pathsub'] as const) {
    it(`${variant}: the sub pass is stochastic, the main pass deterministic`, async () => {
      await tf.setBackend('cpu');
      const a = withMaskSub(model, { variant, ratio: 0.5, seed: 1 }).computeGradients(batch);
      const b = withMaskSub(model, { variant, ratio: 0.5, seed: 2 }).computeGradients(batch);
      expect(maxAbsDiff(a.mainLogits, b.mainLogits)).toBe(0);
      expect(maxAbsDiff(a.subLogits!, a.mainLogits)).toBeGreaterThan(1e-4);
      expect(maxAbsDiff(a.subLogits!, b.subLogits!)).toBeGreaterThan(1e-4);
      expect(a.mask?.kind).toBe(variant === 'dropsub' ? 'dropout' : 'drop-path');
      // Same seed, same noise: reproducible.
      const c = withMaskSub(model, { variant, ratio: 0.5, seed: 1 }).computeGradients(batch);
      expect(maxAbsDiff(a.subLogits!, c.subLogits!)).toBe(0);
      tf.dispose([a, b, c].flatMap((r) => [r.mainLogits, r.subLogits!, ...r.grads.values()]));
    });
  }

  it("the model's own dropout draws new masks every step, reproducibly from the trainer's seed", async () => {
    await tf.setBackend('cpu');
    const noisy = new ViTModel({ ...tiny, hidden_dropout_prob: 0.3 }, { rng: new Rng(3) });
    const t1 = withMaskSub(noisy, { ratio: 0.5, seed: 1 });
    const first = t1.computeGradients(batch, 0);
    const second = t1.computeGradients(batch, 1);
    // Same weights and batch: only the dropout masks can differ, in both passes.
    expect(maxAbsDiff(first.mainLogits, second.mainLogits)).toBeGreaterThan(1e-4);
    const again = withMaskSub(noisy, { ratio: 0.5, seed: 1 }).computeGradients(batch, 0);
    expect(maxAbsDiff(first.mainLogits, again.mainLogits)).toBe(0);
    expect(maxAbsDiff(first.subLogits!, again.subLogits!)).toBe(0);
    tf.dispose([first, second, again].flatMap((r) => [r.mainLogits, r.subLogits!, ...r.grads.values()]));
    noisy.dispose();
  });

  it('token removal runs the encoder on 1 + K tokens', () => {
    const mask = model.dropOperator('token-removal').sample({ pixel_values: x }, 0.75, new Rng(0));
    expect(mask.kind === 'token-removal' && mask.keep).toBe(4);
    const view = model.dropOperator('token-removal').apply({ pixel_values: x }, mask);
    const prof = tf.tidy(() => model.forward(view.inputs, view.forward));
    expect(prof.shape).toEqual([3, 5]);
    tf.dispose([prof, view.forward.keepIndices!]);
  });

  it('rejects ratios outside [0, 1) and unknown variants, naming the option', () => {
    expect(() => withMaskSub(model, { ratio: 1 })).toThrow(/ratio/);
    expect(() => withMaskSub(model, { variant: 'maskedsub' as 'masksub' })).toThrow(/variant/);
    expect(() => model.dropOperator('token-masking')).toThrow(/drop/);
  });
});

describe('DeiT', () => {
  it('has a distillation token kept in the sub pass, and hub names with the deit prefix', async () => {
    await tf.setBackend('cpu');
    const deit = new ViTModel({ ...tiny, model_type: 'deit' });
    const names = [...deit.params.specs.keys()];
    expect(names).toContain('deit.embeddings.distillation_token');
    expect(deit.params.specs.get('deit.embeddings.position_embeddings')!.shape).toEqual([1, 16 + 2, 16]);
    const x = tf.randomNormal([2, 3, 16, 16]);
    const r = withMaskSub(deit).computeGradients({ inputs: { pixel_values: x }, targets: { labels: tf.tensor1d([1, 2], 'int32') } });
    expect(r.subLogits!.shape).toEqual([2, 5]);
    expect(r.grads.has('deit.embeddings.distillation_token')).toBe(true);
    tf.dispose([x, r.mainLogits, r.subLogits!, ...r.grads.values()]);
    deit.dispose();
  });
});
