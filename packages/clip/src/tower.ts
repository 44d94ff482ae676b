/**
 * The pieces both CLIP heads run: the pre-LN encoder (shared by the text and vision towers) and
 * the vision transformer up to its last hidden state (HF CLIPVisionTransformer without the
 * pooling). CLIPModel pools CLS through `post_layernorm`; CLIPForImageClassification averages the
 * patch tokens of the un-normalised last hidden state. One implementation keeps the two in step.
 */
import {
  batchToken,
  blockDropPathRate,
  dropPath,
  dropout,
  embedKeptPatches,
  layerNorm,
  layerSeed,
  linear,
  multiHeadAttention,
  passDropoutRates,
  patchify,
  selectTokens,
  tf,
  type DropPathRule,
  type ForwardOptions,
  type PassDropoutRates,
  type ParameterStore,
  type TokenRows,
} from '@masksub/core';
import type { ClipEncoderConfig, ClipVisionConfig } from './config.js';

export interface EncoderRun {
  /** Additive attention bias [B or 1, 1, T, T]. */
  bias?: tf.Tensor;
  /**
   * The caller reads only these tokens of the result: the first n (CLIPModel's image features
   * read CLS) or one per sequence (its text features read EOS). The last layer computes just
   * those rows, and the result is [B, n, D] ([B, 1, D] for one position per sequence).
   */
  readTokens?: TokenRows;
  /** Dropout rates by where they apply (HF CLIP: attention probabilities only; DropSub adds the rest). */
  drop: PassDropoutRates;
  dropPathRate: number;
  dropPathRule: DropPathRule;
  seed: number;
}

/** The pre-LN CLIP encoder layers; only the weights' prefix differs between the towers. */
export function clipEncoder(
  params: ParameterStore,
  h0: tf.Tensor,
  prefix: string,
  c: ClipEncoderConfig,
  act: (x: tf.Tensor) => tf.Tensor,
  run: EncoderRun,
): tf.Tensor {
  let h = h0;
  for (let i = 0; i < c.numHiddenLayers; i++) {
    const l = (name: string) => params.get(`${prefix}.encoder.layers.${i}.${name}`);
    const proj = (name: string): [tf.Tensor, tf.Tensor] => [l(`self_attn.${name}.weight`), l(`self_attn.${name}.bias`)];
    const layerPath = blockDropPathRate(run.dropPathRate, run.dropPathRule, i, c.numHiddenLayers);
    const queries = i === c.numHiddenLayers - 1 ? run.readTokens : undefined;
    const attnIn = layerNorm(h, l('layer_norm1.weight'), l('layer_norm1.bias'), c.layerNormEps);
    let attn = multiHeadAttention(attnIn, { q: proj('q_proj'), k: proj('k_proj'), v: proj('v_proj'), out: proj('out_proj') }, c.numAttentionHeads, {
      bias: run.bias,
      dropoutRate: run.drop.attentionProbs,
      seed: layerSeed(run.seed, i, 0),
      queries,
    });
    attn = dropout(attn, run.drop.attentionOutput, layerSeed(run.seed, i, 1));
    h = selectTokens(h, queries);
    h = tf.add(h, dropPath(attn, layerPath, layerSeed(run.seed, i, 2)));
    const mlpIn = layerNorm(h, l('layer_norm2.weight'), l('layer_norm2.bias'), c.layerNormEps);
    const hidden = dropout(act(linear(mlpIn, l('mlp.fc1.weight'), l('mlp.fc1.bias'))), run.drop.mlpHidden, layerSeed(run.seed, i, 5));
    let mlp = linear(hidden, l('mlp.fc2.weight'), l('mlp.fc2.bias'));
    mlp = dropout(mlp, run.drop.mlpOutput, layerSeed(run.seed, i, 3));
    h = tf.add(h, dropPath(mlp, layerPath, layerSeed(run.seed, i, 4)));
  }
  return h;
}

/** How a vision tower runs: the config's drop-path, and whether its caller reads only CLS. */
export interface VisionRun {
  configDropPathRate: number;
  configDropPathRule: DropPathRule;
  /** Only the CLS row is read (CLIPModel): the last layer computes it alone, the result is [B, 1, D]. */
  clsOnly?: boolean;
}

/**
 * The vision tower's last hidden state [B, 1 + N (or 1 + K), D], before any pooling or
 * `post_layernorm`: patch embedding (a bias-free conv applied as a matmul on patches), CLS,
 * positions, `pre_layrnorm`, encoder. With `keepIndices` (MAE token removal) only the kept
 * patches are embedded, after their positions are added; CLS stays in front.
 */
export function visionHiddenStates(
  params: ParameterStore,
  v: ClipVisionConfig,
  act: (x: tf.Tensor) => tf.Tensor,
  x: tf.Tensor,
  options: ForwardOptions,
  run: VisionRun,
): tf.Tensor3D {
  const { configDropPathRate, configDropPathRule } = run;
  return tf.tidy(() => {
    const b = x.shape[0];
    const d = v.hiddenSize;
    const embed = (raw: tf.Tensor) => linear(raw, params.get('vision_model.embeddings.patch_embedding.weight'));
    const cls = batchToken(params.get('vision_model.embeddings.class_embedding'), b);
    const positions = params.get('vision_model.embeddings.position_embedding.weight'); // [1 + N, D]
    const n = positions.shape[0] - 1;
    const clsPos = tf.slice(positions, [0, 0], [1, d]);
    let h: tf.Tensor;
    if (options.keepIndices) {
      // MAE token removal before the embedding: the sub pass embeds K patches, not N.
      const kept = embedKeptPatches(patchify(x, v.patchSize), options.keepIndices, embed, tf.slice(positions, [1, 0], [n, d]));
      h = tf.concat([tf.add(cls, clsPos), kept], 1);
    } else {
      h = tf.add(tf.concat([cls, embed(patchify(x, v.patchSize))], 1), tf.expandDims(positions, 0));
    }
    h = layerNorm(h, params.get('vision_model.pre_layrnorm.weight'), params.get('vision_model.pre_layrnorm.bias'), v.layerNormEps);
    const training = options.training ?? false;
    return clipEncoder(params, h, 'vision_model', v, act, {
      // HF CLIP has no hidden dropout: only DropSub's sub pass drops outputs and MLPs.
      drop: passDropoutRates(options, { hidden: 0, attentionProbs: v.attentionDropout }),
      dropPathRate: options.dropPathRate ?? (training ? configDropPathRate : 0),
      dropPathRule: options.dropPathRule ?? configDropPathRule,
      seed: options.seed ?? 0,
      readTokens: run.clsOnly ? 1 : undefined,
    }) as tf.Tensor3D;
  });
}

/** HF's check of `pixel_values` against the vision config, naming the input. */
export function pixelShapeProblem(x: tf.Tensor | undefined, v: ClipVisionConfig): string | undefined {
  const want = `[B, ${v.numChannels}, ${v.imageSize}, ${v.imageSize}]`;
  if (!x) return `needs input 'pixel_values' ${want}`;
  const [, c, h, w] = x.shape;
  if (x.rank !== 4 || c !== v.numChannels || h !== v.imageSize || w !== v.imageSize) return `expected ${want}, got [${x.shape}]`;
  return undefined;
}
