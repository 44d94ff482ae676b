/**
 * ResNet-20 for CIFAR (option-A shortcuts, BN in train mode), batch 128, SGD momentum 0.9 and
 * weight decay 1e-4: the step of ../shared/bench/resnet20_step_torch.py, standard and MaskSub
 * zero-fill (8 px squares, 50 %), built from masksub's own ResNet-CIFAR adapter.
 */
import { tf } from '@masksub/core';
import { ResNetCifarModel } from '@masksub/resnet';
import { twoStepWorkload, type ArchStep } from './step.js';

export const RESNET20_CONFIG = {
  model_type: 'resnet_cifar',
  depth: 20,
  num_classes: 10,
  bn_mode: 'train',
};

export function makeResNetWorkload(batch: number, blocksPerStage = 3): ArchStep & { model: ResNetCifarModel } {
  const model = new ResNetCifarModel({ ...RESNET20_CONFIG, depth: 6 * blocksPerStage + 2 });
  const x = tf.randomNormal([batch, 3, 32, 32], 0, 1, 'float32', 1) as tf.Tensor4D;
  const labels = tf.tensor1d(Array.from({ length: batch }, (_, i) => (i * 7) % 10), 'int32');
  const step = twoStepWorkload(model, { inputs: { pixel_values: x }, targets: { labels } }, {
    optimizer: { kind: 'sgd', momentum: 0.9, weightDecay: 1e-4 },
    lr: 0.01,
    masksub: { drop: 'zero-fill', ratio: 0.5 },
    tensors: [x, labels],
  });
  return { ...step, model };
}
