/**
 * CLIP, both towers (HF layout, quick GELU): vision 32 px / patch 4 (64 patches + class token),
 * text 16 tokens of a 49,408-token vocabulary, both 128 wide, 4 layers, 4 heads, MLP 512,
 * projection 128; batch 64 image-caption pairs, AdamW, CLIP's contrastive loss. MaskSub removes
 * half the image patches (MAE token removal) and the sub pass mimics the main pass's similarity
 * matrix. The step of bench/torch/clip_step_torch.py.
 */
import { Rng, tf } from '@masksub/core';
import { ClipModel } from '@masksub/clip';
import { twoStepWorkload, type ArchStep } from './step.js';

export const CLIP_BENCH = { img: 32, patch: 4, width: 128, layers: 4, heads: 4, inter: 512, proj: 128, seq: 16, vocab: 49408 };

export function makeClipWorkload(batch: number): ArchStep {
  const c = CLIP_BENCH;
  const tower = { hidden_size: c.width, num_hidden_layers: c.layers, num_attention_heads: c.heads, intermediate_size: c.inter };
  const eos = c.vocab - 1;
  const model = new ClipModel(
    {
      model_type: 'clip',
      projection_dim: c.proj,
      text_config: { ...tower, vocab_size: c.vocab, max_position_embeddings: 77, eos_token_id: eos },
      vision_config: { ...tower, image_size: c.img, patch_size: c.patch },
    },
    { rng: new Rng(0) },
  );
  const rng = new Rng(1);
  // Every caption ends in EOS at its last position (CLIP pools the text at EOS).
  const ids = tf.tensor2d(Int32Array.from({ length: batch * c.seq }, (_, i) => (i % c.seq === c.seq - 1 ? eos : 1 + Math.floor(rng.next() * (c.vocab - 2)))), [batch, c.seq], 'int32');
  const attention = tf.ones([batch, c.seq], 'int32');
  const x = tf.randomNormal([batch, 3, c.img, c.img], 0, 1, 'float32', 1);
  const pairs = tf.range(0, batch, 1, 'int32');
  return twoStepWorkload(model, { inputs: { pixel_values: x, input_ids: ids, attention_mask: attention }, targets: { labels: pairs } }, {
    optimizer: { kind: 'adamw', weightDecay: 0.1 },
    lr: 1e-4,
    masksub: { drop: 'token-removal', ratio: 0.5, loss: 'contrastive' },
    tensors: [x, ids, attention, pairs],
  });
}
