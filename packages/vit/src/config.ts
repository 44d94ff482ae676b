/** The HF ViT / DeiT config.json fields this adapter reads, with defaults and validation. */
import { FileFormatError, parseDropPathRule, type DropPathRule, type HFConfig } from '@masksub/core';

export interface ViTConfig {
  modelType: 'vit' | 'deit';
  hiddenSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  intermediateSize: number;
  hiddenAct: string;
  layerNormEps: number;
  imageSize: [number, number];
  patchSize: number;
  numChannels: number;
  qkvBias: boolean;
  numLabels: number;
  hiddenDropoutProb: number;
  attentionProbsDropoutProb: number;
  /** Stochastic depth of the main model (timm's drop_path_rate; HF ViT has none: 0). */
  dropPathRate: number;
  /** How it spreads over the blocks (masksub key `drop_path_rule`; 'linear' as timm, 'uniform' for DeiT-III). */
  dropPathRule: DropPathRule;
}

export function parseViTConfig(raw: HFConfig, source = 'config.json'): ViTConfig {
  const int = (key: string, dflt?: number): number => {
    const v = raw[key] ?? dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new FileFormatError(source, `'${key}' must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  };
  const num = (key: string, dflt: number): number => {
    const v = raw[key] ?? dflt;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new FileFormatError(source, `'${key}' must be a number >= 0, got ${JSON.stringify(v)}`);
    return v;
  };
  const modelType = raw.model_type ?? 'vit';
  if (modelType !== 'vit' && modelType !== 'deit') throw new FileFormatError(source, `model_type '${modelType}' is not vit or deit`);
  const img = raw.image_size ?? 224;
  const imageSize: [number, number] = Array.isArray(img) ? [Number(img[0]), Number(img[1])] : [Number(img), Number(img)];
  if (!imageSize.every((d) => Number.isInteger(d) && d > 0)) throw new FileFormatError(source, `'image_size' must be a positive integer or a pair, got ${JSON.stringify(img)}`);
  const patchSize = Array.isArray(raw.patch_size) ? Number(raw.patch_size[0]) : int('patch_size', 16);
  if (imageSize[0] % patchSize || imageSize[1] % patchSize) throw new FileFormatError(source, `image_size ${imageSize} is not a multiple of patch_size ${patchSize}`);
  const hiddenSize = int('hidden_size', 768);
  const numAttentionHeads = int('num_attention_heads', 12);
  if (hiddenSize % numAttentionHeads) throw new FileFormatError(source, `hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numAttentionHeads}`);
  const id2label = raw.id2label as Record<string, string> | undefined;
  const numLabels = typeof raw.num_labels === 'number' ? raw.num_labels : id2label ? Object.keys(id2label).length : 2;
  return {
    modelType,
    hiddenSize,
    numHiddenLayers: int('num_hidden_layers', 12),
    numAttentionHeads,
    intermediateSize: int('intermediate_size', 3072),
    hiddenAct: typeof raw.hidden_act === 'string' ? raw.hidden_act : 'gelu',
    layerNormEps: num('layer_norm_eps', 1e-12),
    imageSize,
    patchSize,
    numChannels: int('num_channels', 3),
    qkvBias: raw.qkv_bias === undefined ? true : Boolean(raw.qkv_bias),
    numLabels,
    hiddenDropoutProb: num('hidden_dropout_prob', 0),
    attentionProbsDropoutProb: num('attention_probs_dropout_prob', 0),
    dropPathRate: num('drop_path_rate', 0),
    dropPathRule: parseDropPathRule(raw, source),
  };
}
