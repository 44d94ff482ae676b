/**
 * @masksub/vit: HF ViT / DeiT for masksub. Importing this module registers the adapter, so
 * `loadPretrained(dir)` dispatches `model_type: vit | deit` here.
 */
import { isTimmConfig, registerAdapter, type ArchitectureAdapter } from '@masksub/core';
import { ViTModel } from './model.js';
import { parseViTConfig } from './config.js';
import { vitAliases, vitIgnoredWeights } from './weights.js';
import { TIMM_VIT_ARCHITECTURES, TimmViTModel, officialDeitAliases, parseTimmViTConfig, timmViTConfigForWeights } from './timm.js';

export { parseViTConfig, type ViTConfig } from './config.js';
export { ViTModel } from './model.js';
export { vitAliases, vitParamSpecs, vitIgnoredWeights } from './weights.js';
export { TIMM_GLOBAL_POOLS, TIMM_VIT_ARCHITECTURES, TimmViTModel, officialDeitAliases, parseTimmViTConfig, timmViTConfigForWeights, timmViTParamSpecs, type TimmGlobalPool, type TimmViTConfig } from './timm.js';

export const vitAdapter: ArchitectureAdapter = {
  name: 'vit',
  modelTypes: ['vit', 'deit'],
  // timm hub folders (timm names; DeiT-III's official release names through aliases)
  timmArchitectures: TIMM_VIT_ARCHITECTURES,
  build: (config, options) => (isTimmConfig(config) ? new TimmViTModel(config, options) : new ViTModel(config, options)),
  ignoredWeights: vitIgnoredWeights,
  headWeights: (name) => name.startsWith('classifier.') || name.startsWith('head.'),
  aliases: (config) => (isTimmConfig(config) ? officialDeitAliases(parseTimmViTConfig(config)) : vitAliases(parseViTConfig(config))),
  configForWeights: (config, names) => (isTimmConfig(config) ? timmViTConfigForWeights(config, names) : config),
};

registerAdapter(vitAdapter);
