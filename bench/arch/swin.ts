/**
 * A small Swin (HF layout: 64 px input, patch 4, embed 64, depths [2, 2, 2], heads [2, 4, 8],
 * window 4, so windowed attention with shifts in the first two stages), batch 32, AdamW: the step
 * of bench/torch/swin_step_torch.py, standard and MaskSub mask-token 50 %.
 */
import { Rng, tf } from '@masksub/core';
import { SwinModel } from '@masksub/swin';
import { twoStepWorkload, type ArchStep } from './step.js';

export const SWIN_BENCH = { img: 64, patch: 4, embed: 64, depths: [2, 2, 2], heads: [2, 4, 8], window: 4, classes: 10 };

export function makeSwinWorkload(batch: number): ArchStep {
  const s = SWIN_BENCH;
  const model = new SwinModel(
    {
      model_type: 'swin',
      image_size: s.img,
      patch_size: s.patch,
      embed_dim: s.embed,
      depths: s.depths,
      num_heads: s.heads,
      window_size: s.window,
      num_labels: s.classes,
      hidden_dropout_prob: 0,
      attention_probs_dropout_prob: 0,
      drop_path_rate: 0,
    },
    { rng: new Rng(0) },
  );
  const x = tf.randomNormal([batch, 3, s.img, s.img], 0, 1, 'float32', 1);
  const labels = tf.tensor1d(Array.from({ length: batch }, (_, i) => (i * 7) % s.classes), 'int32');
  return twoStepWorkload(model, { inputs: { pixel_values: x }, targets: { labels } }, {
    optimizer: { kind: 'adamw', weightDecay: 0.05 },
    lr: 1e-4,
    masksub: { drop: 'mask-token', ratio: 0.5 },
    tensors: [x, labels],
  });
}
