/**
 * MaskSub training on CLIP: a few steps on synthetic image-caption pairs (captions tokenized by
 * the real CLIP tokenizer) lower both loss halves; and the sub-pass variants touch only the
 * image tower.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng, createOptimizer, tf, withMaskSub, type ModelInputs } from '@masksub/core';
import { describeShared, sharedPath } from '../../core/src/testing/shared.js';
import { ClipModel, loadClipTokenizer, tokenizeCaptions } from './index.js';

const COLOURS: [string, [number, number, number]][] = [
  ['red', [1, 0, 0]],
  ['green', [0, 1, 0]],
  ['blue', [0, 0, 1]],
  ['yellow', [1, 1, 0]],
  ['purple', [0.5, 0, 0.5]],
  ['white', [1, 1, 1]],
];

function tinyClip(vocabSize: number, eosTokenId: number, seed = 0): ClipModel {
  return new ClipModel(
    {
      model_type: 'clip',
      projection_dim: 16,
      text_config: { vocab_size: vocabSize, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 12, eos_token_id: eosTokenId },
      vision_config: { image_size: 16, patch_size: 4, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32 },
    },
    { rng: new Rng(seed) },
  );
}

/** One image per colour: the colour, normalised, plus seeded noise, so a pair is learnable but not trivial. */
function colourImages(rng: Rng): tf.Tensor4D {
  const n = COLOURS.length;
  const data = new Float32Array(n * 3 * 16 * 16);
  COLOURS.forEach(([, rgb], b) => {
    for (let c = 0; c < 3; c++) for (let i = 0; i < 256; i++) data[(b * 3 + c) * 256 + i] = (rgb[c] - 0.5) / 0.25 + 0.5 * rng.normal();
  });
  return tf.tensor4d(data, [n, 3, 16, 16]);
}

/** Mean over images of softmax(logits_per_image)[i, i]: 1/B by chance. */
function matchedProbability(model: ClipModel, inputs: ModelInputs): number {
  return tf.tidy(() => {
    const probs = tf.softmax(model.forward(inputs));
    return tf.mean(tf.sum(tf.mul(probs, tf.eye(probs.shape[0])), 1)).dataSync()[0];
  });
}

describeShared('data/tokenizers/clip', 'CLIP MaskSub training on synthetic image-caption pairs', () => {
  it('a few MaskSub steps lower the main and the sub loss', async () => {
    await tf.setBackend('cpu');
    const tokenizer = await loadClipTokenizer(sharedPath('data/tokenizers/clip'));
    const captions = tokenizeCaptions(tokenizer, COLOURS.map(([name]) => `a photo of a ${name} square`), { maxLength: 12 });
    // A current config (eos_token_id = <|endoftext|>): pooled at the first EOS, not at padding.
    const model = tinyClip(49408, tokenizer.eosTokenId);
    const pixels = colourImages(new Rng(5));
    const pairs = tf.range(0, COLOURS.length, 1, 'int32') as tf.Tensor1D;
    const inputs: ModelInputs = { pixel_values: pixels, ...captions };
    const startMatched = matchedProbability(model, inputs);
    const trainer = withMaskSub(model, { loss: 'contrastive', ratio: 0.5, seed: 1 });
    const optimizer = createOptimizer({ kind: 'adamw', weightDecay: 0 }, model.params.trainable());
    const before = tf.memory().numTensors;
    const history: { main: number; sub: number }[] = [];
    // Each AdamW step updates the 49,408-row token table on the pure-JS cpu backend (~0.3 s): few steps.
    const STEPS = 15;
    const LR = 3e-3;
    for (let step = 0; step < STEPS; step++) {
      const r = trainer.step({ inputs, targets: { labels: pairs } }, optimizer, LR, step);
      expect(r.ratio).toBe(0.5);
      history.push({ main: r.lossMain, sub: r.lossSub });
    }
    // Only the optimizer's slots were added (created on the first step), no per-step leaks.
    const afterFirst = tf.memory().numTensors;
    trainer.step({ inputs, targets: { labels: pairs } }, optimizer, LR, STEPS);
    expect(tf.memory().numTensors).toBe(afterFirst);
    // ...and the optimizer's slots are all it holds besides the batch.
    expect(afterFirst - before).toBeLessThanOrEqual(3 * model.params.trainable().size);
    const first = history[0];
    const last = history[history.length - 1];
    expect(first.main).toBeGreaterThan(Math.log(COLOURS.length) * 0.9);
    // The main loss falls from about log(6); the sub loss's target sharpens meanwhile (it is the
    // main model's softmax), so the optimised total is what must fall with it.
    expect(last.main).toBeLessThan(first.main * 0.6);
    expect((last.main + last.sub) / 2).toBeLessThan((first.main + first.sub) / 2);
    // In eval mode the matching caption now takes most of each image's probability.
    const after = matchedProbability(model, inputs);
    expect(after).toBeGreaterThan(2 * startMatched);
    expect(after).toBeGreaterThan(0.4);
    tf.dispose([pixels, pairs, captions.input_ids, captions.attention_mask]);
    optimizer.dispose();
    model.dispose();
  });
});

