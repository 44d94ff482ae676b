/**
 * The config.json fields the two ResNet model types read, validated with errors that name the
 * file and the key:
 * - `resnet`: HF ResNetConfig (ResNetForImageClassification);
 * - `resnet_cifar`: the CIFAR ResNets of He et al. (akamaster/pytorch_resnet_cifar10), as
 *   described by the config.json of shared/data/models/resnet{20,56}-cifar10.
 * Both take optional masksub keys `bn_mode` ('train' by default | 'eval', see BatchNormMode),
 * `drop_path_rate` (stochastic depth on each block's residual branch, timm's ResNet; 0 by
 * default) and `drop_path_rule` ('linear' as timm's block index rule | 'uniform').
 */
import { FileFormatError, parseDropPathRule, type DropPathRule, type HFConfig } from '@masksub/core';
import type { BatchNormMode } from './layers.js';

export interface ResNetConfig {
  modelType: 'resnet';
  numChannels: number;
  embeddingSize: number;
  hiddenSizes: number[];
  depths: number[];
  layerType: 'basic' | 'bottleneck';
  hiddenAct: string;
  downsampleInFirstStage: boolean;
  downsampleInBottleneck: boolean;
  numLabels: number;
  bnMode: BatchNormMode;
  dropPathRate: number;
  dropPathRule: DropPathRule;
}

export interface ResNetCifarConfig {
  modelType: 'resnet_cifar';
  /** Blocks per stage (3 stages). ResNet-20: 3, ResNet-56: 9 (depth = 6n + 2). */
  blocksPerStage: number[];
  /** Channels per stage. */
  widths: number[];
  /** Stride of each stage's first block. */
  strides: number[];
  numChannels: number;
  imageSize: number;
  numLabels: number;
  bnMode: BatchNormMode;
  dropPathRate: number;
  dropPathRule: DropPathRule;
}

