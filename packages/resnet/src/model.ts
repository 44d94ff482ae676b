/**
 * HF ResNet (ResNetForImageClassification) in tfjs ops, NHWC inside, `pixel_values` NCHW in:
 * embedder (7x7/2 conv + BN + act, 3x3/2 max-pool), stages of basic or bottleneck layers
 * (1x1 conv + BN shortcut where the shape changes), global average pool, Linear head.
 * The MaskSub sub pass is zero-fill of 32 px squares of the normalised input.
 *
 * Batch norm follows `bnMode` (config key `bn_mode`, default 'train'; see BatchNormMode): batch
 * statistics in training passes, running statistics updated by both MaskSub passes (main, then
 * sub), as the official two-forward step in train mode does (augsub resnet_rsb/train.py:594
 * `model.train()`); 'eval' keeps the running statistics ("frozen" BN, what the hf-tiny reference
 * fixtures use).
 */
import {
  OptionError,
  Rng,
  activation,
  blockDropPathRate,
  dropPath,
  dropout,
  layerSeed,
  linear,
  tf,
  zeroFill,
  type AdapterModel,
  type DropKind,
  type DropOperator,
  type ForwardOptions,
  type HFConfig,
  type ModelInputs,
  type ParamSpec,
} from '@masksub/core';
import { parseResNetConfig, type ResNetConfig } from './config.js';
import { batchNorm2d, conv2dTorch, maxPool3x3s2, type BatchNormMode, type ConvUnit } from './layers.js';
import { ConvBnParameterStore } from './store.js';
import { resnetParamGroups } from './param-groups.js';
import type { ParamGroups } from '@masksub/core';

export interface ResNetModelOptions {
  rng?: Rng;
  /** Overrides the config's `bn_mode`. */
  bnMode?: BatchNormMode;
}

/** A conv unit's activation: 'relu' (fused into batch norm where possible) or any function. */
export type UnitActivation = 'relu' | ((x: tf.Tensor) => tf.Tensor);

/** Per-pass options: a pass may override the model's batch-norm mode. */
/** ForwardOptions' `bnMode` is the BatchNormMode. */
export type ResNetForwardOptions = ForwardOptions;

interface LayerPlan {
  prefix: string;
  /** The layer's conv units in order, and which ones end without activation (the last). */
  convs: ConvUnit[];
  shortcut: ConvUnit | null;
}

/** HF ResNetConvLayer names: `<prefix>.convolution` + `<prefix>.normalization`. */
function hfUnit(prefix: string, inChannels: number, outChannels: number, kernel: number, stride: number): ConvUnit {
  return { conv: `${prefix}.convolution`, norm: `${prefix}.normalization`, inChannels, outChannels, kernel, stride };
}

/** The layers of HF's ResNetEncoder, in order, with their conv units. */
export function resnetPlan(c: ResNetConfig): { stem: ConvUnit; layers: LayerPlan[] } {
  const stem = hfUnit('resnet.embedder.embedder', c.numChannels, c.embeddingSize, 7, 2);
  const layers: LayerPlan[] = [];
  let inChannels = c.embeddingSize;
  c.hiddenSizes.forEach((out, s) => {
    const stageStride = s === 0 ? (c.downsampleInFirstStage ? 2 : 1) : 2;
    for (let l = 0; l < c.depths[s]; l++) {
      const prefix = `resnet.encoder.stages.${s}.layers.${l}`;
      const stride = l === 0 ? stageStride : 1;
      const inC = l === 0 ? inChannels : out;
      const shortcut = inC !== out || stride !== 1 ? hfUnit(`${prefix}.shortcut`, inC, out, 1, stride) : null;
      let convs: ConvUnit[];
      if (c.layerType === 'basic') {
        convs = [hfUnit(`${prefix}.layer.0`, inC, out, 3, stride), hfUnit(`${prefix}.layer.1`, out, out, 3, 1)];
      } else {
        const reduced = Math.floor(out / 4);
        convs = [
          hfUnit(`${prefix}.layer.0`, inC, reduced, 1, c.downsampleInBottleneck ? stride : 1),
          hfUnit(`${prefix}.layer.1`, reduced, reduced, 3, c.downsampleInBottleneck ? 1 : stride),
          hfUnit(`${prefix}.layer.2`, reduced, out, 1, 1),
        ];
      }
      layers.push({ prefix, convs, shortcut });
    }
    inChannels = out;
  });
  return { stem, layers };
}

