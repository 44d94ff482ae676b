/**
 * torchvision / timm ResNet names onto the HF ResNet model. torchvision's `resnet*` (and timm's
 * plain `resnet18..152`, which share its names) compute the same function as HF's ResNet v1.5
 * (stride on the 3x3 conv of a bottleneck, 1x1 conv + BN shortcut): only the names differ. The
 * alias table is derived from the model plan, so it covers exactly the tensors the model has;
 * `num_batches_tracked` buffers are ignored by the adapter. A timm hub config (`architecture`
 * 'resnet50', ...) is turned into the equivalent HF config from the architecture table.
 */
import { FileFormatError, type HFConfig } from '@masksub/core';
import { parseResNetConfig, type ResNetConfig } from './config.js';
import { resnetPlan } from './model.js';

/** timm architecture names the ResNet adapter serves. */
export const TIMM_RESNET_ARCHITECTURES: readonly string[] = ['resnet18', 'resnet26', 'resnet34', 'resnet50', 'resnet101', 'resnet152'];

/** Block type and blocks per stage of the torchvision / timm ResNets. */
const TIMM_RESNETS: Readonly<Record<string, { layerType: 'basic' | 'bottleneck'; depths: number[] }>> = {
  resnet18: { layerType: 'basic', depths: [2, 2, 2, 2] },
  resnet26: { layerType: 'bottleneck', depths: [2, 2, 2, 2] },
  resnet34: { layerType: 'basic', depths: [3, 4, 6, 3] },
  resnet50: { layerType: 'bottleneck', depths: [3, 4, 6, 3] },
  resnet101: { layerType: 'bottleneck', depths: [3, 4, 23, 3] },
  resnet152: { layerType: 'bottleneck', depths: [3, 8, 36, 3] },
};

/** A timm hub config for a plain ResNet -> the HF config of the same network. */
export function timmResNetToHfConfig(raw: HFConfig, source = 'config.json'): HFConfig {
  const arch = String(raw.architecture);
  const entry = TIMM_RESNETS[arch];
  if (!entry) throw new FileFormatError(source, `timm ResNet '${arch}' is not served (served: ${Object.keys(TIMM_RESNETS).join(', ')}; variants such as resnet50d change the stem)`);
  const args = (typeof raw.model_args === 'object' && raw.model_args !== null ? raw.model_args : {}) as Record<string, unknown>;
  for (const key of Object.keys(args)) {
    if (!['num_classes', 'in_chans', 'drop_rate', 'drop_path_rate'].includes(key)) throw new FileFormatError(source, `model_args.${key} is not supported for '${arch}'`);
  }
  const widen = entry.layerType === 'basic' ? 1 : 4;
  const numClasses = typeof raw.num_classes === 'number' ? raw.num_classes : typeof args.num_classes === 'number' ? args.num_classes : 1000;
  return {
    model_type: 'resnet',
    architectures: ['ResNetForImageClassification'],
    num_channels: typeof args.in_chans === 'number' ? args.in_chans : 3,
    embedding_size: 64,
    hidden_sizes: [64, 128, 256, 512].map((w) => w * widen),
    depths: entry.depths,
    layer_type: entry.layerType,
    hidden_act: 'relu',
    downsample_in_first_stage: false,
    downsample_in_bottleneck: false,
    num_labels: numClasses,
    timm_architecture: arch,
    ...(raw.pretrained_cfg ? { pretrained_cfg: raw.pretrained_cfg } : {}),
  };
}

/** torchvision names (`conv1`, `bn1`, `layerS.L.convK`/`bnK`, `downsample.0/1`, `fc`) -> HF hub names. */
export function torchvisionResNetAliases(c: ResNetConfig): Record<string, string> {
  const out: Record<string, string> = {};
  const conv = (from: string, to: string) => {
    out[`${from}.weight`] = `${to}.convolution.weight`;
  };
  const bn = (from: string, to: string) => {
    for (const k of ['weight', 'bias', 'running_mean', 'running_var']) out[`${from}.${k}`] = `${to}.normalization.${k}`;
  };
  const { stem, layers } = resnetPlan(c);
  const unitPrefix = (name: string) => name.slice(0, name.lastIndexOf('.'));
  conv('conv1', unitPrefix(stem.conv));
  bn('bn1', unitPrefix(stem.conv));
  let index = 0;
  c.depths.forEach((depth, s) => {
    for (let l = 0; l < depth; l++) {
      const layer = layers[index++];
      if (!layer) continue;
      const tv = `layer${s + 1}.${l}`;
      layer.convs.forEach((u, k) => {
        conv(`${tv}.conv${k + 1}`, unitPrefix(u.conv));
        bn(`${tv}.bn${k + 1}`, unitPrefix(u.conv));
      });
      if (layer.shortcut) {
        conv(`${tv}.downsample.0`, unitPrefix(layer.shortcut.conv));
        bn(`${tv}.downsample.1`, unitPrefix(layer.shortcut.conv));
      }
    }
  });
  out['fc.weight'] = 'classifier.1.weight';
  out['fc.bias'] = 'classifier.1.bias';
  return out;
}

/** The HF config a ResNet adapter builds from: timm hub configs converted, HF ones as they are. */
export function resnetHfConfig(config: HFConfig, isTimm: boolean): HFConfig {
  return isTimm ? timmResNetToHfConfig(config) : config;
}

/** Aliases for any ResNet config (HF or timm hub). */
export function resnetAliasesFor(config: HFConfig, isTimm: boolean): Record<string, string> {
  return torchvisionResNetAliases(parseResNetConfig(resnetHfConfig(config, isTimm)));
}
