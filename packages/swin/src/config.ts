/** The HF Swin config.json fields this adapter reads, with HF's defaults and validation. */
import { FileFormatError, parseDropPathRule, type DropPathRule, type HFConfig } from '@masksub/core';

export interface SwinConfig {
  modelType: 'swin';
  imageSize: [number, number];
  patchSize: number;
  numChannels: number;
  /** Channels of the first stage; stage i has embedDim * 2^i. */
  embedDim: number;
  /** Blocks per stage. */
  depths: number[];
  /** Attention heads per stage. */
  numHeads: number[];
  /** Side of the attention windows, in tokens (shrunk per stage to the resolution when that is not larger). */
  windowSize: number;
  mlpRatio: number;
  qkvBias: boolean;
  hiddenAct: string;
  /** eps of the block norms and the final norm (the embedding and patch-merging norms use PyTorch's 1e-5, as HF). */
  layerNormEps: number;
  numLabels: number;
  hiddenDropoutProb: number;
  attentionProbsDropoutProb: number;
  /** Stochastic depth, rising linearly from 0 over all blocks (HF/timm: linspace(0, rate, sum(depths))). */
  dropPathRate: number;
  /** How it spreads over the blocks of all stages (masksub key `drop_path_rule`; 'linear' as HF/timm). */
  dropPathRule: DropPathRule;
}

export function parseSwinConfig(raw: HFConfig, source = 'config.json'): SwinConfig {
  const positiveInt = (key: string, v: unknown): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new FileFormatError(source, `'${key}' must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  };
  const int = (key: string, dflt: number): number => positiveInt(key, raw[key] ?? dflt);
  const num = (key: string, dflt: number): number => {
    const v = raw[key] ?? dflt;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new FileFormatError(source, `'${key}' must be a number >= 0, got ${JSON.stringify(v)}`);
    return v;
  };
  const intList = (key: string, dflt: number[]): number[] => {
    const v = raw[key] ?? dflt;
    if (!Array.isArray(v) || v.length === 0) throw new FileFormatError(source, `'${key}' must be a non-empty list of positive integers, got ${JSON.stringify(v)}`);
    return v.map((x, i) => positiveInt(`${key}[${i}]`, x));
  };
  const pairOrInt = (key: string, dflt: number): [number, number] => {
    const v = raw[key] ?? dflt;
    const pair = Array.isArray(v) ? [v[0], v[1]] : [v, v];
    return [positiveInt(key, pair[0]), positiveInt(key, pair[1])];
  };

  const modelType = raw.model_type ?? 'swin';
  if (modelType !== 'swin') throw new FileFormatError(source, `model_type '${modelType}' is not swin`);
  const imageSize = pairOrInt('image_size', 224);
  const [patchH, patchW] = pairOrInt('patch_size', 4);
  if (patchH !== patchW) throw new FileFormatError(source, `'patch_size' must be square, got [${patchH}, ${patchW}]`);
  const windowSize = int('window_size', 7);
  const embedDim = int('embed_dim', 96);
  const depths = intList('depths', [2, 2, 6, 2]);
  const numHeads = intList('num_heads', [3, 6, 12, 24]);
  if (numHeads.length !== depths.length) throw new FileFormatError(source, `'num_heads' has ${numHeads.length} stages but 'depths' has ${depths.length}`);
  numHeads.forEach((h, i) => {
    const dim = embedDim * 2 ** i;
    if (dim % h) throw new FileFormatError(source, `stage ${i}: ${dim} channels (embed_dim * 2^${i}) are not a multiple of num_heads[${i}] = ${h}`);
  });
  // HF declares absolute position embeddings of num_patches + 1 rows that cannot be added to the
  // num_patches tokens, so no working checkpoint uses them; refuse rather than guess a layout.
  if (raw.use_absolute_embeddings === true) throw new FileFormatError(source, `'use_absolute_embeddings: true' is not supported by the swin adapter`);
  const id2label = raw.id2label as Record<string, string> | undefined;
  const numLabels = typeof raw.num_labels === 'number' ? raw.num_labels : id2label ? Object.keys(id2label).length : 2;
  const mlpRatio = num('mlp_ratio', 4);
  if (mlpRatio <= 0) throw new FileFormatError(source, `'mlp_ratio' must be > 0, got ${mlpRatio}`);
  return {
    modelType,
    imageSize,
    patchSize: patchH,
    numChannels: int('num_channels', 3),
    embedDim,
    depths,
    numHeads,
    windowSize,
    mlpRatio,
    qkvBias: raw.qkv_bias === undefined ? true : Boolean(raw.qkv_bias),
    hiddenAct: typeof raw.hidden_act === 'string' ? raw.hidden_act : 'gelu',
    layerNormEps: num('layer_norm_eps', 1e-5),
    numLabels,
    hiddenDropoutProb: num('hidden_dropout_prob', 0),
    attentionProbsDropoutProb: num('attention_probs_dropout_prob', 0),
    dropPathRate: num('drop_path_rate', 0.1),
    dropPathRule: parseDropPathRule(raw, source),
  };
}

/** Channels of stage i. */
export function stageDim(c: SwinConfig, stage: number): number {
  return c.embedDim * 2 ** stage;
}

/** Channels of the last stage: what the final norm, the pooling and the classifier see (HF num_features). */
export function numFeatures(c: SwinConfig): number {
  return stageDim(c, c.depths.length - 1);
}

/** Hidden size of a block's MLP: int(mlp_ratio * dim), as HF. */
export function mlpDim(c: SwinConfig, dim: number): number {
  return Math.floor(c.mlpRatio * dim);
}
