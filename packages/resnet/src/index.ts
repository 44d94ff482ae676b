/**
 * @masksub/resnet: HF ResNet (`model_type: resnet`) and the CIFAR ResNets (`resnet_cifar`) for
 * masksub. Importing this module registers both adapters, so `loadPretrained(dir)` dispatches
 * those model types here. A folder with only a BN-folded ONNX export loads as the folded
 * (batch-norm-free) variant of the model; core's loader logs that the exporter folded BN.
 */
import { isTimmConfig, registerAdapter, type ArchitectureAdapter } from '@masksub/core';
import { ResNetCifarModel } from './cifar.js';
import { ResNetModel, resnetIgnoredWeights } from './model.js';
import { TIMM_RESNET_ARCHITECTURES, resnetAliasesFor, resnetHfConfig } from './torchvision.js';

export { parseResNetConfig, parseResNetCifarConfig, type ResNetConfig, type ResNetCifarConfig } from './config.js';
export { ResNetModel, ConvNetBase, resnetPlan, resnetConvUnits, resnetHeadSpecs, resnetIgnoredWeights, type ResNetModelOptions, type ResNetForwardOptions, type UnitActivation } from './model.js';
export { ResNetCifarModel, resnetCifarPlan, resnetCifarHeadSpecs, optionAShortcut } from './cifar.js';
export { ConvBnParameterStore } from './store.js';
export { TIMM_RESNET_ARCHITECTURES, timmResNetToHfConfig, torchvisionResNetAliases } from './torchvision.js';
export { batchNorm2d, conv2dTorch, maxPool3x3s2, convUnitSpecs, foldBatchNormHost, BN_EPS, BN_MOMENTUM, type BatchNormMode, type ConvUnit, type BatchNormVariables } from './layers.js';

export const resnetAdapter: ArchitectureAdapter = {
  name: 'resnet',
  modelTypes: ['resnet'],
  // timm hub folders of the plain ResNets; torchvision / timm names load through the aliases
  timmArchitectures: TIMM_RESNET_ARCHITECTURES,
  build: (config, options) => new ResNetModel(resnetHfConfig(config, isTimmConfig(config)), options),
  ignoredWeights: resnetIgnoredWeights,
  headWeights: (name) => name.startsWith('classifier.') || name.startsWith('fc.'),
  aliases: (config) => resnetAliasesFor(config, isTimmConfig(config)),
};

export const resnetCifarAdapter: ArchitectureAdapter = {
  name: 'resnet_cifar',
  modelTypes: ['resnet_cifar'],
  build: (config, options) => new ResNetCifarModel(config, options),
  ignoredWeights: resnetIgnoredWeights,
  headWeights: (name) => name.startsWith('linear.'),
};

registerAdapter(resnetAdapter);
registerAdapter(resnetCifarAdapter);
