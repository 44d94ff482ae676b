/**
 * BERT (post-LN, HF BertForSequenceClassification: hidden 256, 4 layers, 4 heads, intermediate
 * 1024, seq 128, batch 32, 2 labels, no dropout) with AdamW: the step of
 * ../shared/bench/bert_step_torch.py, standard and MaskSub token masking 15 %.
 */
import { Rng, tf, type Batch } from '@masksub/core';
import { BertModel } from '@masksub/bert';
import { twoStepWorkload, type ArchStep } from './step.js';

export const BERT_BENCH = { batch: 32, seq: 128, hidden: 256, layers: 4, heads: 4, inter: 1024, vocab: 30522 };

export interface BertSize {
  hidden: number;
  layers: number;
  heads: number;
  inter: number;
  vocab: number;
}

/**
 * A random-init BertForSequenceClassification of `size` (2 labels, no dropout) and one batch of
 * `batch` random sequences of `seq` tokens: the bench step's model and data, shared with the
 * real-size BERT-base case.
 */
export function makeBertModelAndBatch(size: BertSize, batch: number, seq: number): { model: BertModel; batch: Batch; tensors: tf.Tensor[] } {
  const model = new BertModel(
    {
      model_type: 'bert',
      vocab_size: size.vocab,
      hidden_size: size.hidden,
      num_hidden_layers: size.layers,
      num_attention_heads: size.heads,
      intermediate_size: size.inter,
      max_position_embeddings: 512,
      num_labels: 2,
      hidden_dropout_prob: 0,
      attention_probs_dropout_prob: 0,
    },
    { rng: new Rng(0) },
  );
  const rng = new Rng(1);
  const ids = tf.tensor2d(Int32Array.from({ length: batch * seq }, () => 1000 + Math.floor(rng.next() * (size.vocab - 1000))), [batch, seq], 'int32');
  const attention = tf.ones([batch, seq], 'int32');
  const labels = tf.tensor1d(Array.from({ length: batch }, (_, i) => i % 2), 'int32');
  return { model, batch: { inputs: { input_ids: ids, attention_mask: attention }, targets: { labels } }, tensors: [ids, attention, labels] };
}

export function makeBertWorkload(batch: number, seq = BERT_BENCH.seq): ArchStep {
  const w = makeBertModelAndBatch(BERT_BENCH, batch, seq);
  return twoStepWorkload(w.model, w.batch, {
    optimizer: { kind: 'adamw', weightDecay: 0.01 },
    lr: 1e-4,
    masksub: { drop: 'token-masking', ratio: 0.15 },
    tensors: w.tensors,
  });
}
