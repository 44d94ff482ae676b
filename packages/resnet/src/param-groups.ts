/**
 * How ResNet parameters group for the optimizer, as timm's ResNet `group_matcher` (fine: one
 * group per block) in `param_groups_layer_decay`: the stem is layer 0, the residual blocks count
 * over all stages in order, the head comes last. Weight decay: timm's rule only (batch-norm
 * weights and biases are 1-D).
 */
import { layeredParamGroups, stageOffsets, type ParamGroups } from '@masksub/core';

/** HF ResNet names (`resnet.embedder`, `resnet.encoder.stages.s.layers.b`, `classifier.1`); torchvision and timm files load under them. */
export function resnetParamGroups(depths: readonly number[]): ParamGroups {
  const offsets = stageOffsets(depths);
  return layeredParamGroups({
    numLayers: depths.reduce((a, d) => a + d, 0),
    embedding: (n) => n.startsWith('resnet.embedder.'),
    block: (n) => {
      const m = /^resnet\.encoder\.stages\.(\d+)\.layers\.(\d+)\./.exec(n);
      return m ? offsets[Number(m[1])] + Number(m[2]) : null;
    },
  });
}

/** CIFAR ResNet names (`conv1`/`bn1`, `layer<s+1>.<b>`, `linear`). */
export function resnetCifarParamGroups(blocksPerStage: readonly number[]): ParamGroups {
  const offsets = stageOffsets(blocksPerStage);
  return layeredParamGroups({
    numLayers: blocksPerStage.reduce((a, d) => a + d, 0),
    embedding: (n) => /^(conv1|bn1)\./.test(n),
    block: (n) => {
      const m = /^layer(\d+)\.(\d+)\./.exec(n);
      return m ? offsets[Number(m[1]) - 1] + Number(m[2]) : null;
    },
  });
}

