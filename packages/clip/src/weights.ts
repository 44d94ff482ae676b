/** The name table: hub checkpoint names of HF CLIPModel -> parameters and layouts. */
import type { ParamSpec } from '@masksub/core';
import type { ClipConfig, ClipEncoderConfig } from './config.js';

/**
 * Initial scales are HF's CLIPPreTrainedModel._init_weights (fan-in and depth scaled, times
 * initializer_factor), not a flat 0.02: with a flat 0.02 a small model starts with every image
 * embedding nearly equal (the class embedding dominates CLS) and contrastive training stalls.
 */
function encoderSpecs(prefix: string, c: ClipEncoderConfig, factor: number, specs: ParamSpec[]): void {
  const d = c.hiddenSize;
  const inProjStd = d ** -0.5 * (2 * c.numHiddenLayers) ** -0.5 * factor;
  const outProjStd = d ** -0.5 * factor;
  const fcStd = (2 * d) ** -0.5 * factor;
  const lin = (name: string, out: number, inp: number, std: number): void => {
    specs.push({ name: `${name}.weight`, shape: [out, inp], layout: 'linear', init: { normal: std } });
    specs.push({ name: `${name}.bias`, shape: [out], layout: 'identity', init: 'zeros' });
  };
  for (let i = 0; i < c.numHiddenLayers; i++) {
    const l = `${prefix}.encoder.layers.${i}`;
    for (const proj of ['k_proj', 'v_proj', 'q_proj']) lin(`${l}.self_attn.${proj}`, d, d, inProjStd);
    lin(`${l}.self_attn.out_proj`, d, d, outProjStd);
    layerNormSpecs(`${l}.layer_norm1`, d, specs);
    lin(`${l}.mlp.fc1`, c.intermediateSize, d, fcStd);
    lin(`${l}.mlp.fc2`, d, c.intermediateSize, inProjStd);
    layerNormSpecs(`${l}.layer_norm2`, d, specs);
  }
}

function layerNormSpecs(name: string, d: number, specs: ParamSpec[]): void {
  specs.push({ name: `${name}.weight`, shape: [d], layout: 'identity', init: 'ones' });
  specs.push({ name: `${name}.bias`, shape: [d], layout: 'identity', init: 'zeros' });
}

/** The vision tower of HF CLIPVisionTransformer (`vision_model.*`), shared by CLIPModel and CLIPForImageClassification. */
function visionTowerSpecs(c: ClipConfig, specs: ParamSpec[]): void {
  const v = c.vision;
  const n = (v.imageSize / v.patchSize) ** 2;
  const f = c.initializerFactor;
  const range = c.initializerRange * f;
  specs.push(
    { name: 'vision_model.embeddings.class_embedding', shape: [v.hiddenSize], layout: 'identity', init: { normal: v.hiddenSize ** -0.5 * f } },
    // A bias-free conv with kernel == stride: applied as a matmul on flattened patches.
    { name: 'vision_model.embeddings.patch_embedding.weight', shape: [v.hiddenSize, v.numChannels, v.patchSize, v.patchSize], layout: 'patch-linear', init: { normal: range } },
    { name: 'vision_model.embeddings.position_embedding.weight', shape: [n + 1, v.hiddenSize], layout: 'identity', init: { normal: range } },
  );
  layerNormSpecs('vision_model.pre_layrnorm', v.hiddenSize, specs);
  encoderSpecs('vision_model', v, f, specs);
  layerNormSpecs('vision_model.post_layernorm', v.hiddenSize, specs);
}

export function clipParamSpecs(c: ClipConfig): ParamSpec[] {
  const t = c.text;
  const v = c.vision;
  const f = c.initializerFactor;
  const specs: ParamSpec[] = [
    // A scalar in the checkpoint (shape []); the model sets it to logit_scale_init_value.
    { name: 'logit_scale', shape: [], layout: 'identity', init: 'zeros' },
    { name: 'text_model.embeddings.token_embedding.weight', shape: [t.vocabSize, t.hiddenSize], layout: 'identity', init: { normal: 0.02 * f } },
    { name: 'text_model.embeddings.position_embedding.weight', shape: [t.maxPositionEmbeddings, t.hiddenSize], layout: 'identity', init: { normal: 0.02 * f } },
  ];
  encoderSpecs('text_model', t, f, specs);
  layerNormSpecs('text_model.final_layer_norm', t.hiddenSize, specs);
  visionTowerSpecs(c, specs);
  specs.push(
    { name: 'visual_projection.weight', shape: [c.projectionDim, v.hiddenSize], layout: 'linear', init: { normal: v.hiddenSize ** -0.5 * f } },
    { name: 'text_projection.weight', shape: [c.projectionDim, t.hiddenSize], layout: 'linear', init: { normal: t.hiddenSize ** -0.5 * f } },
  );
  return specs;
}

/**
 * HF CLIPForImageClassification: the vision tower (its `post_layernorm` is kept, as transformers
 * keeps the module, though the classifier pools the un-normalised patch tokens) and
 * `classifier` Linear(vision hidden_size, num_labels), initialised as HF's _init_weights does.
 */
export function clipClassifierParamSpecs(c: ClipConfig, numLabels: number): ParamSpec[] {
  const specs: ParamSpec[] = [];
  visionTowerSpecs(c, specs);
  const d = c.vision.hiddenSize;
  specs.push(
    { name: 'classifier.weight', shape: [numLabels, d], layout: 'linear', init: { normal: d ** -0.5 * c.initializerFactor } },
    { name: 'classifier.bias', shape: [numLabels], layout: 'identity', init: 'zeros' },
  );
  return specs;
}

/**
 * Tensors hub files may carry that the model does not use: the `position_ids` buffers that
 * checkpoints saved before transformers 4.31 include (arange, not parameters).
 */
export function clipIgnoredWeights(name: string): boolean {
  return /^(text_model|vision_model)\.embeddings\.position_ids$/.test(name);
}
