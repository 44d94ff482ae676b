/**
 * Parity with PyTorch + transformers on the hf-tiny CLIP fixture: the plain HF forward, the main
 * and sub similarity matrices (masked images, same texts), both contrastive MaskSub loss halves
 * and every parameter gradient, with the fixture's kept patch indices, on cpu and wasm.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { contrastiveLoss, tf, toFloat32, withMaskSub, type DropMask, type HostTensor, type ModelInputs, type TensorMap } from '@masksub/core';
import { describeShared } from '../../core/src/testing/shared.js';
import {
  disposeStep,
  expectGradientsMatch,
  expectStepMatches,
  loadParityFixture,
  maxAbsDiff,
  recipeKeys,
  referenceEntry,
  referenceKeptPatches,
  referenceTensor,
} from '../../core/src/testing/parity.js';
import { ClipModel, eosPositions } from './index.js';

for (const backend of ['cpu', 'wasm'] as const)
describeShared('fixtures/hf-tiny/clip', `CLIP parity with PyTorch (hf-tiny) on ${backend}`, () => {
  let model: ClipModel;
  let ref: TensorMap;
  let inputs: ModelInputs;
  let keepMask: DropMask;
  let pairs: tf.Tensor1D;

  const get = (name: string): HostTensor => referenceEntry(ref, name);

  beforeAll(async () => {
    const fixture = await loadParityFixture('clip', backend, (config) => new ClipModel(config));
    ({ model, ref } = fixture);
    expect(fixture.created).toEqual([]);
    inputs = {
      pixel_values: referenceTensor(ref, 'input.pixel_values'),
      input_ids: referenceTensor(ref, 'input.input_ids', 'int32'),
      attention_mask: referenceTensor(ref, 'input.attention_mask', 'int32'),
    };
    keepMask = referenceKeptPatches(ref);
    pairs = tf.range(0, keepMask.batch, 1, 'int32') as tf.Tensor1D;
  });

  afterAll(() => {
    model?.dispose();
    tf.dispose([...Object.values(inputs ?? {}), ...(pairs ? [pairs] : [])]);
  });

  it('logits_per_image match the plain HF forward within 1e-4; logits_per_text is its transpose', () => {
    const out = model.forwardAll(inputs);
    expect(out.logitsPerImage.shape).toEqual([4, 4]);
    expect(maxAbsDiff(out.logitsPerImage.dataSync(), toFloat32(get('hf_logits_per_image')))).toBeLessThan(1e-4);
    expect(maxAbsDiff(out.logitsPerText.dataSync(), tf.tidy(() => tf.transpose(out.logitsPerImage)).dataSync())).toBe(0);
    expect(out.imageEmbeds.shape).toEqual([4, 16]);
    tf.dispose([out.logitsPerImage, out.logitsPerText, out.imageEmbeds, out.textEmbeds]);
  });

  it('the fixture pools at argmax(input_ids) (legacy eos_token_id 2), not at its EOS id', () => {
    // The fixture's captions end with id 2 but hold larger ids earlier: the two rules differ here,
    // so matching hf_logits_per_image above pins the rule transformers 5.17 uses.
    const ids = get('input.input_ids');
    const data = toFloat32(ids);
    const [b, l] = ids.shape;
    const legacy = eosPositions(data, b, l, 2);
    expect(Array.from(legacy)).not.toEqual(new Array(b).fill(l - 1));
    expect(Array.from(eosPositions(data, b, l, 63))).toEqual(Array.from({ length: b }, (_, i) => Math.max(0, Array.from(data.subarray(i * l, i * l + l)).indexOf(63))));
  });

  it('sub logits, both loss halves and every gradient match (contrastive MaskSub)', () => {
    const trainer = withMaskSub(model, { loss: 'contrastive' });
    const before = tf.memory().numTensors;
    const r = trainer.computeGradients({ inputs, targets: { labels: pairs } }, 0, keepMask);
    // loss_main = (CE(S) + CE(S^T))/2/2, loss_sub = (softCE row + softCE column)/2/2.
    expectStepMatches(r, ref, recipeKeys('contrastive'));
    // The masked images really change the matrix (else the sub check above proves nothing).
    expect(maxAbsDiff(toFloat32(get('sub_logits_per_image')), toFloat32(get('main_logits_per_image')))).toBeGreaterThan(1e-2);
    // Relative to the reference's scale, floored as in core's verify; except the analytically zero
    // k_proj bias gradients (softmax ignores the per-query constant q.b_k): both sides are float
    // noise, PyTorch's up to 2e-8, so a relative check (floored at 1e-5) would compare noise with
    // noise. Instead: both are noise, far below the q_proj bias gradients (>1e-2).
    const { names, worst } = expectGradientsMatch(model, ref, 'grad.', r.grads, {
      relTol: 1e-3,
      analyticallyZero: { names: /self_attn\.k_proj\.bias$/, absTol: 1e-7 },
    });
    expect(names.length).toBe(78);
    expect(names.length).toBe(model.params.specs.size);
    // Headroom actually measured: about 1e-5 on both backends.
    expect(worst).toBeLessThan(1e-4);
    disposeStep(r);
    expect(tf.memory().numTensors).toBe(before);
  });

  it("core's contrastive loss is the fixture's definition (checked on the reference matrices alone)", () => {
    const loss = contrastiveLoss();
    const s = tf.tensor2d(toFloat32(get('main_logits_per_image')), [4, 4]);
    const sSub = tf.tensor2d(toFloat32(get('sub_logits_per_image')), [4, 4]);
    const teacher = loss.teacher(s);
    const main = loss.main(s, { labels: pairs });
    const sub = loss.sub(sSub, teacher);
    expect(Math.abs(main.dataSync()[0] / 2 - toFloat32(get('loss_main'))[0])).toBeLessThan(1e-6);
    expect(Math.abs(sub.dataSync()[0] / 2 - toFloat32(get('loss_sub'))[0])).toBeLessThan(1e-6);
    tf.dispose([s, sSub, teacher, main, sub]);
  });
});

describe('CLIP input validation', () => {
  const tiny = {
    model_type: 'clip',
    projection_dim: 8,
    text_config: { vocab_size: 20, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 16, max_position_embeddings: 6 },
    vision_config: { image_size: 16, patch_size: 8, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 16 },
  };

  it('names the input and the expected shape', async () => {
    await tf.setBackend('cpu');
    const m = new ClipModel(tiny);
    const ids = tf.tensor2d([[1, 5, 19]], [1, 3], 'int32');
    expect(() => m.forward({ pixel_values: tf.zeros([1, 3, 28, 28]), input_ids: ids })).toThrow(/pixel_values.*\[B, 3, 16, 16\]/);
    expect(() => m.forward({ pixel_values: tf.zeros([1, 3, 16, 16]) })).toThrow(/input_ids/);
    expect(() => m.forward({ pixel_values: tf.zeros([1, 3, 16, 16]), input_ids: tf.zeros([1, 7], 'int32') })).toThrow(/input_ids.*max_position_embeddings 6/);
    expect(() => m.forward({ pixel_values: tf.zeros([1, 3, 16, 16]), input_ids: tf.tensor2d([[1, 20]], [1, 2], 'int32') })).toThrow(/input_ids.*token id 20/);
    expect(() => m.forward({ pixel_values: tf.zeros([2, 3, 16, 16]), input_ids: ids })).toThrow(/1 captions for 2 images/);
    expect(() => m.forward({ pixel_values: tf.zeros([1, 3, 16, 16]), input_ids: ids, attention_mask: tf.ones([1, 2]) })).toThrow(/attention_mask/);
    expect(() => new ClipModel({ ...tiny, vision_config: { ...tiny.vision_config, patch_size: 5 } })).toThrow(/vision_config.*not a multiple of patch_size 5/);
    expect(() => m.dropOperator('mask-token')).toThrow(/drop/);
    m.dispose();
  });

  it('right padding does not change a caption, masked keys are ignored, and the text is pooled at EOS', async () => {
    await tf.setBackend('cpu');
    const m = new ClipModel({ ...tiny, text_config: { ...tiny.text_config, eos_token_id: 19 } });
    const px = tf.randomNormal([1, 3, 16, 16], 0, 1, 'float32', 3);
    const short = m.forward({ pixel_values: px, input_ids: tf.tensor2d([[18, 4, 7, 19]], [1, 4], 'int32') });
    const padded = m.forward({
      pixel_values: px,
      input_ids: tf.tensor2d([[18, 4, 7, 19, 3, 3]], [1, 6], 'int32'),
      attention_mask: tf.tensor2d([[1, 1, 1, 1, 0, 0]], [1, 6], 'int32'),
    });
    expect(Math.abs(short.dataSync()[0] - padded.dataSync()[0])).toBeLessThan(1e-5);
    // ...while a different token before EOS does change it (the check above is not vacuous).
    const other = m.forward({ pixel_values: px, input_ids: tf.tensor2d([[18, 5, 7, 19]], [1, 4], 'int32') });
    expect(Math.abs(short.dataSync()[0] - other.dataSync()[0])).toBeGreaterThan(1e-5);
    // A masked key is invisible: changing the token under a 0 of attention_mask changes nothing.
    const hidden = (id: number) =>
      m.forward({ pixel_values: px, input_ids: tf.tensor2d([[18, id, 7, 19]], [1, 4], 'int32'), attention_mask: tf.tensor2d([[1, 0, 1, 1]], [1, 4], 'int32') });
    const h4 = hidden(4);
    const h5 = hidden(5);
    expect(Math.abs(h4.dataSync()[0] - h5.dataSync()[0])).toBeLessThan(1e-6);
    expect(Math.abs(h4.dataSync()[0] - short.dataSync()[0])).toBeGreaterThan(1e-5);
    tf.dispose([px, short, padded, other, h4, h5]);
    m.dispose();
  });
});
