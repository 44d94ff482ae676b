/**
 * Parity with PyTorch + transformers on the hf-tiny BERT fixture: logits, both MaskSub loss
 * halves and every parameter gradient (CE recipe), replaying the fixture's [MASK]ed input_ids,
 * with padding (attention_mask) and sentence pairs (token_type_ids), on cpu and wasm.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng, referenceMask, tf, toFloat32, withMaskSub, type DropMask, type HostTensor, type ModelInputs, type TensorMap } from '@masksub/core';
import { describeShared } from '../../core/src/testing/shared.js';
import {
  disposeStep,
  expectGradientsMatch,
  expectStepMatches,
  loadParityFixture,
  maxAbsDiff,
  recipeKeys,
  referenceEntry,
  referenceTensor,
} from '../../core/src/testing/parity.js';
import { BertModel } from './index.js';

const int2d = (ref: TensorMap, name: string): tf.Tensor2D => referenceTensor<tf.Rank.R2>(ref, name, 'int32');

for (const backend of ['cpu', 'wasm'] as const)
describeShared('fixtures/hf-tiny/bert', `BERT parity with PyTorch (hf-tiny) on ${backend}`, () => {
  let model: BertModel;
  let ref: TensorMap;
  let inputs: ModelInputs;
  let labels: tf.Tensor1D;
  let mask: DropMask;

  const get = (name: string): HostTensor => referenceEntry(ref, name);

  beforeAll(async () => {
    // The fixture's tokenizer has [MASK] = 4 (its config, like every BertConfig, names no mask id).
    const fixture = await loadParityFixture('bert', backend, (config) => new BertModel(config, { specialTokens: { maskTokenId: 4, specialIds: [0, 2, 3] } }));
    ({ model, ref } = fixture);
    expect(fixture.created).toEqual([]);
    expect(fixture.loaded.length).toBe(41);
    inputs = { input_ids: int2d(ref, 'input.input_ids'), attention_mask: int2d(ref, 'input.attention_mask'), token_type_ids: int2d(ref, 'input.token_type_ids') };
    labels = referenceTensor<tf.Rank.R1>(ref, 'input.labels', 'int32');
    mask = referenceMask(model, ref, 'bert/reference.safetensors');
  });

  afterAll(() => {
    model?.dispose();
    tf.dispose([...Object.values(inputs ?? {}), labels]);
  });

  it('main logits match within 1e-4 (padding and pairs included)', () => {
    const logits = model.forward(inputs);
    expect(logits.shape).toEqual([4, 2]);
    expect(maxAbsDiff(logits.dataSync(), toFloat32(get('ce.main_logits')))).toBeLessThan(1e-4);
    logits.dispose();
  });

  it('the padding mask matters: without it the logits change', () => {
    const { attention_mask: _dropped, ...unmasked } = inputs;
    const logits = model.forward(unmasked);
    expect(maxAbsDiff(logits.dataSync(), toFloat32(get('ce.main_logits')))).toBeGreaterThan(1e-3);
    logits.dispose();
  });

  it('the fixture mask is a valid token masking: [MASK] = 4, never special or padding, >= 1 a sentence', () => {
    if (mask.kind !== 'token-masking') throw new Error(`expected a token-masking mask, got ${mask.kind}`);
    const ids = toFloat32(get('input.input_ids'));
    const att = toFloat32(get('input.attention_mask'));
    for (let b = 0; b < mask.batch; b++) {
      let count = 0;
      for (let i = 0; i < mask.length; i++) {
        const k = b * mask.length + i;
        if (!mask.masked[k]) continue;
        count++;
        expect(mask.maskedIds[k]).toBe(4);
        expect(att[k]).toBe(1);
        expect([0, 2, 3]).not.toContain(ids[k]);
      }
      expect(count).toBeGreaterThanOrEqual(1);
    }
  });

  it('ce: sub logits, loss halves and every gradient match', () => {
    const trainer = withMaskSub(model, { loss: 'ce' });
    const before = tf.memory().numTensors;
    const r = trainer.computeGradients({ inputs, targets: { labels } }, 0, mask);
    // The fixture's halves are weighted: loss_main = CE/2, loss_sub = softCE/2.
    expectStepMatches(r, ref, recipeKeys('ce'));
    // Relative to the reference's scale; the floor covers analytically-zero gradients (key bias).
    const { names } = expectGradientsMatch(model, ref, 'ce.grad.', r.grads, { relTol: 1e-3 });
    expect(names.length).toBe(41);
    expect(r.grads.size).toBe(41);
    disposeStep(r);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a drawn token masking follows the rules and only touches input_ids', () => {
    const op = model.dropOperator('token-masking');
    const drawn = op.sample(inputs, 0.15, new Rng(5));
    if (drawn.kind !== 'token-masking') throw new Error('wrong kind');
    const ids = inputs.input_ids.dataSync();
    const att = inputs.attention_mask.dataSync();
    for (let b = 0; b < drawn.batch; b++) {
      let count = 0;
      for (let i = 0; i < drawn.length; i++) {
        const k = b * drawn.length + i;
        if (drawn.masked[k]) {
          count++;
          expect(drawn.maskedIds[k]).toBe(4);
          expect(att[k]).toBe(1);
          expect([0, 2, 3]).not.toContain(ids[k]);
        } else {
          expect(drawn.maskedIds[k]).toBe(ids[k]);
        }
      }
      expect(count).toBeGreaterThanOrEqual(1);
    }
    const view = op.apply(inputs, drawn);
    expect(view.inputs.attention_mask).toBe(inputs.attention_mask);
    expect(view.inputs.token_type_ids).toBe(inputs.token_type_ids);
    expect(Array.from(view.inputs.input_ids.dataSync())).toEqual(Array.from(drawn.maskedIds));
    view.inputs.input_ids.dispose();
  });
});

describe('BERT input validation', () => {
  const tiny = { model_type: 'bert', vocab_size: 20, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 16, max_position_embeddings: 6, num_labels: 3 };
  it('names the input and the expected shape', () => {
    const m = new BertModel(tiny);
    expect(() => m.forward({})).toThrow(/input_ids/);
    expect(() => m.forward({ input_ids: tf.zeros([2, 8], 'int32') })).toThrow(/max_position_embeddings 6/);
    expect(() => m.forward({ input_ids: tf.zeros([2, 4], 'int32'), attention_mask: tf.ones([2, 5], 'int32') })).toThrow(/attention_mask.*\[2,4\]/);
    expect(() => m.forward({ input_ids: tf.zeros([2, 4], 'int32') }, { keepIndices: tf.zeros([2, 2], 'int32') })).toThrow(/keepIndices/);
    m.dispose();
  });
  it('without a known [MASK] id, drawing a mask names mask_token_id; replay still works', () => {
    const m = new BertModel(tiny);
    expect(m.specialTokens).toBeUndefined();
    const op = m.dropOperator('token-masking');
    const ids = tf.tensor2d([[2, 5, 6, 3]], [1, 4], 'int32');
    expect(() => op.sample({ input_ids: ids }, 0.15, new Rng(0))).toThrow(/mask_token_id/);
    const view = op.apply({ input_ids: ids }, { kind: 'token-masking', batch: 1, length: 4, maskedIds: Int32Array.from([2, 4, 6, 3]), masked: Uint8Array.from([0, 1, 0, 0]) });
    expect(Array.from(view.inputs.input_ids.dataSync())).toEqual([2, 4, 6, 3]);
    expect(() => m.dropOperator('token-removal')).toThrow(/drop/);
    expect(() => m.setSpecialTokens({ maskTokenId: 20, specialIds: [] })).toThrow(/outside the vocabulary/);
    // Config-named ids and Google's vocabulary layout are used when present.
    expect(new BertModel({ ...tiny, mask_token_id: 4, cls_token_id: 2, sep_token_id: 3 }).specialTokens).toEqual({ maskTokenId: 4, specialIds: [0, 2, 3] });
    tf.dispose([ids, view.inputs.input_ids]);
    m.dispose();
  });
});
