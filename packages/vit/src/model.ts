/**
 * ViT (HF ViTForImageClassification; DeiTForImageClassification with its distillation token)
 * in tfjs ops, top to bottom: patch embedding as a matmul on patches, CLS (+ distillation)
 * token, positions, pre-norm blocks (exact GELU, LayerNorm eps from the config), final norm,
 * head on CLS. The sub pass either removes patch tokens after the positions are added (MAE
 * style: the encoder runs on 1+K tokens) or swaps them for a learnable mask token (BEiT style).
 */
import {
  batchToken,
  OptionError,
  ParameterStore,
  Rng,
  activation,
  blockDropPathRate,
  dropPath,
  dropout,
  embedKeptPatches,
  layerNorm,
  layerSeed,
  leadingTokens,
  linear,
  maskTokenSwap,
  multiHeadAttention,
  passDropoutRates,
  patchify,
  removeTokens,
  tf,
  tokenRemoval,
  zeroFill,
  type AdapterModel,
  type DropKind,
  type DropOperator,
  type ForwardOptions,
  type HFConfig,
  type ModelInputs,
} from '@masksub/core';
import { parseViTConfig, type ViTConfig } from './config.js';
import { vitParamSpecs } from './weights.js';
import { vitParamGroups } from './param-groups.js';
import type { ParamGroups } from '@masksub/core';

/**
 * The drop operators of a ViT's patch grid, shared by the HF and the timm layouts: token removal,
 * mask-token blocks of 32 px (at least one token), zero-fill squares of 32 px.
 */
export function vitDropOperator(kind: DropKind, [gh, gw]: [number, number], patchSize: number, imageHeight: number): DropOperator {
  switch (kind) {
    case 'token-removal':
      return tokenRemoval(gh * gw);
    case 'mask-token':
      return maskTokenSwap(gh, gw, Math.max(1, Math.round(32 / patchSize)));
    case 'zero-fill':
      return zeroFill(Math.min(32, imageHeight));
    default:
      throw new OptionError('drop', `ViT offers token-removal, mask-token and zero-fill, not '${kind}' (dropout/drop-path are the dropsub/pathsub variants)`);
  }
}

export class ViTModel implements AdapterModel {
  readonly architecture = 'vit';
  readonly params: ParameterStore;
  readonly cfg: ViTConfig;
  readonly defaultDrop: DropKind = 'token-removal';
  private readonly act: (x: tf.Tensor) => tf.Tensor;

  constructor(
    readonly config: Readonly<HFConfig>,
    options: { rng?: Rng } = {},
  ) {
    this.cfg = parseViTConfig(config);
    this.act = activation(this.cfg.hiddenAct);
    this.params = new ParameterStore(vitParamSpecs(this.cfg), options.rng ?? new Rng(0));
  }

  /** Layer ids for layer-wise lr decay and the no-weight-decay parameters (see param-groups.ts). */
  paramGroups(): ParamGroups {
    return vitParamGroups(this.cfg.numHiddenLayers);
  }

  get numClasses(): number {
    return this.cfg.numLabels;
  }

  get gridSize(): [number, number] {
    return [this.cfg.imageSize[0] / this.cfg.patchSize, this.cfg.imageSize[1] / this.cfg.patchSize];
  }

  get numPatches(): number {
    const [h, w] = this.gridSize;
    return h * w;
  }

  /**
   * Drop operators for the sub pass. Mask-token blocks are 32 px as in the paper (at least one
   * token); zero-fill patches are 32 px too.
   */
  dropOperator(kind: DropKind): DropOperator {
    return vitDropOperator(kind, this.gridSize, this.cfg.patchSize, this.cfg.imageSize[0]);
  }

  private p(name: string): tf.Variable {
    return this.params.get(`${this.cfg.modelType}.${name}`);
  }

  /** [B, C, H, W] -> [B, N, C*p*p] in (C, ph, pw) order, matching the conv weight's flattening. */
  private checkInput(inputs: ModelInputs): tf.Tensor {
    const x = inputs.pixel_values;
    if (!x) throw new OptionError('pixel_values', `ViT needs input 'pixel_values' [B, ${this.cfg.numChannels}, ${this.cfg.imageSize}], got [${Object.keys(inputs)}]`);
    const [, c, h, w] = x.shape;
    if (x.rank !== 4 || c !== this.cfg.numChannels || h !== this.cfg.imageSize[0] || w !== this.cfg.imageSize[1]) {
      throw new OptionError('pixel_values', `expected [B, ${this.cfg.numChannels}, ${this.cfg.imageSize[0]}, ${this.cfg.imageSize[1]}], got [${x.shape}]`);
    }
    return x;
  }

