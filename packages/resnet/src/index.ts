/**
 * @masksub/resnet: HF ResNet (`model_type: resnet`) and the CIFAR ResNets (`resnet_cifar`) for
 * masksub. Importing this module registers both adapters, so `loadPretrained(dir)` dispatches
 * those model types here. A folder with only a BN-folded ONNX export loads as the folded
 * (batch-norm-free) variant of the model; core's loader logs that the exporter folded BN.
 */
import { registerAdapter, type ArchitectureAdapter } from '@masksub/core';
import { ResNetCifarModel } from './cifar.js';
import { ResNetModel, resnetIgnoredWeights } from './model.js';

export { parseResNetConfig, parseResNetCifarConfig, type ResNetConfig, type ResNetCifarConfig } from './config.js';
export { ResNetModel, ConvNetBase, resnetPlan, resnetConvUnits, resnetHeadSpecs, resnetIgnoredWeights, type ResNetModelOptions, type ResNetForwardOptions } from './model.js';
export { ResNetCifarModel, resnetCifarPlan, resnetCifarHeadSpecs, optionAShortcut } from './cifar.js';
export { ConvBnParameterStore } from './store.js';
export { batchNorm2d, conv2dTorch, maxPool3x3s2, convUnitSpecs, foldBatchNormHost, BN_EPS, BN_MOMENTUM, type BatchNormMode, type ConvUnit, type BatchNormVariables } from './layers.js';

export const resnetAdapter: ArchitectureAdapter = {
  name: 'resnet',
  modelTypes: ['resnet'],
  build: (config, options) => new ResNetModel(config, options),
  ignoredWeights: resnetIgnoredWeights,
  headWeights: (name) => name.startsWith('classifier.'),
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
