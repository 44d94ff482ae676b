/**
 * BERT (post-LN, HF BertForSequenceClassification: hidden 256, 4 layers, 4 heads, intermediate
 * 1024, seq 128, batch 32, 2 labels, no dropout) with AdamW: the step of
 * ../shared/bench/bert_step_torch.py, standard and MaskSub token masking 15 %.
 */
import { Rng, tf } from '@masksub/core';
import { BertModel } from '@masksub/bert';
import { twoStepWorkload, type ArchStep } from './step.js';

export const BERT_BENCH = { batch: 32, seq: 128, hidden: 256, layers: 4, heads: 4, inter: 1024, vocab: 30522 };

export function makeBertWorkload(batch: number, seq = BERT_BENCH.seq): ArchStep {
  const b = BERT_BENCH;
  const model = new BertModel(
    {
      model_type: 'bert',
      vocab_size: b.vocab,
      hidden_size: b.hidden,
      num_hidden_layers: b.layers,
      num_attention_heads: b.heads,
      intermediate_size: b.inter,
      max_position_embeddings: 512,
      num_labels: 2,
      hidden_dropout_prob: 0,
      attention_probs_dropout_prob: 0,
    },
    { rng: new Rng(0) },
  );
  const rng = new Rng(1);
  const ids = tf.tensor2d(Int32Array.from({ length: batch * seq }, () => 1000 + Math.floor(rng.next() * (b.vocab - 1000))), [batch, seq], 'int32');
  const attention = tf.ones([batch, seq], 'int32');
  const labels = tf.tensor1d(Array.from({ length: batch }, (_, i) => i % 2), 'int32');
  return twoStepWorkload(model, { inputs: { input_ids: ids, attention_mask: attention }, targets: { labels } }, {
    optimizer: { kind: 'adamw', weightDecay: 0.01 },
    lr: 1e-4,
    masksub: { drop: 'token-masking', ratio: 0.15 },
    tensors: [ids, attention, labels],
  });
}