export function resnetConvUnits(c: ResNetConfig): ConvUnit[] {
  const { stem, layers } = resnetPlan(c);
  return [stem, ...layers.flatMap((l) => (l.shortcut ? [l.shortcut, ...l.convs] : l.convs))];
}

export function resnetHeadSpecs(c: ResNetConfig): ParamSpec[] {
  const d = c.hiddenSizes[c.hiddenSizes.length - 1];
  const bound = 1 / Math.sqrt(d); // PyTorch Linear's default init
  return [
    { name: 'classifier.1.weight', shape: [c.numLabels, d], layout: 'linear', init: { uniform: bound } },
    { name: 'classifier.1.bias', shape: [c.numLabels], layout: 'identity', init: { uniform: bound } },
  ];
}

/** Hub tensors a classifier checkpoint may carry that the model does not use. */
export function resnetIgnoredWeights(name: string): boolean {
  return name.endsWith('.num_batches_tracked');
}

/**
 * Shared forward machinery of both ResNet model types: conv units (with or without folded BN),
 * the BN mode, the zero-fill drop operator, input checks.
 */
export abstract class ConvNetBase {
  abstract readonly params: ConvBnParameterStore;
  abstract bnMode: BatchNormMode;
  readonly defaultDrop: DropKind = 'zero-fill';
  protected abstract readonly inputChannels: number;
  protected abstract readonly name: string;

  /** Whether this pass normalises by batch statistics. */
  protected batchStatistics(options: ResNetForwardOptions): boolean {
    return (options.bnMode ?? this.bnMode) === 'train' && (options.training ?? false);
  }

  /**
   * conv -> BN (or folded bias) -> + residual (optional) -> activation (optional). 'relu' (with
   * or without the residual) is handed to the batch norm, which fuses it where it can; another
   * activation function is applied after.
   */
  protected unit(x: tf.Tensor4D, u: ConvUnit, batchStats: boolean, act?: UnitActivation, residual?: tf.Tensor4D): tf.Tensor4D {
    const p = this.params;
    let y = conv2dTorch(x, p.get(`${u.conv}.weight`) as tf.Tensor as tf.Tensor4D, u.stride);
    if (p.folded) {
      y = tf.add(y, p.get(`${u.conv}.bias`));
      if (residual !== undefined) y = tf.add(y, residual);
      if (act === 'relu') return tf.relu(y);
      return act ? (act(y) as tf.Tensor4D) : y;
    }
    const fused = act === 'relu' || act === undefined;
    y = batchNorm2d(
      y,
      { weight: p.get(`${u.norm}.weight`), bias: p.get(`${u.norm}.bias`), runningMean: p.get(`${u.norm}.running_mean`), runningVar: p.get(`${u.norm}.running_var`) },
      batchStats,
      undefined,
      undefined,
      fused ? { residual, relu: act === 'relu' } : {},
    );
    if (fused) return y;
    if (residual !== undefined) y = tf.add(y, residual);
    return act(y) as tf.Tensor4D;
  }

  /** Side of the zero-filled squares in pixels. */
  protected abstract readonly zeroFillPatch: number;

  /** Zero-fill of `zeroFillPatch` px squares; dropout/drop-path come as the dropsub/pathsub variants. */
  dropOperator(kind: DropKind): DropOperator {
    if (kind === 'zero-fill') return zeroFill(this.zeroFillPatch);
    throw new OptionError('drop', `${this.name} offers zero-fill, not '${kind}' (dropout/drop-path are the dropsub/pathsub variants)`);
  }

  /** `pixel_values` [B, C, H, W] -> NHWC. */
  protected inputNHWC(inputs: ModelInputs): tf.Tensor4D {
    const x = inputs.pixel_values;
    if (!x) throw new OptionError('pixel_values', `${this.name} needs input 'pixel_values' [B, ${this.inputChannels}, H, W], got [${Object.keys(inputs)}]`);
    if (x.rank !== 4 || x.shape[1] !== this.inputChannels) {
      throw new OptionError('pixel_values', `expected [B, ${this.inputChannels}, H, W], got [${x.shape}]`);
    }
    return tf.transpose(x as tf.Tensor4D, [0, 2, 3, 1]);
  }

