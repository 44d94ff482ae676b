/**
 * @masksub/clip: HF CLIP (CLIPModel) for masksub. Importing this module registers the adapter,
 * so `loadPretrained(dir)` dispatches `model_type: clip` here. Train it with
 * `withMaskSub(model, { loss: 'contrastive' })`: the sub pass sees token-removed images and the
 * same captions, and is pulled toward softmax of the detached main similarity, both directions.
 */
import { registerAdapter, type ArchitectureAdapter } from '@masksub/core';
import { ClipModel } from './model.js';
import { clipIgnoredWeights } from './weights.js';

export { parseClipConfig, LEGACY_EOS_TOKEN_ID, type ClipConfig, type ClipEncoderConfig, type ClipTextConfig, type ClipVisionConfig } from './config.js';
export { ClipModel, eosPositions, type ClipOutputs } from './model.js';
export { clipParamSpecs, clipIgnoredWeights } from './weights.js';
export { loadClipTokenizer, tokenizeCaptions, clipTokenizerJson, CLIP_SPECIAL_TOKENS, type CaptionBatch, type ClipTokenizer, type TokenizeOptions } from './tokenizer.js';

export const clipAdapter: ArchitectureAdapter = {
  name: 'clip',
  modelTypes: ['clip'],
  build: (config, options) => new ClipModel(config, options),
  ignoredWeights: clipIgnoredWeights,
  // No classification head: the projections are the model's output and are always kept.
  headWeights: () => false,
};

registerAdapter(clipAdapter);
