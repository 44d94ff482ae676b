/**
 * Parity with PyTorch + transformers on the hf-tiny Swin fixture: logits, both MaskSub loss halves
 * and every parameter gradient (mask token and relative position bias tables included), with the
 * fixture's bool_masked_pos replayed through the mask-token drop operator, on cpu and wasm.
 */
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { internalShape, tf, toFloat32, toInternal, withMaskSub, type DropMask, type HostTensor, type TensorMap } from '@masksub/core';
import { describeShared } from '../../core/src/testing/shared.js';
import {
  disposeStep,
  expectGradientsMatch,
  expectStepMatches,
  loadParityFixture,
  maxAbsDiff,
  recipeKeys,
  referenceEntry,
  referenceMaskedTokens,
  referenceTensor,
} from '../../core/src/testing/parity.js';
import { SwinModel } from './index.js';

for (const backend of ['cpu', 'wasm'] as const)
describeShared('fixtures/hf-tiny/swin', `Swin parity with PyTorch (hf-tiny) on ${backend}`, () => {
  let model: SwinModel;
  let ref: TensorMap;
  let pixels: tf.Tensor4D;
  let labels: tf.Tensor1D;
  let mask: DropMask;

  const get = (name: string): HostTensor => referenceEntry(ref, name);

  beforeAll(async () => {
    const fixture = await loadParityFixture('swin', backend, (config) => new SwinModel(config));
    ({ model, ref } = fixture);
    expect(fixture.created).toEqual(['swin.embeddings.mask_token']);
    // The reference drew its own mask token (pretrained Swin has none).
    const token = get('param.swin.embeddings.mask_token');
    const spec = model.params.specs.get('swin.embeddings.mask_token')!;
    const value = tf.tensor(toInternal(spec, toFloat32(token)), internalShape(spec));
    model.params.get('swin.embeddings.mask_token').assign(value);
    value.dispose(); // the variable keeps its own reference
    pixels = referenceTensor<tf.Rank.R4>(ref, 'input.pixel_values');
    labels = referenceTensor<tf.Rank.R1>(ref, 'input.labels', 'int32');
    mask = referenceMaskedTokens(ref);
  });

  afterAll(() => {
    model?.dispose();
    pixels?.dispose();
    labels?.dispose();
  });

  it('main logits match within 1e-4', () => {
    const logits = model.forward({ pixel_values: pixels });
    expect(maxAbsDiff(logits.dataSync(), toFloat32(get('ce.main_logits')))).toBeLessThan(1e-4);
    logits.dispose();
  });

  it('ce: sub logits, loss halves and every gradient match', () => {
    const trainer = withMaskSub(model, { loss: 'ce' });
    const before = tf.memory().numTensors;
    const r = trainer.computeGradients({ inputs: { pixel_values: pixels }, targets: { labels } }, 0, mask);
    expectStepMatches(r, ref, recipeKeys('ce'));
    // The sub pass really saw a different input.
    expect(maxAbsDiff(r.subLogits!.dataSync(), r.mainLogits.dataSync())).toBeGreaterThan(1e-3);
    // Relative to the reference's scale, floored at 1e-5 (analytically zero key-bias gradients).
    const { names } = expectGradientsMatch(model, ref, 'ce.grad.', r.grads, { relTol: 1e-3 });
    // Every parameter of the model, the mask token included.
    expect(names.length).toBe(model.params.specs.size);
    expect(names).toContain('swin.embeddings.mask_token');
    expect(names.filter((n) => n.endsWith('relative_position_bias_table')).length).toBe(4);
    disposeStep(r);
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
