/** DropSub / PathSub on ViT, DeiT's distillation token, and the MAE sub pass costing about half. */
import { describe, expect, it } from 'vitest';
import { Rng, crossEntropyLoss, tf, withMaskSub } from '@masksub/core';
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

  it('DropSub drops where the official sub pass does: after the attention projection, the MLP activation and fc2, never the attention probabilities', async () => {
    await tf.setBackend('cpu');
    // On cpu a dropout is a GreaterEqual over a uniform draw of the dropped tensor's shape.
    const dropped = async (options: { training: boolean; dropoutRate?: number }) => {
      const prof = await tf.profile(() => tf.dispose(model.forward(batch.inputs, options)));
      return prof.kernels.filter((k) => k.name === 'GreaterEqual').map((k) => k.outputShapes[0].join('x'));
    };
    const tokens = (16 / 4) ** 2 + 1;
    const sub = await dropped({ training: true, dropoutRate: 0.3 });
    const perLayer = (rows: number) => [`3x${rows}x16`, `3x${rows}x32`, `3x${rows}x16`];
    // The last layer computes only the CLS row the head reads.
    expect(sub).toEqual([...perLayer(tokens), ...perLayer(1)]);
    expect(sub).not.toContain(`3x2x${tokens}x${tokens}`);
    // The main pass of a config without dropout draws nothing.
    expect(await dropped({ training: true })).toEqual([]);
  });

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

  // 64 px at patch 8: 2 x 2 mask-token blocks and 2 x 2 zero-fill squares of 32 px, so each drop kind drops something.
  const wide = new ViTModel({ ...tiny, image_size: 64, patch_size: 8 }, { rng: new Rng(5) });
  const wideBatch = { inputs: { pixel_values: tf.randomNormal([3, 3, 64, 64], 0, 1, 'float32', 4) }, targets: { labels } };
  for (const drop of ['token-removal', 'mask-token', 'zero-fill'] as const) {
    it(`masking (${drop}): one pass on the dropped view with the recipe loss, no clean pass`, async () => {
      await tf.setBackend('cpu');
      const model = wide;
      const batch = wideBatch;
      const x = batch.inputs.pixel_values;
      const r = withMaskSub(model, { variant: 'masking', drop, ratio: 0.5, seed: 4 }).computeGradients(batch);
      expect(r.subLogits).toBeNull();
      expect(r.weights).toEqual({ main: 1, sub: 0 });
      expect(r.mask?.kind).toBe(drop);
      // The logits are the model's on the dropped view (replayed from the returned mask) and the
      // loss is plain CE toward the labels.
      const view = model.dropOperator(drop).apply(batch.inputs, r.mask!);
      const expected = model.forward(view.inputs, { ...view.forward, training: true });
      expect(maxAbsDiff(r.mainLogits, expected)).toBeLessThan(1e-6);
      const ce = crossEntropyLoss().main(expected, batch.targets);
      expect(r.lossMain).toBeCloseTo(ce.dataSync()[0], 5);
      expect(r.loss).toBeCloseTo(r.lossMain, 6);
      const clean = model.forward(batch.inputs);
      expect(maxAbsDiff(clean, r.mainLogits)).toBeGreaterThan(1e-4);
      for (const t of Object.values(view.inputs)) if (t !== x) t.dispose();
      tf.dispose([expected, ce, clean, r.mainLogits, ...r.grads.values(), view.forward.keepIndices, view.forward.maskedPositions].filter((t) => t !== undefined));
    });
  }

  for (const variant of ['dropout-only', 'droppath-only'] as const) {
    it(`${variant}: one stochastic pass, a different one per seed`, async () => {
      await tf.setBackend('cpu');
      const a = withMaskSub(model, { variant, ratio: 0.5, seed: 1 }).computeGradients(batch);
      const b = withMaskSub(model, { variant, ratio: 0.5, seed: 2 }).computeGradients(batch);
      expect(a.subLogits).toBeNull();
      expect(a.mask?.kind).toBe(variant === 'dropout-only' ? 'dropout' : 'drop-path');
      expect(maxAbsDiff(a.mainLogits, b.mainLogits)).toBeGreaterThan(1e-4);
      expect(a.loss).toBeCloseTo(a.lossMain, 6);
      tf.dispose([a, b].flatMap((r) => [r.mainLogits, ...r.grads.values()]));
    });
  }

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
