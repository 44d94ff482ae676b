/**
 * BERT (HF BertForSequenceClassification) in tfjs ops, top to bottom: word + position +
 * token-type embeddings, LayerNorm, dropout; post-LN encoder layers (attention -> dropout ->
 * add & norm, GELU MLP -> dropout -> add & norm) with the padding mask as an additive attention
 * bias; pooler tanh(dense(h[CLS])); dropout; classifier. The MaskSub sub pass is BERT-style token
 * masking: the sub-model sees the same batch with ~r of its real tokens replaced by [MASK].
 */
import {
  OptionError,
  ParameterStore,
  Rng,
  activation,
  blockDropPathRate,
  checkRatio,
  dropPath,
  dropout,
  embedding,
  layerNorm,
  layerSeed,
  leadingTokens,
  linear,
  multiHeadAttention,
  passDropoutRates,
  tf,
  tokenMasking,
  type AdapterModel,
  type DropKind,
  type DropOperator,
  type ForwardOptions,
  type HFConfig,
  type ModelInputs,
  type RelaxedLoss,
} from '@masksub/core';
import { parseBertConfig, type BertConfig } from './config.js';
import { bertRelaxedLoss } from './loss.js';
import { bertParamSpecs } from './weights.js';
import { bertParamGroups } from './param-groups.js';
import type { ParamGroups } from '@masksub/core';

/** transformers' additive mask value: torch.finfo(float32).min. */
export const FLOAT32_MIN = -3.4028234663852886e38;

/** The ids the token-masking drop operator needs: [MASK], and the ids it must never mask. */
export interface SpecialTokens {
  maskTokenId: number;
  /** [CLS], [SEP], [PAD] (and any other special id): never replaced. */
  specialIds: readonly number[];
}

export interface BertModelOptions {
  rng?: Rng;
  /** Overrides the config's/default special tokens (normally taken from the tokenizer). */
  specialTokens?: SpecialTokens;
}

/**
 * Google's BERT vocabularies (uncased 30522, cased 28996, multilingual-cased 119547 tokens: every
 * bert-base/large checkpoint and their fine-tunes) share one layout of the special tokens: [PAD] 0,
 * [CLS] 101, [SEP] 102, [MASK] 103. Used only for those vocabulary sizes, when neither the config
 * nor the caller names the ids; any other vocabulary must say (tokenizer or config).
 */
const GOOGLE_VOCAB_SIZES = new Set([30522, 28996, 119547]);
const BERT_BASE_SPECIALS = { cls: 101, sep: 102, mask: 103 };

/** Special tokens from the config (mask/cls/sep ids when present), else Google's vocabulary layout, else none known. */
export function defaultSpecialTokens(c: BertConfig): SpecialTokens | undefined {
  if (c.maskTokenId !== undefined) {
    const ids = [c.padTokenId, c.clsTokenId, c.sepTokenId].filter((v): v is number => v !== undefined);
    return { maskTokenId: c.maskTokenId, specialIds: [...new Set(ids)] };
  }
  if (GOOGLE_VOCAB_SIZES.has(c.vocabSize)) {
    const s = BERT_BASE_SPECIALS;
    return { maskTokenId: s.mask, specialIds: [...new Set([c.padTokenId, s.cls, s.sep])] };
  }
  return undefined;
}

export class BertModel implements AdapterModel {
  readonly architecture = 'bert';
  readonly params: ParameterStore;
  readonly cfg: BertConfig;
  readonly defaultDrop: DropKind = 'token-masking';
  private readonly act: (x: tf.Tensor) => tf.Tensor;
  private special: SpecialTokens | undefined;

  constructor(
    readonly config: Readonly<HFConfig>,
    options: BertModelOptions = {},
  ) {
    this.cfg = parseBertConfig(config);
    this.act = activation(this.cfg.hiddenAct);
    if (options.specialTokens) this.setSpecialTokens(options.specialTokens);
    else this.special = defaultSpecialTokens(this.cfg);
    this.params = new ParameterStore(bertParamSpecs(this.cfg), options.rng ?? new Rng(0));
  }

  /** Layer ids for layer-wise lr decay and the no-weight-decay parameters (see param-groups.ts). */
  paramGroups(): ParamGroups {
    return bertParamGroups(this.cfg.numHiddenLayers);
  }

  get numClasses(): number {
    return this.cfg.numLabels;
  }

