/**
 * The HF CLIP config.json fields this adapter reads (CLIPModel: `text_config`, `vision_config`,
 * `projection_dim`, `logit_scale_init_value`), with HF's defaults and validation.
 */
import { FileFormatError, parseDropPathRule, type DropPathRule, type HFConfig } from '@masksub/core';

/** What both towers share: a pre-LN transformer encoder. */
export interface ClipEncoderConfig {
  hiddenSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  intermediateSize: number;
  hiddenAct: string;
  layerNormEps: number;
  /** Dropout on the attention probabilities (the only dropout CLIP has). */
  attentionDropout: number;
}

export interface ClipTextConfig extends ClipEncoderConfig {
  vocabSize: number;
  maxPositionEmbeddings: number;
  /**
   * Where the text is pooled. transformers keeps the original OpenAI rule for configs written
   * before `eos_token_id` was set properly (the legacy value 2): pool at argmax(input_ids),
   * which is `<|endoftext|>` in the real vocabulary (the largest id). Any other value pools at
   * the first token equal to it.
   */
  eosTokenId: number;
  padTokenId: number;
}

export interface ClipVisionConfig extends ClipEncoderConfig {
  imageSize: number;
  patchSize: number;
  numChannels: number;
}

export interface ClipConfig {
  text: ClipTextConfig;
  vision: ClipVisionConfig;
  projectionDim: number;
  logitScaleInit: number;
  /** HF's initialisation: std multiplier (initializer_factor) and the embeddings' std (vision initializer_range). */
  initializerFactor: number;
  initializerRange: number;
  /** Stochastic depth for the vision tower (timm's drop_path_rate; HF CLIP has none: 0). */
  dropPathRate: number;
  /** How it spreads over the vision blocks (masksub key `drop_path_rule`; 'linear' as timm). */
  dropPathRule: DropPathRule;
}

/** transformers' legacy `eos_token_id` (the CLIP configs written before 4.31). */
export const LEGACY_EOS_TOKEN_ID = 2;

type Section = Record<string, unknown>;

function reader(raw: Section, source: string) {
  const int = (key: string, dflt: number): number => {
    const v = raw[key] ?? dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new FileFormatError(source, `'${key}' must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  };
  const num = (key: string, dflt: number): number => {
    const v = raw[key] ?? dflt;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new FileFormatError(source, `'${key}' must be a number, got ${JSON.stringify(v)}`);
    return v;
  };
  const nonNegative = (key: string, dflt: number): number => {
    const v = num(key, dflt);
    if (v < 0) throw new FileFormatError(source, `'${key}' must be >= 0, got ${v}`);
    return v;
  };
  return { int, num, nonNegative };
}

function encoderConfig(raw: Section, source: string, d: { hidden: number; layers: number; heads: number; inter: number }): ClipEncoderConfig {
  const { int, nonNegative } = reader(raw, source);
  const hiddenSize = int('hidden_size', d.hidden);
  const numAttentionHeads = int('num_attention_heads', d.heads);
  if (hiddenSize % numAttentionHeads) throw new FileFormatError(source, `hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numAttentionHeads}`);
  const eps = nonNegative('layer_norm_eps', 1e-5);
  return {
    hiddenSize,
    numHiddenLayers: int('num_hidden_layers', d.layers),
    numAttentionHeads,
    intermediateSize: int('intermediate_size', d.inter),
    hiddenAct: typeof raw.hidden_act === 'string' ? raw.hidden_act : 'quick_gelu',
    layerNormEps: eps,
    attentionDropout: nonNegative('attention_dropout', 0),
  };
}

function section(raw: HFConfig, key: string, source: string): Section {
  const v = raw[key] ?? {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new FileFormatError(source, `'${key}' must be an object, got ${JSON.stringify(v)}`);
  return v as Section;
}

/** Defaults are HF's CLIPTextConfig / CLIPVisionConfig / CLIPConfig ones (openai/clip-vit-base-patch32). */
export function parseClipConfig(raw: HFConfig, source = 'config.json'): ClipConfig {
  const modelType = raw.model_type ?? 'clip';
  if (modelType !== 'clip') throw new FileFormatError(source, `model_type '${modelType}' is not clip`);
  const t = section(raw, 'text_config', source);
  const v = section(raw, 'vision_config', source);
  const tr = reader(t, `${source} text_config`);
  const vr = reader(v, `${source} vision_config`);
  const text: ClipTextConfig = {
    ...encoderConfig(t, `${source} text_config`, { hidden: 512, layers: 12, heads: 8, inter: 2048 }),
    vocabSize: tr.int('vocab_size', 49408),
    maxPositionEmbeddings: tr.int('max_position_embeddings', 77),
    eosTokenId: tr.num('eos_token_id', LEGACY_EOS_TOKEN_ID),
    padTokenId: tr.num('pad_token_id', 1),
  };
  const vision: ClipVisionConfig = {
    ...encoderConfig(v, `${source} vision_config`, { hidden: 768, layers: 12, heads: 12, inter: 3072 }),
    imageSize: vr.int('image_size', 224),
    patchSize: vr.int('patch_size', 32),
    numChannels: vr.int('num_channels', 3),
  };
  if (vision.imageSize % vision.patchSize) throw new FileFormatError(`${source} vision_config`, `image_size ${vision.imageSize} is not a multiple of patch_size ${vision.patchSize}`);
  const top = reader(raw, source);
  return {
    text,
    vision,
    projectionDim: top.int('projection_dim', 512),
    logitScaleInit: top.num('logit_scale_init_value', 2.6592),
    initializerFactor: top.nonNegative('initializer_factor', 1),
    initializerRange: vr.nonNegative('initializer_range', 0.02),
    dropPathRate: top.nonNegative('drop_path_rate', 0),
    dropPathRule: parseDropPathRule(raw, source),
  };
}
