/**
 * Zero-shot classification against a computation on host arrays: per-prompt text embeddings
 * normalised, averaged over templates, renormalised; image embeddings; cosine argmax / top-5;
 * CE of exp(logit_scale) * cosine. A tiny random CLIP with the real CLIP tokenizer, a tiny
 * in-memory image dataset with labels.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { OptionError, Rng, tf } from '@masksub/core';
import { ClipModel, loadClipTokenizer, tokenizeCaptions, type ClipTokenizer } from '@masksub/clip';
import { describeShared, sharedPath } from '../../../core/src/testing/shared.js';
import { explicitPreprocessSpec } from '../data/preprocess.js';
import type { ImageDataset, ImageSample } from '../data/types.js';
import { fillTemplate } from '../data/image-text.js';
import { evaluateZeroShot, isImageTextModel, requireImageTextModel, zeroShotWeights } from './zero-shot.js';

const CLASSES = ['cat', 'dog', 'bird', 'ship', 'truck', 'frog', 'horse'];
const TEMPLATES = ['a photo of a {}.', 'a blurry photo of the {}.', 'itap of a {}.'];
const SIZE = 16;

function tinyClip(eos: number): ClipModel {
  return new ClipModel(
    {
      model_type: 'clip',
      projection_dim: 16,
      text_config: { vocab_size: 49408, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 16, eos_token_id: eos },
      vision_config: { image_size: SIZE, patch_size: 4, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32 },
    },
    { rng: new Rng(11) },
  );
}

function images(n: number): ImageSample[] {
  const rng = new Rng(5);
  return Array.from({ length: n }, (_, i) => ({
    pixels: Uint8Array.from({ length: SIZE * SIZE * 3 }, () => Math.floor(rng.next() * 256)),
    height: SIZE,
    width: SIZE,
    channels: 3 as const,
    label: i % CLASSES.length,
  }));
}

function memoryDataset(samples: ImageSample[]): ImageDataset {
  return {
    kind: 'map',
    size: samples.length,
    numClasses: CLASSES.length,
    description: 'memory',
    raw: async (i) => ({ kind: 'decoded', key: `img_${i}`, ...samples[i] }),
    get: async (i) => samples[i],
  };
}

/** HWC uint8 -> normalised CHW, (v / 255 - 0.5) / 0.5. */
function chw(s: ImageSample): Float32Array {
  const out = new Float32Array(3 * SIZE * SIZE);
  for (let c = 0; c < 3; c++) for (let p = 0; p < SIZE * SIZE; p++) out[c * SIZE * SIZE + p] = (s.pixels[p * 3 + c] / 255 - 0.5) / 0.5;
  return out;
}

const norm = (v: number[]) => {
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
};

describeShared('data/tokenizers/clip', 'zero-shot classification', () => {
  let tokenizer: ClipTokenizer;
  let model: ClipModel;
  beforeAll(async () => {
    await tf.setBackend('cpu');
    tokenizer = await loadClipTokenizer(sharedPath('data/tokenizers/clip'));
    model = tinyClip(tokenizer.eosTokenId);
  });
  const encode = (captions: readonly string[]) => ({ ...tokenizeCaptions(tokenizer, captions, { maxLength: 16 }) });

  it('class embeddings: unit prompt embeddings averaged over templates and renormalised', () => {
    const w = zeroShotWeights(model, CLASSES, TEMPLATES, encode);
    expect(w.shape).toEqual([CLASSES.length, 16]);
    const got = w.arraySync();
    CLASSES.forEach((name, c) => {
      const sum = new Array(16).fill(0);
      for (const t of TEMPLATES) {
        const inputs = encode([fillTemplate(t, name)]);
        const e = norm(Array.from(model.textFeatures(inputs).dataSync()));
        e.forEach((v, j) => (sum[j] += v / TEMPLATES.length));
        tf.dispose(Object.values(inputs));
      }
      norm(sum).forEach((v, j) => expect(got[c][j]).toBeCloseTo(v, 5));
    });
    w.dispose();
  });

  it('top-1 / top-5 and loss equal an independent computation over the dataset', async () => {
    const samples = images(20);
    const w = zeroShotWeights(model, CLASSES, TEMPLATES, encode);
    const preprocess = explicitPreprocessSpec({ size: SIZE, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
    const r = await evaluateZeroShot(model, memoryDataset(samples), preprocess, w, 6);
    // Independent: one image at a time, cosine and ranking in JS.
    const classEmb = w.arraySync();
    const scale = Math.exp(model.params.get('logit_scale').dataSync()[0]);
    let h1 = 0;
    let h5 = 0;
    let loss = 0;
    for (const s of samples) {
      const img = norm(Array.from(model.imageFeatures({ pixel_values: tf.tensor4d(chw(s), [1, 3, SIZE, SIZE]) }).dataSync()));
      const sims = classEmb.map((c) => scale * c.reduce((a, v, j) => a + v * img[j], 0));
      const order = sims.map((v, c) => [v, c]).sort((a, b) => b[0] - a[0]).map(([, c]) => c);
      if (order[0] === s.label) h1++;
      if (order.slice(0, 5).includes(s.label)) h5++;
      const m = Math.max(...sims);
      loss += Math.log(sims.reduce((a, v) => a + Math.exp(v - m), 0)) + m - sims[s.label];
    }
    expect(r.count).toBe(20);
    expect(r.metrics.top1).toBeCloseTo((100 * h1) / 20, 6);
    expect(r.metrics.top5).toBeCloseTo((100 * h5) / 20, 6);
    expect(r.loss).toBeCloseTo(loss / 20, 4);
    // A random model is not perfect here, so the check is not vacuous.
    expect(r.metrics.top5).toBeGreaterThan(r.metrics.top1);
    expect(r.metrics.top1).toBeLessThan(100);
    w.dispose();
  });

  it('a label the class names do not cover names the sample and the class file; a model without a text tower is refused', async () => {
    const w = zeroShotWeights(model, CLASSES.slice(0, 3), TEMPLATES, encode);
    const preprocess = explicitPreprocessSpec({ size: SIZE, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
    await expect(evaluateZeroShot(model, memoryDataset(images(6)), preprocess, w, 6, 'classes.txt')).rejects.toThrow(/sample 'img_3' of memory has label 3, but classes.txt names 3 classes/);
    w.dispose();
    expect(isImageTextModel(model)).toBe(true);
    const classifierLike = { architecture: 'vit', config: {}, numClasses: 10, params: model.params, forward: () => tf.zeros([1]), dispose: () => undefined };
    expect(() => requireImageTextModel(classifierLike)).toThrow(OptionError);
  });
});

describe('zero-shot arguments', () => {
  it('needs classes and templates', () => {
    const fake = { textFeatures: () => tf.zeros([1, 2]) } as unknown as Parameters<typeof zeroShotWeights>[0];
    expect(() => zeroShotWeights(fake, [], ['{}'], () => ({}))).toThrow(/no class names/);
    expect(() => zeroShotWeights(fake, ['a'], [], () => ({}))).toThrow(/no templates/);
  });
});