  /** The head's loss by HF's problem_type rule (CE, BCE for multi-label, MSE for regression). */
  recipeLoss(options: { labelSmoothing?: number }): RelaxedLoss {
    return bertRelaxedLoss(this.cfg, options);
  }

  /** The [MASK] and never-masked ids in use (undefined until known: see setSpecialTokens). */
  get specialTokens(): SpecialTokens | undefined {
    return this.special;
  }

  /** Take the special ids from the tokenizer the data is encoded with (see `specialTokensOf`). */
  setSpecialTokens(tokens: SpecialTokens): void {
    const bad = [tokens.maskTokenId, ...tokens.specialIds].find((id) => !Number.isInteger(id) || id < 0 || id >= this.cfg.vocabSize);
    if (bad !== undefined) throw new OptionError('specialTokens', `token id ${bad} is outside the vocabulary (vocab_size ${this.cfg.vocabSize})`);
    this.special = { maskTokenId: tokens.maskTokenId, specialIds: [...tokens.specialIds] };
  }

  /**
   * Drop operators for the sub pass: 'token-masking' (BERT's [MASK] replacement, never [CLS],
   * [SEP] or padding, at least one token per sequence). When the [MASK] id is unknown, a fixed
   * mask can still be replayed (apply), but drawing one (sample) throws naming the option.
   */
  dropOperator(kind: DropKind): DropOperator {
    if (kind !== 'token-masking') {
      throw new OptionError('drop', `BERT offers token-masking, not '${kind}' (dropout/drop-path are the dropsub/pathsub variants)`);
    }
    const special = this.special;
    if (special) return tokenMasking(special.maskTokenId, special.specialIds);
    const replayOnly = tokenMasking(-1, []);
    return {
      kind: 'token-masking',
      sample: (_inputs, ratio) => {
        checkRatio(ratio);
        throw new OptionError(
          'mask_token_id',
          `the [MASK] id is unknown for this vocabulary (vocab_size ${this.cfg.vocabSize}): set it from the tokenizer (model.setSpecialTokens(specialTokensOf(tokenizer))) or as mask_token_id in config.json`,
        );
      },
      apply: (inputs, mask) => replayOnly.apply(inputs, mask),
    };
  }

  private p(name: string): tf.Variable {
    return this.params.get(name);
  }

  /** input_ids [B, L] (int32), attention_mask / token_type_ids the same shape when given. */
  private checkInputs(inputs: ModelInputs): { ids: tf.Tensor2D; mask?: tf.Tensor2D; types?: tf.Tensor2D } {
    const ids = inputs.input_ids;
    if (!ids) throw new OptionError('input_ids', `BERT needs input 'input_ids' [B, L] (int32), got [${Object.keys(inputs)}]`);
    if (ids.rank !== 2) throw new OptionError('input_ids', `expected [B, L], got [${ids.shape}]`);
    const [, len] = ids.shape;
    if (len > this.cfg.maxPositionEmbeddings) {
      throw new OptionError('input_ids', `sequence length ${len} exceeds max_position_embeddings ${this.cfg.maxPositionEmbeddings}`);
    }
    const same = (name: string): tf.Tensor2D | undefined => {
      const t = inputs[name];
      if (!t) return undefined;
      if (t.rank !== 2 || t.shape[0] !== ids.shape[0] || t.shape[1] !== len) throw new OptionError(name, `expected [${ids.shape}] like input_ids, got [${t.shape}]`);
      return t as tf.Tensor2D;
    };
    return { ids: ids as tf.Tensor2D, mask: same('attention_mask'), types: same('token_type_ids') };
  }

  /**
   * Embedding rows for int ids through core's `embedding`: a gather whose gradient is a
   * scatter-add, linear in the tokens on every backend (tfjs-cpu's UnsortedSegmentSum, gather's
   * own gradient, loops over all 30522 vocabulary rows).
   */
  private embed(table: tf.Tensor, ids: tf.Tensor): tf.Tensor {
    const [b, l] = ids.shape;
    const flat = tf.reshape(ids.dtype === 'int32' ? ids : tf.cast(ids, 'int32'), [b * l]);
    return tf.reshape(embedding(table, flat), [b, l, table.shape[1] as number]);
  }

