/**
 * Per-parameter hyper-parameters: which parameters get weight decay and how much each one's
 * learning rate is scaled (layer-wise decay, the BEiT/MAE fine-tuning recipe). Everything is a
 * pure function of the HF checkpoint name and shape, so adapters can swap in their own rules.
 */
import { OptionError } from '../errors.js';

/** Decides whether a parameter is excluded from weight decay. */
export type NoDecayRule = (name: string, shape: readonly number[]) => boolean;

/** Maps a parameter name to its depth: 0 = embeddings, i+1 = block i, numLayers+1 = head/final norm. */
export type LayerIdRule = (name: string, numLayers: number) => number;

export interface LayerDecayOptions {
  /** Multiplier per layer away from the head (e.g. 0.65 for ViT-B fine-tuning); 1 disables. */
  decay: number;
  /** Number of transformer blocks (encoder layers). */
  numLayers: number;
  /** How names map to depths; defaults to {@link layerId} (ViT/DeiT/BERT/CLIP names). */
  layerId?: LayerIdRule;
}

/** How per-parameter decay and learning-rate scale are chosen. */
export interface ParamGroupRules {
  /** Defaults to {@link defaultNoDecay}. */
  noDecay?: NoDecayRule;
  /** Omit for no layer-wise decay (every scale 1). */
  layerDecay?: LayerDecayOptions;
}

/** What one parameter ends up with. */
export interface ParamHyper {
  /** The weight decay actually applied (0 for no-decay parameters). */
  weightDecay: number;
  /** Multiplies the scheduled learning rate. */
  lrScale: number;
}

/**
 * Parameter names whose last module segment (or the parameter itself) is a token/table that
 * should not be pulled to zero. Matched on whole dot-separated segments so that e.g.
 * `position_embeddings.weight` (BERT, an nn.Embedding) and `position_embeddings` (ViT, a bare
 * Parameter) are both caught, while `word_embeddings` is not.
 */
const NO_DECAY_SEGMENTS = new Set([
  'cls_token',
  'class_embedding', // CLIP's cls token
  'mask_token',
  'dist_token',
  'distillation_token', // HF DeiT's name for dist_token
  'position_embeddings',
  'position_embedding', // CLIP
  'relative_position_bias_table',
  'logit_scale',
]);

/**
 * timm/BEiT convention: no weight decay on biases, normalisation weights, tokens and position
 * tables, and on every parameter with at most one dimension (which covers all of the above for
 * the usual layers, plus scalars such as CLIP's `logit_scale`).
 */
export function defaultNoDecay(name: string, shape: readonly number[]): boolean {
  if (shape.length <= 1) return true;
  const segments = name.split('.');
  const last = segments[segments.length - 1];
  if (last === 'bias') return true;
  if (segments.some((s) => NO_DECAY_SEGMENTS.has(s))) return true;
  // LayerNorm / layernorm_before / layer_norm1 / pre_layrnorm / normalization (BN): a norm's
  // affine weight should stay near 1, decaying it towards 0 hurts (and only 1-D ones exist in
  // practice, this catches odd shapes too). The parameter leaf itself is not examined.
  return segments.slice(0, -1).some((s) => /norm/i.test(s));
}

const EMBEDDING_STAGE = /(^|\.)(embeddings|pre_layrnorm)\./;
const BLOCK_INDEX = /(^|\.)encoder\.layers?\.(\d+)\./;

/**
 * Depth of a ViT/DeiT/BERT/CLIP-vision parameter, as in BEiT's `get_layer_id_for_vit`:
 * embeddings (patch/position/cls/mask tokens, and CLIP's pre-norm that acts on them) -> 0,
 * `encoder.layer.i.` / `encoder.layers.i.` -> i+1, everything else (final norm, pooler, head)
 * -> numLayers+1.
 */
export function layerId(name: string, numLayers: number): number {
  if (EMBEDDING_STAGE.test(name)) return 0;
  const block = BLOCK_INDEX.exec(name);
  if (block) {
    const i = Number(block[2]);
    // A block index beyond numLayers means the option is wrong for this model: clamping would
    // silently give two blocks the same scale.
    if (i >= numLayers) {
      throw new OptionError('layerDecay.numLayers', `is ${numLayers} but parameter '${name}' is in block ${i}`);
    }
    return i + 1;
  }
  return numLayers + 1;
}

/** decay^(numLayers+1-id): the head learns at the full rate, the embeddings at decay^(numLayers+1). */
export function layerDecayScale(id: number, numLayers: number, decay: number): number {
  return Math.pow(decay, numLayers + 1 - id);
}

/** Resolves weight decay and lr scale of every parameter once (they do not change while training). */
export function resolveParamHypers(
  params: ReadonlyMap<string, { shape: readonly number[] }>,
  baseWeightDecay: number,
  rules: ParamGroupRules = {},
): Map<string, ParamHyper> {
  const noDecay = rules.noDecay ?? defaultNoDecay;
  const ld = rules.layerDecay;
  if (ld) {
    if (!(ld.decay > 0 && ld.decay <= 1)) throw new OptionError('layerDecay.decay', `must be in (0, 1], got ${ld.decay}`);
    if (!Number.isInteger(ld.numLayers) || ld.numLayers < 0) {
      throw new OptionError('layerDecay.numLayers', `must be a non-negative integer, got ${ld.numLayers}`);
    }
  }
  const idOf = ld?.layerId ?? layerId;
  const out = new Map<string, ParamHyper>();
  for (const [name, p] of params) {
    const lrScale = ld ? layerDecayScale(idOf(name, ld.numLayers), ld.numLayers, ld.decay) : 1;
    out.set(name, { weightDecay: noDecay(name, p.shape) ? 0 : baseWeightDecay, lrScale });
  }
  return out;
}
