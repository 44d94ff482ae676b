/**
 * FT-CLIP: the hf-tiny CLIPModel checkpoint loaded as HF CLIPForImageClassification. The fixture
 * has no classifier reference, so the vision tower is checked against what it does have: its
 * last hidden state, pooled at CLS through post_layernorm and visual_projection (both from the
 * checkpoint file), reproduces PyTorch's logits_per_image, with and without the fixture's token
 * removal. The head (mean of the patch tokens, then Linear) is checked against a computation on
 * host arrays; save -> load, transformers' folder layout, MaskSub gradients and errors.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  FileFormatError,
  OptionError,
  buildFromConfig,
  layerNorm,
  linear,
  loadPretrained,
  readSafetensors,
  saveModel,
  tf,
  toFloat32,
  withMaskSub,
  type ModelInputs,
  type TensorMap,
} from '@masksub/core';
import { describeShared, fixturePath } from '../../core/src/testing/shared.js';
import { maxAbsDiff, quiet, readReference, referenceTensor, referenceValues } from '../../core/src/testing/parity.js';
import { CLIP_CLASSIFIER_ARCHITECTURE, ClipModel, ClipVisionClassifier } from './index.js';

const asClassifier = { ...quiet, architecture: CLIP_CLASSIFIER_ARCHITECTURE };

describeShared('fixtures/hf-tiny/clip', 'FT-CLIP: a CLIPModel checkpoint as CLIPForImageClassification', () => {
  let classifier: ClipVisionClassifier;
  let clip: ClipModel;
  let checkpoint: TensorMap;
  let ref: TensorMap;
  let inputs: ModelInputs;
  const tmp = mkdtempSync(join(tmpdir(), 'masksub-ftclip-'));

  beforeAll(async () => {
    await tf.setBackend('cpu');
    const loaded = await loadPretrained(fixturePath('clip'), { ...asClassifier, numLabels: 5, seed: 3 });
    expect(loaded.model).toBeInstanceOf(ClipVisionClassifier);
    // Only the new head is created; the text tower and projections are skipped, not reported.
    expect(loaded.created.sort()).toEqual(['classifier.bias', 'classifier.weight']);
    classifier = loaded.model as ClipVisionClassifier;
    clip = (await loadPretrained(fixturePath('clip'), quiet)).model as ClipModel;
    checkpoint = readSafetensors(fixturePath('clip', 'model.safetensors'));
    ref = readReference('clip');
    inputs = { pixel_values: referenceTensor(ref, 'input.pixel_values') };
  });
  afterAll(() => {
    classifier?.dispose();
    clip?.dispose();
    tf.dispose(Object.values(inputs ?? {}));
    rmSync(tmp, { recursive: true, force: true });
  });

  it('has the vision tower of the checkpoint, tensor for tensor, and nothing of the text tower', () => {
    const exported = classifier.params.export();
    const vision = [...checkpoint.keys()].filter((n) => n.startsWith('vision_model.'));
    expect([...exported.keys()].sort()).toEqual([...vision, 'classifier.bias', 'classifier.weight'].sort());
    for (const name of vision) expect(maxAbsDiff(exported.get(name)!.data as Float32Array, toFloat32(checkpoint.get(name)!)), name).toBe(0);
    expect(exported.get('classifier.weight')!.shape).toEqual([5, 32]);
    expect(classifier.numClasses).toBe(5);
  });

  // CLS -> post_layernorm -> visual_projection with the file's tensors, against PyTorch's
  // similarity (text embeddings from CLIPModel, whose parity is established in parity.test.ts).
  const similarityFromTower = (keepIndices?: tf.Tensor) =>
    tf.tidy(() => {
      const h = classifier.lastHiddenState(inputs, keepIndices ? { keepIndices } : {});
      const [b, , d] = h.shape;
      const host = (name: string) => tf.tensor(toFloat32(checkpoint.get(name)!), checkpoint.get(name)!.shape);
      const pooled = layerNorm(tf.reshape(tf.slice(h, [0, 0, 0], [b, 1, d]), [b, d]), host('vision_model.post_layernorm.weight'), host('vision_model.post_layernorm.bias'), 1e-5);
      const image = tf.matMul(pooled, host('visual_projection.weight'), false, true);
      const text = clip.textFeatures({ input_ids: referenceTensor(ref, 'input.input_ids', 'int32'), attention_mask: referenceTensor(ref, 'input.attention_mask', 'int32') });
      return clip.similarity(image, text).dataSync() as Float32Array;
    });

  it("the classifier's tower reproduces PyTorch's vision tower (logits_per_image within 1e-4)", () => {
    expect(maxAbsDiff(similarityFromTower(), referenceValues(ref, 'hf_logits_per_image'))).toBeLessThan(1e-4);
  });

  it("with the fixture's kept patches it reproduces PyTorch's token-removed tower (sub logits within 1e-4)", () => {
    const keep = referenceTensor(ref, 'input.keep_indices', 'int32');
    expect(maxAbsDiff(similarityFromTower(keep), referenceValues(ref, 'sub_logits_per_image'))).toBeLessThan(1e-4);
    keep.dispose();
  });

  it('logits = classifier(mean of the patch tokens of last_hidden_state), no post_layernorm (transformers)', () => {
    const h = classifier.lastHiddenState(inputs);
    const [b, t, d] = h.shape;
    const hd = h.dataSync();
    const w = classifier.params.export().get('classifier.weight')!.data as Float32Array; // [5, d]
    const bias = classifier.params.export().get('classifier.bias')!.data as Float32Array;
    const expected = new Float32Array(b * 5);
    for (let i = 0; i < b; i++) {
      const mean = new Float64Array(d);
      for (let k = 1; k < t; k++) for (let j = 0; j < d; j++) mean[j] += hd[(i * t + k) * d + j] / (t - 1);
      for (let c = 0; c < 5; c++) {
        let s = bias[c];
        for (let j = 0; j < d; j++) s += mean[j] * w[c * d + j];
        expected[i * 5 + c] = s;
      }
    }
    const logits = classifier.forward(inputs);
    expect(logits.shape).toEqual([4, 5]);
    expect(maxAbsDiff(logits.dataSync(), expected)).toBeLessThan(1e-5);
    tf.dispose([h, logits]);
  });

  it('MaskSub step with MAE token removal: finite losses and gradients for every parameter; sub pass pools 1 + K tokens', () => {
    const labels = tf.tensor1d([0, 1, 2, 4], 'int32');
    const before = tf.memory().numTensors;
    const r = withMaskSub(classifier, { ratio: 0.5, seed: 1 }).computeGradients({ inputs, targets: { labels } }, 0);
    expect(r.mask?.kind).toBe('token-removal');
    expect(r.mask?.kind === 'token-removal' && r.mask.keep).toBe(8); // 16 patches, half kept
    expect(Number.isFinite(r.lossMain) && Number.isFinite(r.lossSub)).toBe(true);
    expect(r.lossMain).toBeGreaterThan(0);
    expect(r.lossSub).toBeGreaterThan(0);
    // Every parameter on the path gets a gradient; post_layernorm is not on it (transformers pools
    // the patch tokens before it), so it gets none, as in PyTorch (grad None, skipped by AdamW).
    const onPath = [...classifier.params.trainable().keys()].filter((n) => !n.startsWith('vision_model.post_layernorm.'));
    expect([...r.grads.keys()].sort()).toEqual(onPath.sort());
    for (const [name, g] of r.grads) {
      const data = g.dataSync();
      expect(data.every(Number.isFinite), name).toBe(true);
    }
    // The classifier's gradient is non-zero (the head learns) and so is the tower's.
    const norm = (name: string) => tf.tidy(() => tf.norm(r.grads.get(name)!).dataSync()[0]);
    expect(norm('classifier.weight')).toBeGreaterThan(0);
    expect(norm('vision_model.embeddings.patch_embedding.weight')).toBeGreaterThan(0);
    tf.dispose([r.mainLogits, r.subLogits!, ...r.grads.values()]);
    expect(tf.memory().numTensors).toBe(before);
    labels.dispose();
  });

  it('save -> load: a transformers CLIPForImageClassification folder that loads back to identical logits', async () => {
    const dir = join(tmp, 'ft-clip');
    saveModel(classifier, dir);
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(config.architectures).toEqual(['CLIPForImageClassification']);
    expect(config.model_type).toBe('clip');
    expect(config.num_labels).toBe(5);
    expect(config.vision_config).toEqual(JSON.parse(readFileSync(fixturePath('clip', 'config.json'), 'utf8')).vision_config);
    const saved = readSafetensors(join(dir, 'model.safetensors'));
    expect([...saved.keys()].some((n) => n.startsWith('text_model.') || n.endsWith('_projection.weight') || n === 'logit_scale')).toBe(false);
    expect(saved.get('classifier.weight')!.shape).toEqual([5, 32]); // PyTorch Linear [out, in]
    // Loading the folder needs no option: config.json names the class.
    const back = await loadPretrained(dir, quiet);
    expect(back.model).toBeInstanceOf(ClipVisionClassifier);
    expect(back.created).toEqual([]);
    const a = classifier.forward(inputs);
    const b = back.model.forward(inputs);
    expect(maxAbsDiff(a.dataSync(), b.dataSync())).toBe(0);
    tf.dispose([a, b]);
    back.model.dispose();
    // Fine-tuning the saved classifier to another label count re-initialises only the head.
    const relabelled = await loadPretrained(dir, { ...quiet, numLabels: 3 });
    expect(relabelled.created.sort()).toEqual(['classifier.bias', 'classifier.weight']);
    expect(relabelled.model.numClasses).toBe(3);
    relabelled.model.dispose();
  });

  it('errors: a class the adapter does not build; a CLIPModel checkpoint as classifier without num_labels', async () => {
    await expect(loadPretrained(fixturePath('clip'), { ...quiet, architecture: 'CLIPTextModel' })).rejects.toThrow(OptionError);
    await expect(loadPretrained(fixturePath('clip'), { ...quiet, architecture: 'CLIPTextModel' })).rejects.toThrow(/CLIPModel, CLIPForImageClassification, not 'CLIPTextModel'/);
    await expect(loadPretrained(fixturePath('clip'), asClassifier)).rejects.toThrow(FileFormatError);
    await expect(loadPretrained(fixturePath('clip'), asClassifier)).rejects.toThrow(/CLIPForImageClassification needs 'num_labels'/);
  });
});

describe('FT-CLIP from a config.json (no pretrained weights)', () => {
  it('buildFromConfig with the architecture builds the classifier; keeping every patch is the main pass', async () => {
    await tf.setBackend('cpu');
    const config = {
      model_type: 'clip',
      num_labels: 4,
      vision_config: { image_size: 16, patch_size: 4, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32 },
    };
    const { model } = buildFromConfig(config, 0, { architecture: CLIP_CLASSIFIER_ARCHITECTURE });
    expect(model).toBeInstanceOf(ClipVisionClassifier);
    expect(model.config.architectures).toEqual(['CLIPForImageClassification']);
    const x = tf.randomNormal([2, 3, 16, 16], 0, 1, 'float32', 4);
    const all = tf.tensor2d(Int32Array.from({ length: 32 }, (_, i) => i % 16), [2, 16], 'int32');
    const main = model.forward({ pixel_values: x });
    const kept = model.forward({ pixel_values: x }, { keepIndices: all });
    expect(main.shape).toEqual([2, 4]);
    expect(maxAbsDiff(main.dataSync(), kept.dataSync())).toBeLessThan(1e-5);
    expect(() => model.forward({ input_ids: x })).toThrow(/pixel_values/);
    expect(() => model.forward({ pixel_values: tf.zeros([1, 3, 8, 8]) })).toThrow(/\[B, 3, 16, 16\]/);
    tf.dispose([x, all, main, kept]);
    model.dispose();
  });
});
