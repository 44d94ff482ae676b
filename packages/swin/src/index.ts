/**
 * @masksub/swin: HF Swin Transformer for masksub. Importing this module registers the adapter,
 * so `loadPretrained(dir)` dispatches `model_type: swin` here, and timm `swin_*` hub folders
 * (timm names, mapped onto the same model).
 */
import { isTimmConfig, registerAdapter, type ArchitectureAdapter, type HFConfig } from '@masksub/core';
import { SwinModel } from './model.js';
import { parseSwinConfig } from './config.js';
import { swinAliases, swinIgnoredWeights } from './weights.js';
import { TIMM_SWIN_ARCHITECTURES, splitTimmSwinQkv, timmSwinAliases, timmSwinToHfConfig } from './timm.js';

export { mlpDim, numFeatures, parseSwinConfig, stageDim, type SwinConfig } from './config.js';
export { SwinModel } from './model.js';
export { swinAliases, swinIgnoredWeights, swinParamSpecs } from './weights.js';
export { TIMM_SWIN_ARCHITECTURES, splitTimmSwinQkv, timmSwinAliases, timmSwinToHfConfig } from './timm.js';
export { relativePositionIndex, roll2d, shiftedWindowMask, shiftedWindowPartition, shiftedWindowReverse, windowPartition, windowPlan, windowReverse, type WindowPlan } from './windows.js';

/** The HF config of any Swin config.json (timm hub configs converted). */
const hfConfig = (config: HFConfig): HFConfig => (isTimmConfig(config) ? timmSwinToHfConfig(config) : config);

export const swinAdapter: ArchitectureAdapter = {
  name: 'swin',
  modelTypes: ['swin'],
  timmArchitectures: TIMM_SWIN_ARCHITECTURES,
  build: (config, options) => new SwinModel(hfConfig(config), options),
  // timm's buffers (relative_position_index, attn_mask) are recomputed
  ignoredWeights: (name) => swinIgnoredWeights(name) || /\.attn_mask$/.test(name),
  headWeights: (name) => name.startsWith('classifier.') || name.startsWith('head.fc.'),
  aliases: (config) => (isTimmConfig(config) ? timmSwinAliases(parseSwinConfig(hfConfig(config))) : swinAliases(parseSwinConfig(config))),
  transformWeights: (tensors, config, source) => (isTimmConfig(config) ? splitTimmSwinQkv(tensors, parseSwinConfig(hfConfig(config)), source) : tensors),
};

registerAdapter(swinAdapter);
