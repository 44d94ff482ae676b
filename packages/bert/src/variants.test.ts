/** DropSub / PathSub on BERT, and what the padding mask and default token types mean. */
import { describe, expect, it } from 'vitest';
import { Rng, tf, withMaskSub } from '@masksub/core';
import { BertModel } from './index.js';

const tiny = { model_type: 'bert', vocab_size: 30, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 16, num_labels: 3, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0, mask_token_id: 4, cls_token_id: 2, sep_token_id: 3 };

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

describe('BERT sub-pass variants and inputs', () => {
  const model = new BertModel(tiny, { rng: new Rng(3) });
  const ids = tf.tensor2d([[2, 7, 8, 9, 3, 0, 0], [2, 10, 11, 3, 12, 13, 3]], [2, 7], 'int32');
  const attention = tf.tensor2d([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]], [2, 7], 'int32');
  const types = tf.tensor2d([[0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1]], [2, 7], 'int32');
  const inputs = { input_ids: ids, attention_mask: attention, token_type_ids: types };
  const batch = { inputs, targets: { labels: tf.tensor1d([0, 2], 'int32') } };

  for (const variant of ['dropsub', 'pathsub'] as const) {
    it(`${variant}: the sub pass is stochastic, the main pass deterministic`, async () => {
      await tf.setBackend('cpu');
      const a = withMaskSub(model, { variant, ratio: 0.5, seed: 1 }).computeGradients(batch);
      const b = withMaskSub(model, { variant, ratio: 0.5, seed: 2 }).computeGradients(batch);
      expect(maxAbsDiff(a.mainLogits, b.mainLogits)).toBe(0);
      expect(maxAbsDiff(a.subLogits!, a.mainLogits)).toBeGreaterThan(1e-5);
      expect(maxAbsDiff(a.subLogits!, b.subLogits!)).toBeGreaterThan(1e-5);
      const c = withMaskSub(model, { variant, ratio: 0.5, seed: 1 }).computeGradients(batch);
      expect(maxAbsDiff(a.subLogits!, c.subLogits!)).toBe(0);
      tf.dispose([a, b, c].flatMap((r) => [r.mainLogits, r.subLogits!, ...r.grads.values()]));
    });
  }

  it('an unset ratio is the paper ratio of the drop operator in use: 15 % for token masking, 0.5 for DropSub and PathSub', () => {
    expect(withMaskSub(model).schedule.ratio(0)).toBe(0.15);
    expect(withMaskSub(model, { drop: model.dropOperator('token-masking') }).schedule.ratio(0)).toBe(0.15);
    expect(withMaskSub(model, { variant: 'dropsub' }).schedule.ratio(0)).toBe(0.5);
    expect(withMaskSub(model, { variant: 'pathsub' }).schedule.ratio(0)).toBe(0.5);
  });

  it('token masking (the default) draws from the config ids and changes only the sub input', () => {
    const r = withMaskSub(model, { ratio: 0.3, seed: 4 }).computeGradients(batch);
    expect(r.mask?.kind).toBe('token-masking');
    if (r.mask?.kind !== 'token-masking') throw new Error('wrong kind');
    const masked = Array.from(r.mask.masked).map((m, i) => (m ? i : -1)).filter((i) => i >= 0);
    expect(masked.length).toBeGreaterThanOrEqual(2);
    for (const i of masked) expect(r.mask.maskedIds[i]).toBe(4);
    expect(maxAbsDiff(r.subLogits!, r.mainLogits)).toBeGreaterThan(0);
    tf.dispose([r.mainLogits, r.subLogits!, ...r.grads.values()]);
  });

  it('padded positions do not influence the output; missing token_type_ids mean segment 0', () => {
    // BERT's 0.02 init makes outputs nearly input-independent; large weights make every input visible.
    const model = new BertModel(tiny, { rng: new Rng(5) });
    let seed = 11;
    for (const v of model.params.variables.values()) v.assign(tf.tidy(() => tf.add(v, tf.randomNormal(v.shape, 0, 0.5, 'float32', seed++))));
    const base = model.forward(inputs);
    const otherPad = tf.tensor2d([[2, 7, 8, 9, 3, 21, 17], [2, 10, 11, 3, 12, 13, 3]], [2, 7], 'int32');
    const moved = model.forward({ ...inputs, input_ids: otherPad });
    expect(maxAbsDiff(base, moved)).toBeLessThan(1e-6);
    const withoutMask = model.forward({ ...inputs, input_ids: otherPad, attention_mask: tf.onesLike(attention) });
    expect(maxAbsDiff(base, withoutMask)).toBeGreaterThan(1e-3);
    const zeros = model.forward({ input_ids: ids, attention_mask: attention, token_type_ids: tf.zerosLike(types) });
    const absent = model.forward({ input_ids: ids, attention_mask: attention });
    expect(maxAbsDiff(zeros, absent)).toBe(0);
    expect(maxAbsDiff(zeros, base)).toBeGreaterThan(1e-3); // the second row's segment-1 tokens matter
    tf.dispose([base, otherPad, moved, withoutMask, zeros, absent]);
    model.dispose();
  });

  it('forward leaks no tensors', () => {
    const before = tf.memory().numTensors;
    const out = model.forward(inputs, { training: true, dropoutRate: 0.1, seed: 3 });
    out.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
