/**
 * @masksub/bert: HF BERT (BertForSequenceClassification) for masksub. Importing this module
 * registers the adapter, so `loadPretrained(dir)` dispatches `model_type: bert` here.
 */
import { registerAdapter, type ArchitectureAdapter, type TextCapability } from '@masksub/core';
import { BertModel } from './model.js';
import { parseBertConfig } from './config.js';
import { bertAliases, bertHeadWeights, bertIgnoredWeights } from './weights.js';
import { specialTokensFromFolder } from './tokenizer.js';
import { bertTextCapability } from './text.js';

export { parseBertConfig, type BertConfig, type ProblemType } from './config.js';
export { BertModel, FLOAT32_MIN, defaultSpecialTokens, type BertModelOptions, type SpecialTokens } from './model.js';
export { bertAliases, bertHeadWeights, bertIgnoredWeights, bertParamSpecs } from './weights.js';
export { bertRelaxedLoss, meanSquaredErrorLoss, resolveProblemType } from './loss.js';
export { bertTokenizerJson, loadBertTokenizer, longestFirstLengths, specialTokensFromFolder, specialTokensOf, tokenizeBatch, type EncodedBatch, type PreTrainedTokenizer, type TextInput, type TokenizeOptions } from './tokenizer.js';

export { BERT_TOKENIZER_FILES, bertTextCapability } from './text.js';

export const bertAdapter: ArchitectureAdapter & { text: TextCapability } = {
  name: 'bert',
  modelTypes: ['bert'],
  // The [MASK] id is the tokenizer's, not the config's: read it from the checkpoint folder's
  // tokenizer files, else from the tokenizer the run encodes with (data.tokenizer); the config's
  // mask_token_id, then Google's layout, serve only when neither has tokenizer files.
  build: (config, options) => {
    const fromFolder = options?.checkpointDir ? specialTokensFromFolder(options.checkpointDir) : undefined;
    const fromTokenizer = !fromFolder && options?.tokenizerDir ? specialTokensFromFolder(options.tokenizerDir) : undefined;
    return new BertModel(config, { rng: options?.rng, specialTokens: fromFolder ?? fromTokenizer });
  },
  ignoredWeights: bertIgnoredWeights,
  headWeights: bertHeadWeights,
  aliases: (config) => bertAliases(parseBertConfig(config)),
  // Text tasks find the tokenizer here (core's textCapabilityOf), not by importing this package.
  text: bertTextCapability,
};

registerAdapter(bertAdapter);
