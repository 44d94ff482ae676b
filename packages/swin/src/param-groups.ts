/**
 * How Swin parameters group for the optimizer, as the official Swin/SimMIM fine-tuning code
 * (`get_swin_layer`, swin/optimizer.py): the patch embedding (and mask token, absolute position
 * table) is layer 0, blocks count over all stages (stage s block j is layer
 * sum(depths[:s]) + j + 1), a stage's patch merging (downsample) shares its last block's layer,
 * and the final norm and the head come last. `relative_position_bias_table` and the absolute
 * position table take no weight decay (Swin's `no_weight_decay(_keywords)`).
 */
import { layeredParamGroups, stageOffsets, type ParamGroups } from '@masksub/core';

export function swinParamGroups(depths: readonly number[]): ParamGroups {
  const offsets = stageOffsets(depths);
  return layeredParamGroups({
    numLayers: depths.reduce((a, d) => a + d, 0),
    embedding: (n) => n.startsWith('swin.embeddings.'),
    block: (n) => {
      const inBlock = /^swin\.encoder\.layers\.(\d+)\.blocks\.(\d+)\./.exec(n);
      if (inBlock) return offsets[Number(inBlock[1])] + Number(inBlock[2]);
      const merge = /^swin\.encoder\.layers\.(\d+)\.downsample\./.exec(n);
      if (merge) return offsets[Number(merge[1])] + depths[Number(merge[1])] - 1;
      return null;
    },
    noWeightDecay: (n) => n.endsWith('.relative_position_bias_table') || /^swin\.embeddings\.(position_embeddings|mask_token)$/.test(n),
  });
}