describe('CLIP sub-pass variants', () => {
  let inputs: ModelInputs;
  let batch: { inputs: ModelInputs; targets: { labels: tf.Tensor1D } };
  beforeAll(async () => {
    await tf.setBackend('cpu');
    inputs = { pixel_values: tf.randomNormal([3, 3, 16, 16], 0, 1, 'float32', 2), input_ids: tf.tensor2d([[1, 5, 7, 9], [1, 8, 6, 9], [1, 4, 4, 9]], [3, 4], 'int32') };
    batch = { inputs, targets: { labels: tf.range(0, 3, 1, 'int32') as tf.Tensor1D } };
  });
  afterAll(() => tf.dispose([...Object.values(inputs), batch.targets.labels]));

  for (const variant of ['dropsub', 'pathsub'] as const) {
    it(`${variant}: the sub pass is stochastic on the images, the texts are embedded as in the main pass`, async () => {
      await tf.setBackend('cpu');
      const model = tinyClip(10, 9, 3);
      const a = withMaskSub(model, { variant, loss: 'contrastive', ratio: 0.5, seed: 1 }).computeGradients(batch);
      const b = withMaskSub(model, { variant, loss: 'contrastive', ratio: 0.5, seed: 2 }).computeGradients(batch);
      const diff = (x: tf.Tensor, y: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(x, y))).dataSync()[0]);
      expect(diff(a.mainLogits, b.mainLogits)).toBe(0);
      expect(diff(a.subLogits!, a.mainLogits)).toBeGreaterThan(1e-4);
      expect(diff(a.subLogits!, b.subLogits!)).toBeGreaterThan(1e-4);
      // As the PathSub operator passes it: the rate on every block (the official uniform rule).
      const view = { ...(a.mask?.kind === 'dropout' ? { dropoutRate: 0.5 } : { dropPathRate: 0.5, dropPathRule: 'uniform' as const }), seed: 7, training: true };
      const textMain = model.textFeatures(inputs, { training: true });
      const textSub = model.textFeatures(inputs, view);
      expect(diff(textMain, textSub)).toBe(0);
      const imageMain = model.imageFeatures(inputs, { training: true });
      const imageSub = model.imageFeatures(inputs, view);
      expect(diff(imageMain, imageSub)).toBeGreaterThan(1e-4);
      tf.dispose([a, b].flatMap((r) => [r.mainLogits, r.subLogits!, ...r.grads.values()]));
      tf.dispose([textMain, textSub, imageMain, imageSub]);
      model.dispose();
    });
  }

  it('token removal runs the image encoder on 1 + K tokens; zero-fill changes only the pixels', async () => {
    await tf.setBackend('cpu');
    const model = tinyClip(10, 9, 3);
    const op = model.dropOperator('token-removal');
    const mask = op.sample(inputs, 0.75, new Rng(0));
    expect(mask.kind === 'token-removal' && mask.keep).toBe(4);
    const view = op.apply(inputs, mask);
    const sub = model.forward(view.inputs, view.forward);
    const main = model.forward(inputs);
    expect(sub.shape).toEqual([3, 3]);
    expect(tf.tidy(() => tf.max(tf.abs(tf.sub(sub, main))).dataSync()[0])).toBeGreaterThan(1e-4);
    // Keeping every patch is the main pass.
    const everyPatch = tf.tensor2d(Int32Array.from({ length: 48 }, (_, i) => i % 16), [3, 16], 'int32');
    const all = model.forward(inputs, { keepIndices: everyPatch });
    expect(tf.tidy(() => tf.max(tf.abs(tf.sub(all, main))).dataSync()[0])).toBeLessThan(1e-5);
    const zf = model.dropOperator('zero-fill');
    expect(zf.kind).toBe('zero-fill');
    const r = withMaskSub(model, { loss: 'contrastive', drop: 'zero-fill' }).computeGradients(batch);
    expect(r.subLogits!.shape).toEqual([3, 3]);
    tf.dispose([sub, main, all, everyPatch, view.forward.keepIndices!, r.mainLogits, r.subLogits!, ...r.grads.values()]);
    model.dispose();
  });
});