  /**
   * Fold every batch norm into its conv (as ONNX exporters do): eval-mode outputs unchanged, no
   * batch norm left to train. Irreversible for this instance.
   */
  foldBatchNorm(): void {
    this.params.foldBatchNorm();
  }

  dispose(): void {
    this.params.dispose();
  }
}

export class ResNetModel extends ConvNetBase implements AdapterModel {
  readonly architecture = 'resnet';
  readonly params: ConvBnParameterStore;
  readonly cfg: ResNetConfig;
  bnMode: BatchNormMode;
  protected readonly name = 'ResNet';
  /** The paper's 32 px squares (at 224 px ImageNet inputs). */
  protected readonly zeroFillPatch = 32;
  protected readonly inputChannels: number;
  private readonly act: UnitActivation;
  private readonly plan: ReturnType<typeof resnetPlan>;

  constructor(
    readonly config: Readonly<HFConfig>,
    options: ResNetModelOptions = {},
  ) {
    super();
    this.cfg = parseResNetConfig(config);
    this.bnMode = options.bnMode ?? this.cfg.bnMode;
    this.inputChannels = this.cfg.numChannels;
    // ReLU by name, so the conv units can fuse it; other activations as functions.
    this.act = this.cfg.hiddenAct === 'relu' ? 'relu' : activation(this.cfg.hiddenAct);
    this.plan = resnetPlan(this.cfg);
    this.params = new ConvBnParameterStore(resnetConvUnits(this.cfg), resnetHeadSpecs(this.cfg), options.rng ?? new Rng(0));
  }

  /** Layer ids for layer-wise lr decay and the no-weight-decay parameters (see param-groups.ts). */
  paramGroups(): ParamGroups {
    return resnetParamGroups(this.cfg.depths);
  }

  get numClasses(): number {
    return this.cfg.numLabels;
  }

  forward(inputs: ModelInputs, options: ResNetForwardOptions = {}): tf.Tensor {
    return tf.tidy(() => {
      const nhwc = this.inputNHWC(inputs);
      const bs = this.batchStatistics(options);
      const training = options.training ?? false;
      // Stochastic depth on the residual branch: the config's in training passes, PathSub's in its sub pass.
      const pathRate = options.dropPathRate ?? (training ? this.cfg.dropPathRate : 0);
      const pathRule = options.dropPathRule ?? this.cfg.dropPathRule;
      const seed = options.seed ?? 0;
      let h = maxPool3x3s2(this.unit(nhwc, this.plan.stem, bs, this.act));
      const n = this.plan.layers.length;
      this.plan.layers.forEach((layer, i) => {
        const residual = layer.shortcut ? this.unit(h, layer.shortcut, bs) : h;
        // timm's ResNet: block i of n (over all stages) drops with drop_path_rate * i / (n - 1).
        const rate = training ? blockDropPathRate(pathRate, pathRule, i, n) : 0;
        const last = layer.convs.length - 1;
        let y = h;
        // Inner convs of HF's layers use ReLU (ResNetConvLayer's default), the block output hidden_act.
        layer.convs.slice(0, last).forEach((u) => {
          y = this.unit(y, u, bs, 'relu');
        });
        if (rate > 0) {
          // Drop path sits between the last BN and the residual add: nothing to fuse.
          const out = tf.add(dropPath(this.unit(y, layer.convs[last], bs), rate, layerSeed(seed, i, 0)), residual) as tf.Tensor4D;
          h = (this.act === 'relu' ? tf.relu(out) : this.act(out)) as tf.Tensor4D;
        } else {
          h = this.unit(y, layer.convs[last], bs, this.act, residual);
        }
      });
      let pooled = tf.mean(h, [1, 2]);
      // DropSub: dropout before the head (timm ResNet's drop_rate).
      if (training && options.dropoutRate) pooled = dropout(pooled, options.dropoutRate, layerSeed(seed, n, 1));
      return linear(pooled, this.params.get('classifier.1.weight'), this.params.get('classifier.1.bias'));
    });
  }
}
