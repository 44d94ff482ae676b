/**
 * How CLIP parameters group for the optimizer. Each tower's embeddings (and the vision tower's
 * pre-norm, which acts on them) are layer 0 and its encoder layer i is layer i + 1, counted so
 * that both towers' last layers meet below the top (a shallower tower starts higher); the final
 * norms, projections and logit_scale (CLIPModel) or the post-norm and classifier (FT-CLIP) come
 * last. The position tables, class embedding and logit_scale take no weight decay (open_clip's
 * `no_weight_decay`).
 */
import { layeredParamGroups, type ParamGroups } from '@masksub/core';

const NO_DECAY = /(^|\.)(position_embedding\.weight|class_embedding|logit_scale)$/;

function towers(layers: { vision: number; text?: number }): ParamGroups {
  const numLayers = Math.max(layers.vision, layers.text ?? 0);
  return layeredParamGroups({
    numLayers,
    embedding: (n) => /^(vision_model|text_model)\.embeddings\./.test(n) || n.startsWith('vision_model.pre_layrnorm.'),
    block: (n) => {
      const m = /^(vision_model|text_model)\.encoder\.layers\.(\d+)\./.exec(n);
      if (!m) return null;
      const depth = m[1] === 'vision_model' ? layers.vision : (layers.text ?? 0);
      return Number(m[2]) + numLayers - depth;
    },
    noWeightDecay: (n) => NO_DECAY.test(n),
  });
}

/** CLIPModel: both towers. */
export function clipParamGroups(visionLayers: number, textLayers: number): ParamGroups {
  return towers({ vision: visionLayers, text: textLayers });
}

/** FT-CLIP (CLIPForImageClassification): the vision tower and its classifier. */
export function clipClassifierParamGroups(visionLayers: number): ParamGroups {
  return towers({ vision: visionLayers });
}
