/**
 * How ViT parameters group for the optimizer (BEiT/MAE `get_layer_id_for_vit`, timm's ViT
 * `group_matcher` and `no_weight_decay`): the embeddings (patch projection, CLS / distillation
 * / mask tokens, position table) are layer 0, block i is layer i + 1, the final norm and the
 * head come last. Tokens and the position table take no weight decay.
 */
import { blockIndex, layeredParamGroups, type ParamGroups } from '@masksub/core';

/** HF ViT / DeiT names (`vit.` or `deit.` prefix). */
export function vitParamGroups(numLayers: number): ParamGroups {
  return layeredParamGroups({
    numLayers,
    embedding: (n) => /^(vit|deit)\.embeddings\./.test(n),
    block: (n) => blockIndex(/^(?:vit|deit)\.encoder\.layer\.(\d+)\./, n),
    noWeightDecay: (n) => /^(vit|deit)\.embeddings\.(cls_token|distillation_token|mask_token|position_embeddings)$/.test(n),
  });
}

/** timm ViT names (timm `no_weight_decay`: pos_embed, cls_token, dist_token; the mask token too). */
export function timmViTParamGroups(depth: number): ParamGroups {
  return layeredParamGroups({
    numLayers: depth,
    embedding: (n) => /^(cls_token|dist_token|mask_token|pos_embed|patch_embed\.)/.test(n),
    block: (n) => blockIndex(/^blocks\.(\d+)\./, n),
    noWeightDecay: (n) => /^(cls_token|dist_token|mask_token|pos_embed)$/.test(n),
  });
}
