/**
 * Parity with PyTorch + transformers on the hf-tiny Swin fixture: logits, both MaskSub loss halves
 * and every parameter gradient (mask token and relative position bias tables included), with the
 * fixture's bool_masked_pos replayed through the mask-token drop operator, on cpu and wasm.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { initBackend, internalShape, readSafetensors, tf, toFloat32, toInternal, withMaskSub, type DropMask, type HostTensor, type TensorMap } from '@masksub/core';
import { describeShared, fixturePath } from '../../core/src/testing/shared.js';
import { SwinModel } from './index.js';

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function maxAbsOf(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

for (const backend of ['cpu', 'wasm'] as const)
describeShared('fixtures/hf-tiny/swin', `Swin parity with PyTorch (hf-tiny) on ${backend}`, () => {
  let model: SwinModel;
  let ref: TensorMap;
  let pixels: tf.Tensor4D;
  let labels: tf.Tensor1D;
  let mask: DropMask;

  const get = (name: string): HostTensor => {
    const t = ref.get(name);
    if (!t) throw new Error(`reference lacks ${name}`);
    return t;
  };

  beforeAll(async () => {
    await initBackend({ prefer: backend, log: () => {} });
    expect(tf.getBackend()).toBe(backend);
    const config = JSON.parse(readFileSync(fixturePath('swin', 'config.json'), 'utf8'));
    model = new SwinModel(config);
    const { created } = model.params.load(readSafetensors(fixturePath('swin', 'model.safetensors')), 'swin/model.safetensors');
    expect(created).toEqual(['swin.embeddings.mask_token']);
    ref = readSafetensors(fixturePath('swin', 'reference.safetensors'));
    // The reference drew its own mask token (pretrained Swin has none).
    const token = get('param.swin.embeddings.mask_token');
    const spec = model.params.specs.get('swin.embeddings.mask_token')!;
    model.params.get('swin.embeddings.mask_token').assign(tf.tensor(toInternal(spec, toFloat32(token)), internalShape(spec)));
    const px = get('input.pixel_values');
    pixels = tf.tensor4d(toFloat32(px), px.shape as [number, number, number, number]);
    labels = tf.tensor1d(toFloat32(get('input.labels')), 'int32');
    const masked = get('input.bool_masked_pos');
    mask = { kind: 'mask-token', batch: masked.shape[0], tokens: masked.shape[1], masked: Uint8Array.from(toFloat32(masked)) };
  });

  afterAll(() => {
    model?.dispose();
    pixels?.dispose();
    labels?.dispose();
  });

  it('main logits match within 1e-4', () => {
    const logits = model.forward({ pixel_values: pixels });
    expect(maxAbs(logits.dataSync(), toFloat32(get('ce.main_logits')))).toBeLessThan(1e-4);
    logits.dispose();
  });

  it('ce: sub logits, loss halves and every gradient match', () => {
    const trainer = withMaskSub(model, { loss: 'ce' });
    const before = tf.memory().numTensors;
    const r = trainer.computeGradients({ inputs: { pixel_values: pixels }, targets: { labels } }, 0, mask);
    expect(maxAbs(r.mainLogits.dataSync(), toFloat32(get('ce.main_logits')))).toBeLessThan(1e-4);
    expect(maxAbs(r.subLogits!.dataSync(), toFloat32(get('ce.sub_logits')))).toBeLessThan(1e-4);
    // The sub pass really saw a different input.
    expect(maxAbs(r.subLogits!.dataSync(), r.mainLogits.dataSync())).toBeGreaterThan(1e-3);
    expect(Math.abs(r.weights.main * r.lossMain - toFloat32(get('ce.loss_main'))[0])).toBeLessThan(1e-5);
    expect(Math.abs(r.weights.sub * r.lossSub - toFloat32(get('ce.loss_sub'))[0])).toBeLessThan(1e-5);
    const refGrads = [...ref.keys()].filter((k) => k.startsWith('ce.grad.'));
    // Every parameter of the model, the mask token included.
    expect(refGrads.length).toBe(model.params.specs.size);
    expect(refGrads).toContain('ce.grad.swin.embeddings.mask_token');
    expect(refGrads.filter((k) => k.endsWith('relative_position_bias_table')).length).toBe(4);
    for (const key of refGrads) {
      const name = key.slice('ce.grad.'.length);
      const g = r.grads.get(name);
      expect(g, `gradient of ${name}`).toBeDefined();
      const ours = model.params.gradientToCheckpoint(name, g!);
      const theirs = toFloat32(get(key));
      expect(ours.shape).toEqual(get(key).shape);
      // Relative to the reference's scale; the floor covers gradients that are analytically zero
      // (the key bias: softmax ignores a per-query constant), where both sides are float noise.
      const rel = maxAbs(ours.data as Float32Array, theirs) / Math.max(maxAbsOf(theirs), 1e-5);
      expect(rel, `gradient of ${name}`).toBeLessThan(1e-3);
    }
    for (const g of r.grads.values()) g.dispose();
    r.mainLogits.dispose();
    r.subLogits?.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('Swin input validation', () => {
  it('names the input, the expected shape and the mask shape', async () => {
    await tf.setBackend('cpu');
    const m = new SwinModel({ model_type: 'swin', image_size: 16, patch_size: 2, embed_dim: 8, depths: [1], num_heads: [2], window_size: 4, num_labels: 3 });
    expect(() => m.forward({ pixel_values: tf.zeros([2, 1, 16, 16]) })).toThrow(/pixel_values.*\[B, 3, H, W\]/);
    expect(() => m.forward({})).toThrow(/pixel_values/);
    expect(() => m.forward({ pixel_values: tf.zeros([2, 3, 16, 16]) }, { maskedPositions: tf.zeros([2, 60]) })).toThrow(/maskedPositions.*\[2, 64\]/);
    m.dispose();
  });
});