describe('CLIP text tower computed once per MaskSub step (SharedBranch)', () => {
  let batch: { inputs: ModelInputs; targets: { labels: tf.Tensor1D } };
  beforeAll(async () => {
    await tf.setBackend('cpu');
    const inputs = {
      pixel_values: tf.randomNormal([4, 3, 16, 16], 0, 1, 'float32', 5),
      input_ids: tf.tensor2d([[1, 5, 7, 9], [1, 8, 6, 9], [1, 4, 4, 9], [1, 2, 3, 9]], [4, 4], 'int32'),
      attention_mask: tf.tensor2d([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]], [4, 4], 'int32'),
    };
    batch = { inputs, targets: { labels: tf.range(0, 4, 1, 'int32') as tf.Tensor1D } };
  });
  afterAll(() => tf.dispose([...Object.values(batch.inputs), batch.targets.labels]));

  const maxDiff = (x: tf.Tensor, y: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(x, y))).dataSync()[0]);
  const maxAbs = (x: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(x)).dataSync()[0]);

  for (const [variant, drop] of [['masksub', 'token-removal'], ['masksub', 'zero-fill'], ['dropsub', undefined], ['pathsub', undefined]] as const) {
    it(`${variant}${drop ? ` (${drop})` : ''}: the same losses, logits and gradients as two full passes`, async () => {
      await tf.setBackend('cpu');
      const model = tinyClip(10, 9, 4);
      const options = { variant, drop, loss: 'contrastive' as const, ratio: 0.5, seed: 3 };
      const once = withMaskSub(model, options).computeGradients(batch);
      const twice = withMaskSub(model, { ...options, shareBranch: false }).computeGradients(batch);
      expect(once.lossMain).toBeCloseTo(twice.lossMain, 5);
      expect(once.lossSub).toBeCloseTo(twice.lossSub, 5);
      expect(once.lossSub).toBeGreaterThan(0);
      expect(maxDiff(once.mainLogits, twice.mainLogits)).toBeLessThan(1e-5);
      expect(maxDiff(once.subLogits!, twice.subLogits!)).toBeLessThan(1e-5);
      expect([...once.grads.keys()].sort()).toEqual([...twice.grads.keys()].sort());
      // The text tower's parameters get the gradients of both losses, the vision tower's too.
      for (const name of ['text_model.embeddings.token_embedding.weight', 'text_model.encoder.layers.0.mlp.fc1.weight', 'text_projection.weight', 'vision_model.encoder.layers.0.self_attn.q_proj.weight', 'logit_scale']) {
        expect(once.grads.has(name), name).toBe(true);
      }
      for (const [name, g] of twice.grads) {
        const scale = Math.max(1e-3, maxAbs(g));
        expect(maxDiff(once.grads.get(name)!, g) / scale, name).toBeLessThan(1e-4);
      }
      tf.dispose([once, twice].flatMap((r) => [r.mainLogits, r.subLogits!, ...r.grads.values()]));
      model.dispose();
    });
  }

  it('a drop operator that changes the captions runs the text tower again in the sub pass', async () => {
    await tf.setBackend('cpu');
    const model = tinyClip(10, 9, 4);
    const padOp = model.dropOperator('zero-fill');
    // A custom operator: zero-fill on the images and the last caption token replaced by 0.
    const captionOp = {
      ...padOp,
      apply: (inputs: ModelInputs, mask: Parameters<typeof padOp.apply>[1]) => {
        const view = padOp.apply(inputs, mask);
        const ids = tf.tidy(() => tf.concat([tf.slice(inputs.input_ids!, [0, 0], [4, 3]), tf.zeros([4, 1], 'int32')], 1));
        return { ...view, inputs: { ...view.inputs, input_ids: ids } };
      },
    };
    const options = { drop: captionOp, loss: 'contrastive' as const, ratio: 0.5, seed: 3 };
    const once = withMaskSub(model, options).computeGradients(batch);
    const twice = withMaskSub(model, { ...options, shareBranch: false }).computeGradients(batch);
    expect(maxDiff(once.subLogits!, twice.subLogits!)).toBeLessThan(1e-5);
    for (const [name, g] of twice.grads) expect(maxDiff(once.grads.get(name)!, g) / Math.max(1e-3, maxAbs(g)), name).toBeLessThan(1e-4);
    tf.dispose([once, twice].flatMap((r) => [r.mainLogits, r.subLogits!, ...r.grads.values()]));
    model.dispose();
  });
});
