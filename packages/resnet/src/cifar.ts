/**
 * `resnet_cifar`: the CIFAR ResNets of He et al. 2015 as akamaster/pytorch_resnet_cifar10's
 * resnet.py builds them (ResNet-20/32/44/56/110): 3x3 stem conv + BN + ReLU (no max-pool), three
 * stages of BasicBlocks, option-A parameter-free shortcuts, global average pool, `linear` head.
 * PyTorch state-dict names (`conv1.weight`, `bn1.running_mean`, `layer1.0.conv1.weight`, ...).
 */
import { Rng, blockDropPathRate, dropPath, dropout, layerSeed, linear, tf, type AdapterModel, type HFConfig, type ModelInputs, type ParamSpec } from '@masksub/core';
import { parseResNetCifarConfig, type ResNetCifarConfig } from './config.js';
import type { BatchNormMode, ConvUnit } from './layers.js';
import { ConvNetBase, type ResNetForwardOptions, type ResNetModelOptions } from './model.js';
import { ConvBnParameterStore } from './store.js';
import { resnetCifarParamGroups } from './param-groups.js';
import type { ParamGroups } from '@masksub/core';

interface BlockPlan {
  conv1: ConvUnit;
  conv2: ConvUnit;
  /** Option-A shortcut: stride and zero channels added on each side (null = identity). */
  shortcut: { stride: number; padChannels: number; inChannels: number } | null;
}

function unit(conv: string, norm: string, inChannels: number, outChannels: number, stride: number): ConvUnit {
  return { conv, norm, inChannels, outChannels, kernel: 3, stride };
}

export function resnetCifarPlan(c: ResNetCifarConfig): { stem: ConvUnit; blocks: BlockPlan[] } {
  const stem = unit('conv1', 'bn1', c.numChannels, 16, 1);
  const blocks: BlockPlan[] = [];
  let inC = 16;
  c.widths.forEach((planes, s) => {
    for (let b = 0; b < c.blocksPerStage[s]; b++) {
      const stride = b === 0 ? c.strides[s] : 1;
      const p = `layer${s + 1}.${b}`;
      const shortcut = stride !== 1 || inC !== planes ? { stride, padChannels: Math.floor(planes / 4), inChannels: inC } : null;
      blocks.push({ conv1: unit(`${p}.conv1`, `${p}.bn1`, inC, planes, stride), conv2: unit(`${p}.conv2`, `${p}.bn2`, planes, planes, 1), shortcut });
      inC = planes;
    }
  });
  return { stem, blocks };
}

export function resnetCifarHeadSpecs(c: ResNetCifarConfig): ParamSpec[] {
  const d = c.widths[c.widths.length - 1];
  const bound = 1 / Math.sqrt(d);
  return [
    { name: 'linear.weight', shape: [c.numLabels, d], layout: 'linear', init: { uniform: bound } },
    { name: 'linear.bias', shape: [c.numLabels], layout: 'identity', init: { uniform: bound } },
  ];
}

/**
 * Option A (`F.pad(x[:, :, ::2, ::2], (0,0,0,0, pad, pad))` in NCHW), here NHWC, as one strided
 * 1x1 conv with a constant 0/1 kernel: output [i, j] = input [s*i, s*j] and input channel c lands
 * in output channel c + pad, the pad channels on either side being zero. Its gradient is a plain
 * conv backprop, which every backend has (strided slices and channel pads would need more).
 */
export function optionAShortcut(x: tf.Tensor4D, padChannels: number, stride: number): tf.Tensor4D {
  return tf.tidy(() => {
    const inChannels = x.shape[3];
    const out = inChannels + 2 * padChannels;
    const k = new Float32Array(inChannels * out);
    for (let c = 0; c < inChannels; c++) k[c * out + c + padChannels] = 1;
    return tf.conv2d(x, tf.tensor4d(k, [1, 1, inChannels, out]), stride, 'valid');
  });
}

export class ResNetCifarModel extends ConvNetBase implements AdapterModel {
  readonly architecture = 'resnet_cifar';
  readonly params: ConvBnParameterStore;
  readonly cfg: ResNetCifarConfig;
  /** config.json as read, plus `image_size` so core's preprocessing finds the input size. */
  readonly config: Readonly<HFConfig>;
  bnMode: BatchNormMode;
  protected readonly name = 'ResNet (CIFAR)';
  /**
   * 8 px squares: a 4 x 4 grid on 32 px images, as the hf-tiny fixture masks. The paper's 32 px
   * (a 7 x 7 grid at 224 px) would blank a whole CIFAR image or nothing.
   */
  protected readonly zeroFillPatch = 8;
  protected readonly inputChannels: number;
  private readonly plan: ReturnType<typeof resnetCifarPlan>;

  constructor(config: Readonly<HFConfig>, options: ResNetModelOptions = {}) {
    super();
    this.cfg = parseResNetCifarConfig(config);
    this.config = config.image_size === undefined ? { ...config, image_size: this.cfg.imageSize } : config;
    this.bnMode = options.bnMode ?? this.cfg.bnMode;
    this.inputChannels = this.cfg.numChannels;
    this.plan = resnetCifarPlan(this.cfg);
    const units = [this.plan.stem, ...this.plan.blocks.flatMap((b) => [b.conv1, b.conv2])];
    this.params = new ConvBnParameterStore(units, resnetCifarHeadSpecs(this.cfg), options.rng ?? new Rng(0));
  }

  /** Layer ids for layer-wise lr decay and the no-weight-decay parameters (see param-groups.ts). */
  paramGroups(): ParamGroups {
    return resnetCifarParamGroups(this.cfg.blocksPerStage);
  }

  get numClasses(): number {
    return this.cfg.numLabels;
  }

  forward(inputs: ModelInputs, options: ResNetForwardOptions = {}): tf.Tensor {
    return tf.tidy(() => {
      const x = this.inputNHWC(inputs);
      const bs = this.batchStatistics(options);
      const training = options.training ?? false;
      // Stochastic depth on the residual branch: the config's in training passes, PathSub's in its sub pass.
      const pathRate = options.dropPathRate ?? (training ? this.cfg.dropPathRate : 0);
      const pathRule = options.dropPathRule ?? this.cfg.dropPathRule;
      const seed = options.seed ?? 0;
      let h = this.unit(x, this.plan.stem, bs, 'relu');
      const n = this.plan.blocks.length;
      this.plan.blocks.forEach((block, i) => {
        const s = block.shortcut;
        const residual = s ? optionAShortcut(h, s.padChannels, s.stride) : h;
        const rate = training ? blockDropPathRate(pathRate, pathRule, i, n) : 0;
        const inner = this.unit(h, block.conv1, bs, 'relu');
        if (rate > 0) {
          // Drop path sits between bn2 and the residual add: nothing to fuse.
          const y = this.unit(inner, block.conv2, bs);
          h = tf.relu(tf.add(dropPath(y, rate, layerSeed(seed, i, 0)), residual)) as tf.Tensor4D;
        } else {
          // bn2 + shortcut add + ReLU: one fused kernel each way where the backend has it.
          h = this.unit(inner, block.conv2, bs, 'relu', residual);
        }
      });
      let pooled = tf.mean(h, [1, 2]);
      if (training && options.dropoutRate) pooled = dropout(pooled, options.dropoutRate, layerSeed(seed, n, 1));
      return linear(pooled, this.params.get('linear.weight'), this.params.get('linear.bias'));
    });
  }
}
