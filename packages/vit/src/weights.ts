/** The name table: hub checkpoint names of HF ViTForImageClassification / DeiTForImageClassification -> parameters and layouts. */
import type { ParamSpec } from '@masksub/core';
import type { ViTConfig } from './config.js';

export function vitParamSpecs(c: ViTConfig): ParamSpec[] {
  const p = c.modelType;
  const d = c.hiddenSize;
  const n = (c.imageSize[0] / c.patchSize) * (c.imageSize[1] / c.patchSize);
  const prefixTokens = c.modelType === 'deit' ? 2 : 1;
  const w = 0.02;
  const specs: ParamSpec[] = [
    { name: `${p}.embeddings.cls_token`, shape: [1, 1, d], layout: 'identity', init: { truncNormal: w } },
    { name: `${p}.embeddings.position_embeddings`, shape: [1, n + prefixTokens, d], layout: 'identity', init: { truncNormal: w } },
    // BEiT-style mask token for the mask-token drop operator: pretrained classifiers have none, so it
    // is created here when the checkpoint lacks it.
    { name: `${p}.embeddings.mask_token`, shape: [1, 1, d], layout: 'identity', init: { truncNormal: w }, optional: true },
    { name: `${p}.embeddings.patch_embeddings.projection.weight`, shape: [d, c.numChannels, c.patchSize, c.patchSize], layout: 'patch-linear', init: { truncNormal: w } },
    { name: `${p}.embeddings.patch_embeddings.projection.bias`, shape: [d], layout: 'identity', init: 'zeros' },
  ];
  if (c.modelType === 'deit') specs.push({ name: `${p}.embeddings.distillation_token`, shape: [1, 1, d], layout: 'identity', init: { truncNormal: w } });
  const lin = (name: string, out: number, inp: number, bias = true): void => {
    specs.push({ name: `${name}.weight`, shape: [out, inp], layout: 'linear', init: { truncNormal: w } });
    if (bias) specs.push({ name: `${name}.bias`, shape: [out], layout: 'identity', init: 'zeros' });
  };
  const norm = (name: string): void => {
    specs.push({ name: `${name}.weight`, shape: [d], layout: 'identity', init: 'ones' });
    specs.push({ name: `${name}.bias`, shape: [d], layout: 'identity', init: 'zeros' });
  };
  for (let i = 0; i < c.numHiddenLayers; i++) {
    const l = `${p}.encoder.layer.${i}`;
    norm(`${l}.layernorm_before`);
    for (const proj of ['query', 'key', 'value']) lin(`${l}.attention.attention.${proj}`, d, d, c.qkvBias);
    lin(`${l}.attention.output.dense`, d, d);
    norm(`${l}.layernorm_after`);
    lin(`${l}.intermediate.dense`, c.intermediateSize, d);
    lin(`${l}.output.dense`, d, c.intermediateSize);
  }
  norm(`${p}.layernorm`);
  lin('classifier', c.numLabels, d);
  return specs;
}

/** Tensors a hub file may carry that a classifier does not use. */
export function vitIgnoredWeights(name: string): boolean {
  return /\.pooler\./.test(name) || /^(cls_classifier|distillation_classifier)\./.test(name);
}

/**
 * transformers-5 module names (as in its in-memory state dict and some re-exports) -> hub names.
 * Checkpoints on the hub keep the old names; this lets files written with the new ones load too.
 */
export function vitAliases(c: ViTConfig): Record<string, string> {
  const p = c.modelType;
  const out: Record<string, string> = {};
  const renames: [string, string][] = [
    ['attention.q_proj', 'attention.attention.query'],
    ['attention.k_proj', 'attention.attention.key'],
    ['attention.v_proj', 'attention.attention.value'],
    ['attention.o_proj', 'attention.output.dense'],
    ['mlp.fc1', 'intermediate.dense'],
    ['mlp.fc2', 'output.dense'],
    ['layernorm_before', 'layernorm_before'],
    ['layernorm_after', 'layernorm_after'],
  ];
  for (let i = 0; i < c.numHiddenLayers; i++) {
    for (const [from, to] of renames) {
      for (const kind of ['weight', 'bias']) out[`${p}.layers.${i}.${from}.${kind}`] = `${p}.encoder.layer.${i}.${to}.${kind}`;
    }
  }
  return out;
}
