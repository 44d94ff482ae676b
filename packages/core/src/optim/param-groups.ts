/**
 * Per-parameter hyper-parameters: which parameters get weight decay and how much each one's
 * learning rate is scaled (layer-wise decay, the BEiT/MAE fine-tuning recipe). How parameters
 * group is the model's to say (timm's `group_matcher` / `no_weight_decay`): a model offers
 * {@link ParamGroups} through `MaskSubModel.paramGroups()`, and core knows no parameter names.
 */
import { OptionError } from '../errors.js';

/**
 * How a model's parameters group for the optimizer. Layers count from the input: 0 is the
 * embeddings / stem, 1..numLayers are the blocks in forward order (over every stage), and
 * numLayers + 1 is what follows them (final norm, pooler, head). Layer-wise lr decay scales
 * layer i by decay^(numLayers + 1 - i).
 */
export interface ParamGroups {
  /** Number of blocks between the embeddings and the head. */
  readonly numLayers: number;
  /** The layer of a parameter (by checkpoint name), in [0, numLayers + 1]. */
  layerOf(name: string): number;
  /** Whether a parameter is excluded from weight decay. */
  noWeightDecay(name: string, shape: readonly number[]): boolean;
}

/**
 * timm's rule (`param_groups_weight_decay`, Swin's `set_weight_decay`, MAE's `param_groups_lrd`):
 * no weight decay on biases and on parameters with at most one dimension (norm weights, scalars).
 * Models add their tokens and position tables (timm's `no_weight_decay()`).
 */
export function timmNoWeightDecay(name: string, shape: readonly number[]): boolean {
  return shape.length <= 1 || name.endsWith('.bias');
}

export interface LayeredGroupsSpec {
  numLayers: number;
  /** Parameters of layer 0 (embeddings, stem). */
  embedding(name: string): boolean;
  /** The 0-based block (counted over all stages) a parameter belongs to, or null for none. */
  block(name: string): number | null;
  /** Parameters excluded from weight decay besides {@link timmNoWeightDecay}'s (tokens, position tables). */
  noWeightDecay?(name: string): boolean;
}

/** ParamGroups from the three questions every architecture answers: embeddings, which block, extra no-decay names. */
export function layeredParamGroups(spec: LayeredGroupsSpec): ParamGroups {
  return {
    numLayers: spec.numLayers,
    layerOf(name) {
      if (spec.embedding(name)) return 0;
      const b = spec.block(name);
      if (b === null) return spec.numLayers + 1;
      // A block beyond the model's depth means the rule and the model disagree: clamping would
      // silently give two blocks the same scale.
      if (!Number.isInteger(b) || b < 0 || b >= spec.numLayers) throw new OptionError('layerDecay', `parameter '${name}' is in block ${b} of a ${spec.numLayers}-block model`);
      return b + 1;
    },
    noWeightDecay: (name, shape) => timmNoWeightDecay(name, shape) || (spec.noWeightDecay?.(name) ?? false),
  };
}

/** The block index captured by `pattern`'s first group, or null when the name does not match. */
export function blockIndex(pattern: RegExp, name: string): number | null {
  const m = pattern.exec(name);
  return m ? Number(m[1]) : null;
}

/** Running block offsets of staged models (Swin, ResNet): stage s starts at offsets[s]. */
export function stageOffsets(depths: readonly number[]): number[] {
  const out: number[] = [];
  depths.reduce((sum, d) => (out.push(sum), sum + d), 0);
  return out;
}

/** How per-parameter decay and learning-rate scale are chosen. */
export interface ParamGroupRules {
  /** The model's grouping (`model.paramGroups()`); without it, {@link timmNoWeightDecay} and no layer decay. */
  groups?: ParamGroups;
  /** Layer-wise lr decay factor in (0, 1] (e.g. 0.65 for ViT-B fine-tuning); omit or 1 for none. Needs `groups`. */
  layerDecay?: number;
}

/** What one parameter ends up with. */
export interface ParamHyper {
  /** The weight decay actually applied (0 for no-decay parameters). */
  weightDecay: number;
  /** Multiplies the scheduled learning rate. */
  lrScale: number;
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
  const { groups, layerDecay } = rules;
  if (layerDecay !== undefined) {
    if (!(layerDecay > 0 && layerDecay <= 1)) throw new OptionError('layerDecay', `must be in (0, 1], got ${layerDecay}`);
    if (layerDecay < 1 && !groups) throw new OptionError('layerDecay', 'needs the model\'s parameter groups (paramGroups()): without them no parameter has a layer');
  }
  if (groups && !(Number.isInteger(groups.numLayers) && groups.numLayers >= 0)) {
    throw new OptionError('paramGroups.numLayers', `must be a non-negative integer, got ${groups.numLayers}`);
  }
  const noDecay = groups ? (n: string, s: readonly number[]) => groups.noWeightDecay(n, s) : timmNoWeightDecay;
  const out = new Map<string, ParamHyper>();
  for (const [name, p] of params) {
    let lrScale = 1;
    if (groups && layerDecay !== undefined && layerDecay < 1) {
      const id = groups.layerOf(name);
      if (!(Number.isInteger(id) && id >= 0 && id <= groups.numLayers + 1)) {
        throw new OptionError('paramGroups.layerOf', `'${name}' is in layer ${id}, outside 0..${groups.numLayers + 1}`);
      }
      lrScale = layerDecayScale(id, groups.numLayers, layerDecay);
    }
    out.set(name, { weightDecay: noDecay(name, p.shape) ? 0 : baseWeightDecay, lrScale });
  }
  return out;
}
