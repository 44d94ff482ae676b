/**
 * @masksub/vit: HF ViT / DeiT for masksub. Importing this module registers the adapter, so
 * `loadPretrained(dir)` dispatches `model_type: vit | deit` here.
 */
import { registerAdapter, type ArchitectureAdapter } from '@masksub/core';
import { ViTModel } from './model.js';
import { parseViTConfig } from './config.js';
import { vitAliases, vitIgnoredWeights } from './weights.js';

export { parseViTConfig, type ViTConfig } from './config.js';
export { ViTModel } from './model.js';
export { vitAliases, vitParamSpecs, vitIgnoredWeights } from './weights.js';

export const vitAdapter: ArchitectureAdapter = {
  name: 'vit',
  modelTypes: ['vit', 'deit'],
  build: (config, options) => new ViTModel(config, options),
  ignoredWeights: vitIgnoredWeights,
  headWeights: (name) => name.startsWith('classifier.'),
  aliases: (config) => vitAliases(parseViTConfig(config)),
};

registerAdapter(vitAdapter);
