/**
 * Parity with PyTorch + transformers on the hf-tiny ViT fixture: logits, both MaskSub loss halves
 * and every parameter gradient, for CE and BCE recipes, with the fixture's kept patch indices.
 */
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { tf, toFloat32, withMaskSub, type DropMask, type HostTensor, type TensorMap } from '@masksub/core';
import { describeShared } from '../../core/src/testing/shared.js';
import {
  disposeStep,
  expectGradientsMatch,
  expectStepMatches,
  loadParityFixture,
  maxAbs,
  maxAbsDiff,
  recipeKeys,
  referenceEntry,
  referenceKeptPatches,
  referenceMaskedTokens,
  referenceTensor,
} from '../../core/src/testing/parity.js';
import { ViTModel } from './index.js';

for (const backend of ['cpu', 'wasm'] as const)
describeShared('fixtures/hf-tiny/vit', `ViT parity with PyTorch (hf-tiny) on ${backend}`, () => {
  let model: ViTModel;
  let ref: TensorMap;
  let pixels: tf.Tensor4D;
  let labels: tf.Tensor1D;
  let keepMask: DropMask;

  const get = (name: string): HostTensor => referenceEntry(ref, name);

  beforeAll(async () => {
    const fixture = await loadParityFixture('vit', backend, (config) => new ViTModel(config));
    ({ model, ref } = fixture);
    expect(fixture.created).toEqual(['vit.embeddings.mask_token']);
    pixels = referenceTensor<tf.Rank.R4>(ref, 'input.pixel_values');
    labels = referenceTensor<tf.Rank.R1>(ref, 'input.labels', 'int32');
    keepMask = referenceKeptPatches(ref);
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

  for (const kind of ['ce', 'bce'] as const) {
    it(`${kind}: sub logits, loss halves and every gradient match`, () => {
      const trainer = withMaskSub(model, { loss: kind });
      const before = tf.memory().numTensors;
      const r = trainer.computeGradients({ inputs: { pixel_values: pixels }, targets: { labels } }, 0, keepMask);
      const keys = recipeKeys(kind);
      // The fixture's halves are weighted: loss_main = CE/2, loss_sub = softCE/2.
      expectStepMatches(r, ref, keys);
      // Relative to the reference's scale, floored at 1e-5 (analytically zero key-bias gradients).
      const { names } = expectGradientsMatch(model, ref, keys.gradPrefix, r.grads, { relTol: 1e-3 });
      expect(names.length).toBe(40);
      // The mask token is not used by token removal, so it gets no gradient.
      expect(r.grads.has('vit.embeddings.mask_token')).toBe(false);
      disposeStep(r);
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it('the main gradient does not depend on the sub pass', () => {
    // Gradients of the main half alone (sub weight 0) equal the main part of the full step:
    // (full - sub-only) == main-only, checked on the classifier weight.
    const batch = { inputs: { pixel_values: pixels }, targets: { labels } };
    const mainOnly = withMaskSub(model, { subWeight: 0 }).computeGradients(batch, 0, keepMask);
    const subOnly = withMaskSub(model, { mainWeight: 0 }).computeGradients(batch, 0, keepMask);
    const full = withMaskSub(model).computeGradients(batch, 0, keepMask);
    for (const name of ['classifier.weight', 'vit.encoder.layer.0.attention.attention.query.weight']) {
      const diff = tf.sub(full.grads.get(name)!, subOnly.grads.get(name)!);
      expect(maxAbsDiff(diff.dataSync(), mainOnly.grads.get(name)!.dataSync())).toBeLessThan(1e-6);
      diff.dispose();
    }
    for (const r of [mainOnly, subOnly, full]) disposeStep(r);
  });

  it('mask-token swap replaces exactly the fixture bool_masked_pos tokens', () => {
    const mask = referenceMaskedTokens(ref);
    // bool_masked_pos is the complement of keep_indices in the fixture.
    for (let b = 0; b < mask.batch; b++) {
      const kept = Array.from(keepMask.kind === 'token-removal' ? keepMask.keepIndices.subarray(b * 8, b * 8 + 8) : []);
      for (let i = 0; i < mask.tokens; i++) expect(mask.masked[b * mask.tokens + i]).toBe(kept.includes(i) ? 0 : 1);
    }
    const op = model.dropOperator('mask-token');
    const view = op.apply({ pixel_values: pixels }, mask);
    // With a mask token equal to a patch's own embedding nothing would change; instead check that
    // the output depends on the mask token only through masked samples/positions:
    const base = model.forward(view.inputs, view.forward);
    const token = model.params.get('vit.embeddings.mask_token');
    const saved = token.clone();
    // Not a uniform shift: LayerNorm would cancel it.
    token.assign(tf.add(saved, tf.randomNormal(saved.shape, 0, 1, 'float32', 7)));
    const moved = model.forward(view.inputs, view.forward);
    token.assign(saved);
    expect(maxAbsDiff(base.dataSync(), moved.dataSync())).toBeGreaterThan(1e-3);
    const none = model.forward({ pixel_values: pixels }, { maskedPositions: tf.zeros([mask.batch, mask.tokens]) });
    const clean = model.forward({ pixel_values: pixels });
    expect(maxAbsDiff(none.dataSync(), clean.dataSync())).toBeLessThan(1e-6);
    // The mask token gets a gradient in the mask-token sub pass.
    const r = withMaskSub(model, { drop: 'mask-token' }).computeGradients({ inputs: { pixel_values: pixels }, targets: { labels } }, 0, mask);
    expect(maxAbs(r.grads.get('vit.embeddings.mask_token')!.dataSync())).toBeGreaterThan(0);
    tf.dispose([base, moved, none, clean, saved, view.forward.maskedPositions!, r.mainLogits, r.subLogits!, ...r.grads.values()]);
  });
});

describe('ViT input validation', () => {
  it('names the input and the expected shape', () => {
    const m = new ViTModel({ model_type: 'vit', image_size: 32, patch_size: 8, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, num_labels: 3 });
    expect(() => m.forward({ pixel_values: tf.zeros([2, 3, 28, 28]) })).toThrow(/pixel_values.*\[B, 3, 32, 32\]/);
    expect(() => m.forward({})).toThrow(/pixel_values/);
    m.dispose();
  });
});
