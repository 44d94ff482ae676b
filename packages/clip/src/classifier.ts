/**
 * FT-CLIP (MaskSub paper, Table 3): a CLIP checkpoint's vision tower with a new linear head, in
 * the layout of HF `CLIPForImageClassification`, so the fine-tuned folder loads in transformers:
 * `vision_model.*` (CLIPVisionTransformer) and `classifier` Linear(vision hidden_size,
 * num_labels). As transformers does, the logits come from the mean of the patch tokens of the
 * last hidden state (CLS excluded, before `post_layernorm`, which only CLIPModel's CLS pooling
 * uses); the text tower and both projections of a CLIPModel checkpoint are not part of it.
 *
 * MaskSub: MAE token removal on the patches (the default), so the sub pass pools the mean of the
 * K kept patch tokens; zero-fill of 32 px squares as for CLIPModel.
 */
import {
  FileFormatError,
  OptionError,
  ParameterStore,
  Rng,
  activation,
  linear,
  tf,
  tokenRemoval,
  zeroFill,
  type AdapterModel,
  type DropKind,
  type DropOperator,
  type ForwardOptions,
  type HFConfig,
  type ModelInputs,
} from '@masksub/core';
import { parseClipConfig, type ClipConfig } from './config.js';
import { pixelShapeProblem, visionHiddenStates } from './tower.js';
import { clipClassifierParamSpecs, clipParamSpecs } from './weights.js';
import { clipClassifierParamGroups } from './param-groups.js';
import type { ParamGroups } from '@masksub/core';

/** HF's class names, as config.json `architectures` carries them. */
export const CLIP_MODEL_ARCHITECTURE = 'CLIPModel';
export const CLIP_CLASSIFIER_ARCHITECTURE = 'CLIPForImageClassification';
/** What the clip adapter builds; a config without `architectures` is a CLIPModel. */
export const CLIP_ARCHITECTURES = [CLIP_MODEL_ARCHITECTURE, CLIP_CLASSIFIER_ARCHITECTURE] as const;

/** Whether a CLIP config.json asks for the classifier (its `architectures[0]`). */
export function isClipClassifierConfig(config: Readonly<HFConfig>): boolean {
  const a = config.architectures;
  return Array.isArray(a) && a[0] === CLIP_CLASSIFIER_ARCHITECTURE;
}

/** num_labels, else the size of id2label (HF's rule); the classifier has no default. */
export function clipClassifierLabels(config: Readonly<HFConfig>, source = 'config.json'): number {
  const n = config.num_labels;
  if (n !== undefined) {
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) throw new FileFormatError(source, `'num_labels' must be a positive integer, got ${JSON.stringify(n)}`);
    return n;
  }
  const id2label = config.id2label;
  if (id2label && typeof id2label === 'object' && Object.keys(id2label).length > 0) return Object.keys(id2label).length;
  throw new FileFormatError(
    source,
    `${CLIP_CLASSIFIER_ARCHITECTURE} needs 'num_labels' (or id2label); a CLIPModel checkpoint gets it from the run's num_labels or the data's class count`,
  );
}

const modelOnlyCache = new WeakMap<object, Set<string>>();

/**
 * Tensors of a CLIPModel checkpoint that the classifier built from it does not have (text tower,
 * projections, logit_scale): exactly these are skipped, anything else unknown is still an error.
 */
export function clipModelOnlyWeights(config: Readonly<HFConfig>): ReadonlySet<string> {
  let set = modelOnlyCache.get(config);
  if (!set) {
    const cfg = parseClipConfig(config);
    const kept = new Set(clipClassifierParamSpecs(cfg, 1).map((s) => s.name));
    set = new Set(clipParamSpecs(cfg).map((s) => s.name).filter((n) => !kept.has(n)));
    modelOnlyCache.set(config, set);
  }
  return set;
}

export class ClipVisionClassifier implements AdapterModel {
  readonly architecture = 'clip';
  readonly params: ParameterStore;
  readonly cfg: ClipConfig;
  readonly config: Readonly<HFConfig>;
  readonly numClasses: number;
  readonly defaultDrop: DropKind = 'token-removal';
  private readonly act: (x: tf.Tensor) => tf.Tensor;

  constructor(config: Readonly<HFConfig>, options: { rng?: Rng } = {}) {
    this.cfg = parseClipConfig(config);
    this.numClasses = clipClassifierLabels(config);
    // What transformers needs to rebuild this class from the saved folder.
    this.config = { ...config, architectures: [CLIP_CLASSIFIER_ARCHITECTURE], num_labels: this.numClasses };
    this.act = activation(this.cfg.vision.hiddenAct);
    this.params = new ParameterStore(clipClassifierParamSpecs(this.cfg, this.numClasses), options.rng ?? new Rng(0));
  }

  /** Layer ids for layer-wise lr decay and the no-weight-decay parameters (see param-groups.ts). */
  paramGroups(): ParamGroups {
    return clipClassifierParamGroups(this.cfg.vision.numHiddenLayers);
  }

  get numPatches(): number {
    return (this.cfg.vision.imageSize / this.cfg.vision.patchSize) ** 2;
  }

  /** Token removal (default, MAE style) or zero-fill of 32 px squares. */
  dropOperator(kind: DropKind): DropOperator {
    switch (kind) {
      case 'token-removal':
        return tokenRemoval(this.numPatches);
      case 'zero-fill':
        return zeroFill(Math.min(32, this.cfg.vision.imageSize));
      default:
        throw new OptionError('drop', `the CLIP classifier offers token-removal and zero-fill, not '${kind}' (dropout/drop-path are the dropsub/pathsub variants)`);
    }
  }

  /** HF's `last_hidden_state` of the vision tower [B, 1 + N (1 + K with token removal), hidden_size]. */
  lastHiddenState(inputs: ModelInputs, options: ForwardOptions = {}): tf.Tensor3D {
    const problem = pixelShapeProblem(inputs.pixel_values, this.cfg.vision);
    if (problem) throw new OptionError('pixel_values', `CLIP classifier ${problem}${inputs.pixel_values ? '' : `, got [${Object.keys(inputs)}]`}`);
    return visionHiddenStates(this.params, this.cfg.vision, this.act, inputs.pixel_values!, options, {
      configDropPathRate: this.cfg.dropPathRate,
      configDropPathRule: this.cfg.dropPathRule,
    });
  }

  /** The mean of the patch tokens of the last hidden state [B, hidden_size]: what the head sees. */
  pooledFeatures(inputs: ModelInputs, options: ForwardOptions = {}): tf.Tensor2D {
    return tf.tidy(() => {
      const h = this.lastHiddenState(inputs, options);
      const [b, t, d] = h.shape;
      return tf.mean(tf.slice(h, [0, 1, 0], [b, t - 1, d]), 1) as tf.Tensor2D;
    });
  }

  /** Logits [B, num_labels]. */
  forward(inputs: ModelInputs, options: ForwardOptions = {}): tf.Tensor {
    return tf.tidy(() => linear(this.pooledFeatures(inputs, options), this.params.get('classifier.weight'), this.params.get('classifier.bias')));
  }

  dispose(): void {
    this.params.dispose();
  }
}
