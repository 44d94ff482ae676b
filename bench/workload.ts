/**
 * The benchmark workload of ../shared/bench/vit_step_torch.py: a ViT step (32x32x3, patch 4,
 * dim 192, depth 6, 3 heads, MLP x4, exact GELU, LayerNorm eps 1e-6, 10 classes, softmax CE,
 * Adam), as masksub's own ViT adapter with the masksub optimizer.
 */
import { createOptimizer, tf, withMaskSub, type DropKind, type Optimizer, type Variant } from '@masksub/core';
import { ViTModel } from '@masksub/vit';

export const BENCH_VIT_CONFIG = {
  model_type: 'vit',
  image_size: 32,
  patch_size: 4,
  num_channels: 3,
  hidden_size: 192,
  num_hidden_layers: 6,
  num_attention_heads: 3,
  intermediate_size: 768,
  hidden_act: 'gelu',
  layer_norm_eps: 1e-6,
  num_labels: 10,
};

export interface StepCase {
  name: string;
  variant: Variant;
  drop?: DropKind;
}

export const CASES: StepCase[] = [
  { name: 'standard', variant: 'none' },
  { name: 'masksub token-removal', variant: 'masksub', drop: 'token-removal' },
  { name: 'masksub mask-token', variant: 'masksub', drop: 'mask-token' },
  { name: 'masksub zero-fill', variant: 'masksub', drop: 'zero-fill' },
  { name: 'dropsub', variant: 'dropsub' },
  { name: 'pathsub', variant: 'pathsub' },
];

export interface Workload {
  model: ViTModel;
  optimizer: Optimizer;
  x: tf.Tensor4D;
  labels: tf.Tensor1D;
  step(c: StepCase, i: number): number;
  dispose(): void;
}

export function makeWorkload(batch: number, config: Record<string, unknown> = BENCH_VIT_CONFIG): Workload {
  const model = new ViTModel(config);
  const optimizer = createOptimizer({ kind: 'adamw', weightDecay: 0, eps: 1e-8 }, model.params.trainable());
  const size = Number(config.image_size);
  const x = tf.randomNormal([batch, Number(config.num_channels), size, size], 0, 1, 'float32', 1) as tf.Tensor4D;
  const labels = tf.tensor1d(Array.from({ length: batch }, (_, i) => (i * 7) % Number(config.num_labels)), 'int32');
  const trainers = new Map<string, ReturnType<typeof withMaskSub>>();
  return {
    model,
    optimizer,
    x,
    labels,
    step(c, i) {
      let t = trainers.get(c.name);
      if (!t) {
        t = withMaskSub(model, { variant: c.variant, drop: c.drop, ratio: 0.5, seed: 1 });
        trainers.set(c.name, t);
      }
      return t.step({ inputs: { pixel_values: x }, targets: { labels } }, optimizer, 1e-3, i).loss;
    },
    dispose() {
      optimizer.dispose();
      model.dispose();
      tf.dispose([x, labels]);
    },
  };
}