function checker(raw: HFConfig, source: string) {
  const posInt = (key: string, v: unknown): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new FileFormatError(source, `'${key}' must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  };
  return {
    int: (key: string, dflt?: number): number => posInt(key, raw[key] ?? dflt),
    posInt,
    intList: (key: string, dflt: number[]): number[] => {
      const v = raw[key] ?? dflt;
      if (!Array.isArray(v) || v.length === 0) throw new FileFormatError(source, `'${key}' must be a non-empty list of positive integers, got ${JSON.stringify(v)}`);
      return v.map((x, i) => posInt(`${key}[${i}]`, x));
    },
    bool: (key: string, dflt: boolean): boolean => {
      const v = raw[key] ?? dflt;
      if (typeof v !== 'boolean') throw new FileFormatError(source, `'${key}' must be true or false, got ${JSON.stringify(v)}`);
      return v;
    },
    dropPath: (): { dropPathRate: number; dropPathRule: DropPathRule } => {
      const v = raw.drop_path_rate ?? 0;
      if (typeof v !== 'number' || !(v >= 0 && v < 1)) throw new FileFormatError(source, `'drop_path_rate' must be a number in [0, 1), got ${JSON.stringify(v)}`);
      return { dropPathRate: v, dropPathRule: parseDropPathRule(raw, source) };
    },
    bnMode: (): BatchNormMode => {
      // Training uses batch statistics by default, as the official step (resnet_rsb/train.py: model.train()).
      const v = raw.bn_mode ?? 'train';
      if (v !== 'eval' && v !== 'train') throw new FileFormatError(source, `'bn_mode' must be 'eval' or 'train', got ${JSON.stringify(v)}`);
      return v;
    },
    numLabels: (dflt: number): number => {
      if (raw.num_labels !== undefined) return posInt('num_labels', raw.num_labels);
      if (raw.num_classes !== undefined) return posInt('num_classes', raw.num_classes);
      const id2label = raw.id2label as Record<string, string> | undefined;
      return id2label ? Object.keys(id2label).length : dflt;
    },
  };
}

export function parseResNetConfig(raw: HFConfig, source = 'config.json'): ResNetConfig {
  const c = checker(raw, source);
  if ((raw.model_type ?? 'resnet') !== 'resnet') throw new FileFormatError(source, `model_type '${raw.model_type}' is not resnet`);
  const hiddenSizes = c.intList('hidden_sizes', [256, 512, 1024, 2048]);
  const depths = c.intList('depths', [3, 4, 6, 3]);
  if (depths.length !== hiddenSizes.length) throw new FileFormatError(source, `'depths' has ${depths.length} stages but 'hidden_sizes' has ${hiddenSizes.length}`);
  const layerType = raw.layer_type ?? 'bottleneck';
  if (layerType !== 'basic' && layerType !== 'bottleneck') throw new FileFormatError(source, `'layer_type' must be 'basic' or 'bottleneck', got ${JSON.stringify(layerType)}`);
  if (layerType === 'bottleneck') {
    // HF's bottleneck reduces to out_channels // 4 channels.
    hiddenSizes.forEach((h, i) => {
      if (h < 4) throw new FileFormatError(source, `'hidden_sizes[${i}]' = ${h} is too small for a bottleneck layer (reduction 4)`);
    });
  }
  const hiddenAct = raw.hidden_act ?? 'relu';
  if (typeof hiddenAct !== 'string') throw new FileFormatError(source, `'hidden_act' must be a string, got ${JSON.stringify(hiddenAct)}`);
  return {
    modelType: 'resnet',
    numChannels: c.int('num_channels', 3),
    embeddingSize: c.int('embedding_size', 64),
    hiddenSizes,
    depths,
    layerType,
    hiddenAct,
    downsampleInFirstStage: c.bool('downsample_in_first_stage', false),
    downsampleInBottleneck: c.bool('downsample_in_bottleneck', false),
    numLabels: c.numLabels(2),
    bnMode: c.bnMode(),
    ...c.dropPath(),
  };
}

/**
 * `resnet_cifar`: `stages` ([{out_channels, num_blocks, stride}]) when present, else `depth`
 * (6n + 2: three stages of n blocks, 16/32/64 channels, strides 1/2/2, as resnet.py builds them).
 */
export function parseResNetCifarConfig(raw: HFConfig, source = 'config.json'): ResNetCifarConfig {
  const c = checker(raw, source);
  if (raw.model_type !== 'resnet_cifar') throw new FileFormatError(source, `model_type '${raw.model_type}' is not resnet_cifar`);
  let blocksPerStage: number[];
  let widths: number[];
  let strides: number[];
  if (Array.isArray(raw.stages)) {
    const stages = raw.stages as Record<string, unknown>[];
    widths = stages.map((s, i) => c.posInt(`stages[${i}].out_channels`, s?.out_channels));
    blocksPerStage = stages.map((s, i) => c.posInt(`stages[${i}].num_blocks`, s?.num_blocks));
    strides = stages.map((s, i) => c.posInt(`stages[${i}].stride`, s?.stride ?? (i === 0 ? 1 : 2)));
  } else {
    const depth = c.int('depth', 20);
    if ((depth - 2) % 6 !== 0) throw new FileFormatError(source, `'depth' must be 6n + 2 (20, 32, 44, 56, 110), got ${depth}`);
    const n = (depth - 2) / 6;
    blocksPerStage = [n, n, n];
    widths = [16, 32, 64];
    strides = [1, 2, 2];
  }
  widths.forEach((w, i) => {
    const prev = i === 0 ? 16 : widths[i - 1];
    // Option A pads planes // 4 zero channels on each side: only a doubling (or no change) fits.
    if (w !== prev && w !== 2 * prev) throw new FileFormatError(source, `stage ${i} has ${w} channels after ${prev}: the option-A shortcut only keeps or doubles the width`);
  });
  const input = (raw.input ?? {}) as Record<string, unknown>;
  const stem = (raw.stem as { conv?: Record<string, unknown> } | undefined)?.conv ?? {};
  if (stem.out_channels !== undefined && stem.out_channels !== 16) throw new FileFormatError(source, `'stem.conv.out_channels' must be 16, got ${JSON.stringify(stem.out_channels)}`);
  return {
    modelType: 'resnet_cifar',
    blocksPerStage,
    widths,
    strides,
    numChannels: c.posInt('input.channels', input.channels ?? raw.num_channels ?? 3),
    imageSize: c.posInt('image_size', raw.image_size ?? input.height ?? 32),
    numLabels: c.numLabels(10),
    bnMode: c.bnMode(),
    ...c.dropPath(),
  };
}
