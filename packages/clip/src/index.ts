/**
 * @masksub/clip: HF CLIP (CLIPModel) for masksub. Importing this module registers the adapter,
 * so `loadPretrained(dir)` dispatches `model_type: clip` here. Train it with
 * `withMaskSub(model, { loss: 'contrastive' })`: the sub pass sees token-removed images and the
 * same captions, and is pulled toward softmax of the detached main similarity, both directions.
 *
 * A config whose `architectures[0]` is CLIPForImageClassification (or
 * `loadPretrained(dir, { architecture: 'CLIPForImageClassification', numLabels })` on a CLIPModel
 * checkpoint) builds FT-CLIP instead: the vision tower with a new linear head.
 */
import { registerAdapter, type ArchitectureAdapter } from '@masksub/core';
import { ClipModel } from './model.js';
import { clipIgnoredWeights } from './weights.js';
import { clipText } from './text.js';
import { CLIP_ARCHITECTURES, ClipVisionClassifier, clipModelOnlyWeights, isClipClassifierConfig } from './classifier.js';

export { parseClipConfig, LEGACY_EOS_TOKEN_ID, type ClipConfig, type ClipEncoderConfig, type ClipTextConfig, type ClipVisionConfig } from './config.js';
export { ClipModel, eosPositions, type ClipOutputs } from './model.js';
export { clipParamSpecs, clipClassifierParamSpecs, clipIgnoredWeights } from './weights.js';
export {
  ClipVisionClassifier,
  CLIP_ARCHITECTURES,
  CLIP_CLASSIFIER_ARCHITECTURE,
  CLIP_MODEL_ARCHITECTURE,
  clipClassifierLabels,
  clipModelOnlyWeights,
  isClipClassifierConfig,
} from './classifier.js';
export { loadClipTokenizer, tokenizeCaptions, clipTokenizerJson, CLIP_SPECIAL_TOKENS, type CaptionBatch, type ClipTokenizer, type TokenizeOptions } from './tokenizer.js';

export { clipText, CLIP_TOKENIZER_FILES, type ClipTextTokenizer } from './text.js';

export const clipAdapter: ArchitectureAdapter & { text: typeof clipText } = {
  name: 'clip',
  modelTypes: ['clip'],
  architectures: CLIP_ARCHITECTURES,
  build: (config, options) => (isClipClassifierConfig(config) ? new ClipVisionClassifier(config, options) : new ClipModel(config, options)),
  // A classifier built from a CLIPModel checkpoint skips exactly the tensors it has no use for.
  ignoredWeights: (name, config) => clipIgnoredWeights(name) || (isClipClassifierConfig(config) && clipModelOnlyWeights(config).has(name)),
  // CLIPModel has no head (the projections are its output); FT-CLIP's is `classifier`.
  headWeights: (name) => name.startsWith('classifier.'),
  // Captions and zero-shot prompts: the trainer finds the tokenizer here, not by importing us.
  text: clipText,
};

registerAdapter(clipAdapter);
