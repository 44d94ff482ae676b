/** The name table: hub checkpoint names of HF SwinForImageClassification -> parameters and layouts. */
import type { ParamSpec } from '@masksub/core';
import { mlpDim, numFeatures, stageDim, type SwinConfig } from './config.js';

export function swinParamSpecs(c: SwinConfig): ParamSpec[] {
  const d0 = c.embedDim;
  const w = 0.02;
  const specs: ParamSpec[] = [
    { name: 'swin.embeddings.patch_embeddings.projection.weight', shape: [d0, c.numChannels, c.patchSize, c.patchSize], layout: 'patch-linear', init: { truncNormal: w } },
    { name: 'swin.embeddings.patch_embeddings.projection.bias', shape: [d0], layout: 'identity', init: 'zeros' },
    // SimMIM's mask token for the mask-token drop operator: classification checkpoints have none,
    // so it is created here when the checkpoint lacks it (trunc-normal 0.02 as SimMIM).
    { name: 'swin.embeddings.mask_token', shape: [1, 1, d0], layout: 'identity', init: { truncNormal: w }, optional: true },
  ];
  const lin = (name: string, out: number, inp: number, bias = true): void => {
    specs.push({ name: `${name}.weight`, shape: [out, inp], layout: 'linear', init: { truncNormal: w } });
    if (bias) specs.push({ name: `${name}.bias`, shape: [out], layout: 'identity', init: 'zeros' });
  };
  const norm = (name: string, dim: number): void => {
    specs.push({ name: `${name}.weight`, shape: [dim], layout: 'identity', init: 'ones' });
    specs.push({ name: `${name}.bias`, shape: [dim], layout: 'identity', init: 'zeros' });
  };
  norm('swin.embeddings.norm', d0);
  // The table is sized by the configured window in every stage, as HF builds it (even where the
  // window shrinks to a smaller resolution).
  const side = 2 * c.windowSize - 1;
  c.depths.forEach((depth, s) => {
    const dim = stageDim(c, s);
    for (let b = 0; b < depth; b++) {
      const l = `swin.encoder.layers.${s}.blocks.${b}`;
      norm(`${l}.layernorm_before`, dim);
      for (const proj of ['query', 'key', 'value']) lin(`${l}.attention.self.${proj}`, dim, dim, c.qkvBias);
      specs.push({ name: `${l}.attention.self.relative_position_bias_table`, shape: [side * side, c.numHeads[s]], layout: 'identity', init: { truncNormal: w } });
      lin(`${l}.attention.output.dense`, dim, dim);
      norm(`${l}.layernorm_after`, dim);
      lin(`${l}.intermediate.dense`, mlpDim(c, dim), dim);
      lin(`${l}.output.dense`, dim, mlpDim(c, dim));
    }
    if (s < c.depths.length - 1) {
      norm(`swin.encoder.layers.${s}.downsample.norm`, 4 * dim);
      lin(`swin.encoder.layers.${s}.downsample.reduction`, 2 * dim, 4 * dim, false);
    }
  });
  norm('swin.layernorm', numFeatures(c));
  lin('classifier', c.numLabels, numFeatures(c));
  return specs;
}

/**
 * Tensors a hub file may carry that a classifier does not use: the relative position index
 * buffers (recomputed here), and a SimMIM checkpoint's pixel decoder.
 */
export function swinIgnoredWeights(name: string): boolean {
  return /\.relative_position_index$/.test(name) || /^decoder\./.test(name);
}

/**
 * transformers-5 module names (its in-memory state dict and some re-exports) -> hub names.
 * Checkpoints on the hub keep the old names; this lets files written with the new ones load too.
 */
export function swinAliases(c: SwinConfig): Record<string, string> {
  const out: Record<string, string> = {};
  const renames: [string, string][] = [
    ['attention.q_proj', 'attention.self.query'],
    ['attention.k_proj', 'attention.self.key'],
    ['attention.v_proj', 'attention.self.value'],
    ['attention.o_proj', 'attention.output.dense'],
    ['mlp.fc1', 'intermediate.dense'],
    ['mlp.fc2', 'output.dense'],
  ];
  c.depths.forEach((depth, s) => {
    for (let b = 0; b < depth; b++) {
      const l = `swin.encoder.layers.${s}.blocks.${b}`;
      for (const [from, to] of renames) {
        for (const kind of ['weight', 'bias']) out[`${l}.${from}.${kind}`] = `${l}.${to}.${kind}`;
      }
      out[`${l}.attention.relative_position_bias.relative_position_bias_table`] = `${l}.attention.self.relative_position_bias_table`;
    }
  });
  return out;
}