  forward(inputs: ModelInputs, options: ForwardOptions = {}): tf.Tensor {
    if (options.keepIndices || options.maskedPositions) {
      throw new OptionError(options.keepIndices ? 'keepIndices' : 'maskedPositions', 'BERT masks tokens in input_ids (token-masking); it has no token removal or mask-token swap');
    }
    const { ids, mask, types } = this.checkInputs(inputs);
    const cfg = this.cfg;
    return tf.tidy(() => {
      const [b, len] = ids.shape;
      const d = cfg.hiddenSize;
      const training = options.training ?? false;
      // DropSub (dropoutRate) acts where it does in the official ViT code: attention output and
      // MLP (after the activation and the output dense); embeddings, probabilities and head keep the config's.
      const drop = passDropoutRates(options, { hidden: cfg.hiddenDropoutProb, attentionProbs: cfg.attentionProbsDropoutProb });
      const headDropRate = training ? cfg.classifierDropout : 0;
      // BERT has no stochastic depth of its own; PathSub asks for it in the sub pass only.
      const pathRate = options.dropPathRate ?? 0;
      const pathRule = options.dropPathRule ?? 'linear';
      const seed = options.seed ?? 0;

      // Embeddings: position ids 0..L-1 are a slice of the table; token types default to 0 (HF's buffer).
      const words = this.embed(this.p('bert.embeddings.word_embeddings.weight'), ids);
      const positions = tf.slice(this.p('bert.embeddings.position_embeddings.weight'), [0, 0], [len, d]);
      const typeTable = this.p('bert.embeddings.token_type_embeddings.weight');
      const typeEmb = types ? this.embed(typeTable, types) : tf.slice(typeTable, [0, 0], [1, d]);
      let h = tf.add(tf.add(words, typeEmb), positions);
      h = layerNorm(h, this.p('bert.embeddings.LayerNorm.weight'), this.p('bert.embeddings.LayerNorm.bias'), cfg.layerNormEps);
      h = dropout(h, drop.other, layerSeed(seed, cfg.numHiddenLayers, 0));

      // Padding: (1 - mask) * finfo(float32).min on the scores of padded keys, as transformers.
      const bias = mask ? tf.reshape(tf.mul(tf.sub(1, tf.cast(mask, 'float32')), FLOAT32_MIN), [b, 1, 1, len]) : undefined;
      for (let i = 0; i < cfg.numHiddenLayers; i++) {
        const l = (name: string) => this.p(`bert.encoder.layer.${i}.${name}`);
        const layerPath = blockDropPathRate(pathRate, pathRule, i, cfg.numHiddenLayers);
        // The pooler reads only [CLS]: the last layer computes just that row (its keys and
        // values still come from every token).
        const queries = i === cfg.numHiddenLayers - 1 ? 1 : undefined;
        const proj = (name: string): [tf.Tensor, tf.Tensor] => [l(`attention.self.${name}.weight`), l(`attention.self.${name}.bias`)];
        let attn = multiHeadAttention(
          h,
          { q: proj('query'), k: proj('key'), v: proj('value'), out: [l('attention.output.dense.weight'), l('attention.output.dense.bias')] },
          cfg.numAttentionHeads,
          { bias, dropoutRate: drop.attentionProbs, seed: layerSeed(seed, i, 0), queries },
        );
        attn = dropout(attn, drop.attentionOutput, layerSeed(seed, i, 1));
        h = leadingTokens(h, queries);
        // Post-LN: the norm follows the residual sum (BertSelfOutput / BertOutput).
        h = layerNorm(tf.add(h, dropPath(attn, layerPath, layerSeed(seed, i, 2))), l('attention.output.LayerNorm.weight'), l('attention.output.LayerNorm.bias'), cfg.layerNormEps);
        const hidden = dropout(this.act(linear(h, l('intermediate.dense.weight'), l('intermediate.dense.bias'))), drop.mlpHidden, layerSeed(seed, i, 5));
        let mlp = linear(hidden, l('output.dense.weight'), l('output.dense.bias'));
        mlp = dropout(mlp, drop.mlpOutput, layerSeed(seed, i, 3));
        h = layerNorm(tf.add(h, dropPath(mlp, layerPath, layerSeed(seed, i, 4))), l('output.LayerNorm.weight'), l('output.LayerNorm.bias'), cfg.layerNormEps);
      }
      const cls = tf.reshape(tf.slice(h, [0, 0, 0], [b, 1, d]), [b, d]);
      const pooled = tf.tanh(linear(cls, this.p('bert.pooler.dense.weight'), this.p('bert.pooler.dense.bias')));
      const dropped = dropout(pooled, headDropRate, layerSeed(seed, cfg.numHiddenLayers, 1));
      return linear(dropped, this.p('classifier.weight'), this.p('classifier.bias'));
    });
  }

  dispose(): void {
    this.params.dispose();
  }
}