  forward(inputs: ModelInputs, options: ForwardOptions = {}): tf.Tensor {
    const x = this.checkInput(inputs);
    const cfg = this.cfg;
    return tf.tidy(() => {
      const b = x.shape[0];
      const d = cfg.hiddenSize;
      const n = this.numPatches;
      const embed = (raw: tf.Tensor) =>
        linear(raw, this.p('embeddings.patch_embeddings.projection.weight'), this.p('embeddings.patch_embeddings.projection.bias'));
      const prefix = [batchToken(this.p('embeddings.cls_token'), b)];
      if (cfg.modelType === 'deit') prefix.push(batchToken(this.p('embeddings.distillation_token'), b));
      const pos = this.p('embeddings.position_embeddings');
      let h: tf.Tensor;
      if (options.keepIndices && !options.maskedPositions) {
        // MAE token removal before the embedding: the sub pass embeds K patches, not N.
        const p = prefix.length;
        const patchPos = tf.reshape(tf.slice(pos, [0, p, 0], [1, n, d]), [n, d]);
        const kept = embedKeptPatches(patchify(x, cfg.patchSize), options.keepIndices, embed, patchPos);
        h = tf.concat([tf.add(tf.concat(prefix, 1), tf.slice(pos, [0, 0, 0], [1, p, d])), kept], 1);
      } else {
        let patches = embed(patchify(x, cfg.patchSize));
        if (options.maskedPositions) {
          const m = tf.expandDims(options.maskedPositions, -1);
          if (options.maskedPositions.shape[0] !== b || options.maskedPositions.shape[1] !== n) {
            throw new OptionError('maskedPositions', `expected [${b}, ${n}], got [${options.maskedPositions.shape}]`);
          }
          patches = tf.add(tf.mul(patches, tf.sub(1, m)), tf.mul(this.p('embeddings.mask_token'), m));
        }
        h = tf.add(tf.concat([...prefix, patches], 1), pos);
        // Both options at once: the mask token is swapped in, then tokens are removed.
        if (options.keepIndices) h = removeTokens(h, options.keepIndices, prefix.length);
      }

      const training = options.training ?? false;
      const drop = passDropoutRates(options, { hidden: cfg.hiddenDropoutProb, attentionProbs: cfg.attentionProbsDropoutProb });
      const pathRate = options.dropPathRate ?? (training ? cfg.dropPathRate : 0);
      const pathRule = options.dropPathRule ?? cfg.dropPathRule;
      const seed = options.seed ?? 0;
      // The head reads only the CLS token (DeiT's too: HF's classifier takes row 0): the last
      // layer computes just that row (its keys and values still come from every token).
      const lastLayer = cfg.numHiddenLayers - 1;
      for (let i = 0; i < cfg.numHiddenLayers; i++) {
        const l = (name: string) => this.p(`encoder.layer.${i}.${name}`);
        const layerPath = blockDropPathRate(pathRate, pathRule, i, cfg.numHiddenLayers);
        const queries = i === lastLayer ? 1 : undefined;
        const attnIn = layerNorm(h, l('layernorm_before.weight'), l('layernorm_before.bias'), cfg.layerNormEps);
        const qkv = (name: string): [tf.Tensor, tf.Tensor?] => [
          l(`attention.attention.${name}.weight`),
          cfg.qkvBias ? l(`attention.attention.${name}.bias`) : undefined,
        ];
        let attn = multiHeadAttention(
          attnIn,
          { q: qkv('query'), k: qkv('key'), v: qkv('value'), out: [l('attention.output.dense.weight'), l('attention.output.dense.bias')] },
          cfg.numAttentionHeads,
          { dropoutRate: drop.attentionProbs, seed: layerSeed(seed, i, 0), queries },
        );
        attn = dropout(attn, drop.attentionOutput, layerSeed(seed, i, 1));
        h = leadingTokens(h, queries);
        h = tf.add(h, dropPath(attn, layerPath, layerSeed(seed, i, 2)));
        const mlpIn = layerNorm(h, l('layernorm_after.weight'), l('layernorm_after.bias'), cfg.layerNormEps);
        const hidden = dropout(this.act(linear(mlpIn, l('intermediate.dense.weight'), l('intermediate.dense.bias'))), drop.mlpHidden, layerSeed(seed, i, 5));
        let mlp = linear(hidden, l('output.dense.weight'), l('output.dense.bias'));
        mlp = dropout(mlp, drop.mlpOutput, layerSeed(seed, i, 3));
        h = tf.add(h, dropPath(mlp, layerPath, layerSeed(seed, i, 4)));
      }
      const cls = tf.reshape(tf.slice(h, [0, 0, 0], [b, 1, d]), [b, d]);
      const normed = layerNorm(cls, this.p('layernorm.weight'), this.p('layernorm.bias'), cfg.layerNormEps);
      return linear(normed, this.params.get('classifier.weight'), this.params.get('classifier.bias'));
    });
  }

  dispose(): void {
    this.params.dispose();
  }
}
