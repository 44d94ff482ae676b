/**
 * @masksub/swin: HF Swin Transformer for masksub. Importing this module registers the adapter,
 * so `loadPretrained(dir)` dispatches `model_type: swin` here.
 */
import { registerAdapter, type ArchitectureAdapter } from '@masksub/core';
import { SwinModel } from './model.js';
import { parseSwinConfig } from './config.js';
import { swinAliases, swinIgnoredWeights } from './weights.js';

export { mlpDim, numFeatures, parseSwinConfig, stageDim, type SwinConfig } from './config.js';
export { SwinModel } from './model.js';
export { swinAliases, swinIgnoredWeights, swinParamSpecs } from './weights.js';
export { relativePositionIndex, roll2d, shiftedWindowMask, windowPartition, windowPlan, windowReverse, type WindowPlan } from './windows.js';

export const swinAdapter: ArchitectureAdapter = {
  name: 'swin',
  modelTypes: ['swin'],
  build: (config, options) => new SwinModel(config, options),
  ignoredWeights: swinIgnoredWeights,
  headWeights: (name) => name.startsWith('classifier.'),
  aliases: (config) => swinAliases(parseSwinConfig(config)),
};

registerAdapter(swinAdapter);
