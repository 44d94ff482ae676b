/** withMaskSub picks BERT's loss from the head's problem type when no loss is given. */
import { describe, expect, it } from 'vitest';
import { tf, withMaskSub } from '@masksub/core';
import { BertModel } from './index.js';

const tiny = { model_type: 'bert', vocab_size: 30, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 16, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0, mask_token_id: 4, cls_token_id: 2, sep_token_id: 3 };

describe('BERT recipe loss', () => {
  it('regression (num_labels 1) trains with MSE, classification with CE, multi-label with BCE; an explicit loss wins', async () => {
    await tf.setBackend('cpu');
    const cases: [Record<string, unknown>, string][] = [
      [{ num_labels: 1 }, 'mse'],
      [{ num_labels: 3 }, 'ce'],
      [{ num_labels: 3, problem_type: 'multi_label_classification' }, 'bce'],
    ];
    for (const [extra, kind] of cases) {
      const model = new BertModel({ ...tiny, ...extra });
      expect(withMaskSub(model).loss.kind).toBe(kind);
      expect(withMaskSub(model, { loss: 'ce' }).loss.kind).toBe('ce');
      model.dispose();
    }
  });

  it('a regression step regresses both passes: loss_main is the MSE to the float targets', async () => {
    await tf.setBackend('cpu');
    const model = new BertModel({ ...tiny, num_labels: 1 });
    const ids = tf.tensor2d([[2, 10, 11, 3], [2, 12, 13, 3]], [2, 4], 'int32');
    const targets = tf.tensor1d([0.5, 4.5]);
    const logits = model.forward({ input_ids: ids });
    const expected = tf.tidy(() => tf.mean(tf.square(tf.sub(tf.reshape(logits, [2]), targets))).dataSync()[0]);
    const r = withMaskSub(model, { seed: 2 }).computeGradients({ inputs: { input_ids: ids }, targets: { labels: targets } });
    expect(r.lossMain).toBeCloseTo(expected, 5);
    expect(r.lossSub).toBeGreaterThanOrEqual(0);
    tf.dispose([ids, targets, logits, r.mainLogits, r.subLogits!, ...r.grads.values()]);
    model.dispose();
  });
});
