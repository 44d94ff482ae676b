/**
 * Swin Transformer (HF SwinForImageClassification) in tfjs ops, top to bottom: patch embedding as
 * a matmul on patches (input zero-padded to a multiple of the patch), LayerNorm, optional mask
 * token swap, stages of blocks with windowed attention (relative position bias, cyclic shift and
 * its mask on odd blocks, maps zero-padded to a multiple of the window), patch merging between
 * stages, final norm, average pool, classifier. The sub pass swaps blocks of patch tokens for a
 * learnable mask token right after the embedding norm (SimMIM / HF `bool_masked_pos`), so the
 * window layout is unchanged.
 */
import {
  OptionError,
  ParameterStore,
  Rng,
  activation,
  blockDropPathRate,
  dropPath,
  dropout,
  layerNorm,
  layerSeed,
  linear,
  maskTokenSwap,
  passDropoutRates,
  patchify,
  scaledSoftmax,
  tf,
  zeroFill,
  type AdapterModel,
  type DropKind,
  type DropOperator,
  type ForwardOptions,
  type HFConfig,
  type ModelInputs,
  type PassDropoutRates,
} from '@masksub/core';
import { parseSwinConfig, type SwinConfig } from './config.js';
import { swinParamSpecs } from './weights.js';
import { relativePositionIndex, shiftedWindowMask, shiftedWindowPartition, shiftedWindowReverse, windowPartition, windowPlan, windowReverse } from './windows.js';
import { swinParamGroups } from './param-groups.js';
import type { ParamGroups } from '@masksub/core';

/** nn.LayerNorm's default eps: HF builds the embedding and patch-merging norms without the config's eps. */
const TORCH_LAYER_NORM_EPS = 1e-5;

/** Rates and seed of one pass. */
interface PassNoise {
  drop: PassDropoutRates;
  path: number;
  seed: number;
}

export class SwinModel implements AdapterModel {
  readonly architecture = 'swin';
  readonly params: ParameterStore;
  readonly cfg: SwinConfig;
  readonly defaultDrop: DropKind = 'mask-token';
  private readonly act: (x: tf.Tensor) => tf.Tensor;

  constructor(
    readonly config: Readonly<HFConfig>,
    options: { rng?: Rng } = {},
  ) {
    this.cfg = parseSwinConfig(config);
    this.act = activation(this.cfg.hiddenAct);
    this.params = new ParameterStore(swinParamSpecs(this.cfg), options.rng ?? new Rng(0));
  }

  /** Layer ids for layer-wise lr decay and the no-weight-decay parameters (see param-groups.ts). */
  paramGroups(): ParamGroups {
    return swinParamGroups(this.cfg.depths);
  }

  get numClasses(): number {
    return this.cfg.numLabels;
  }

  /** Patch grid of the configured image size (the input is padded up to whole patches). */
  get gridSize(): [number, number] {
    const p = this.cfg.patchSize;
    return [Math.ceil(this.cfg.imageSize[0] / p), Math.ceil(this.cfg.imageSize[1] / p)];
  }

  get numPatches(): number {
    const [h, w] = this.gridSize;
    return h * w;
  }

  /**
   * Side, in tokens, of the square blocks the mask-token operator swaps: 32 px as in the paper,
   * but at most half the grid, so that a small image still has blocks to keep and to drop
   * (sampleBlockMask always keeps one block; a single block would mask nothing).
   */
  get maskBlockTokens(): number {
    const [gh, gw] = this.gridSize;
    return Math.max(1, Math.min(Math.round(32 / this.cfg.patchSize), Math.floor(Math.min(gh, gw) / 2)));
  }

  /** Drop operators for the sub pass: block mask-token swap (default) and zero-fill of 32 px squares. */
  dropOperator(kind: DropKind): DropOperator {
    const [gh, gw] = this.gridSize;
    switch (kind) {
      case 'mask-token':
        return maskTokenSwap(gh, gw, this.maskBlockTokens);
      case 'zero-fill':
        return zeroFill(Math.min(32, this.cfg.imageSize[0]));
      default:
        throw new OptionError('drop', `Swin offers mask-token and zero-fill, not '${kind}' (windows need every token: no token removal; dropout/drop-path are the dropsub/pathsub variants)`);
    }
  }

  private p(name: string): tf.Variable {
    return this.params.get(`swin.${name}`);
  }

  private checkInput(inputs: ModelInputs): tf.Tensor {
    const x = inputs.pixel_values;
    const c = this.cfg.numChannels;
    if (!x) throw new OptionError('pixel_values', `Swin needs input 'pixel_values' [B, ${c}, H, W], got [${Object.keys(inputs)}]`);
    if (x.rank !== 4 || x.shape[1] !== c) throw new OptionError('pixel_values', `expected [B, ${c}, H, W], got [${x.shape}]`);
    return x;
  }

  /**
   * Patch embedding: pixels [B, C, H, W] zero-padded on the right/bottom to whole patches (HF
   * maybe_pad), then the stride-p conv as a matmul on [B, gh*gw, C*p*p] patches.
   */
  private embedPatches(x: tf.Tensor): { tokens: tf.Tensor; height: number; width: number } {
    const p = this.cfg.patchSize;
    const [, , h, w] = x.shape as [number, number, number, number];
    const padH = (p - (h % p)) % p;
    const padW = (p - (w % p)) % p;
    const padded = padH || padW ? tf.pad(x, [[0, 0], [0, 0], [0, padH], [0, padW]]) : x;
    const gh = (h + padH) / p;
    const gw = (w + padW) / p;
    const patches = patchify(padded, p);
    const tokens = linear(patches, this.p('embeddings.patch_embeddings.projection.weight'), this.p('embeddings.patch_embeddings.projection.bias'));
    return { tokens, height: gh, width: gw };
  }

  forward(inputs: ModelInputs, options: ForwardOptions = {}): tf.Tensor {
    const x = this.checkInput(inputs);
    const cfg = this.cfg;
    return tf.tidy(() => {
      const b = x.shape[0];
      const embedded = this.embedPatches(x);
      let { height, width } = embedded;
      let h = layerNorm(embedded.tokens, this.p('embeddings.norm.weight'), this.p('embeddings.norm.bias'), TORCH_LAYER_NORM_EPS);
      if (options.maskedPositions) {
        const masked = options.maskedPositions;
        if (masked.rank !== 2 || masked.shape[0] !== b || masked.shape[1] !== height * width) {
          throw new OptionError('maskedPositions', `expected [${b}, ${height * width}] (the ${height}x${width} patch grid), got [${masked.shape}]`);
        }
        const m = tf.expandDims(tf.cast(masked, 'float32'), -1);
        h = tf.add(tf.mul(h, tf.sub(1, m)), tf.mul(this.p('embeddings.mask_token'), m));
      }

      const training = options.training ?? false;
      // HF Swin drops the attention output with attention_probs_dropout_prob (SwinSelfOutput).
      const noise: PassNoise = {
        drop: passDropoutRates(options, { hidden: cfg.hiddenDropoutProb, attentionProbs: cfg.attentionProbsDropoutProb, attentionOutput: cfg.attentionProbsDropoutProb }),
        path: options.dropPathRate ?? (training ? cfg.dropPathRate : 0),
        seed: options.seed ?? 0,
      };
      const pathRule = options.dropPathRule ?? cfg.dropPathRule;
      h = dropout(h, noise.drop.other, layerSeed(noise.seed, 0, 7));

      const totalBlocks = cfg.depths.reduce((a, d) => a + d, 0);
      let global = 0;
      for (let s = 0; s < cfg.depths.length; s++) {
        for (let i = 0; i < cfg.depths[s]; i++, global++) {
          // Blocks counted over all stages (HF/timm: torch.linspace(0, drop_path_rate, total blocks)).
          const pathRate = blockDropPathRate(noise.path, pathRule, global, totalBlocks);
          h = this.block(h, height, width, s, i, global, pathRate, noise);
        }
        if (s < cfg.depths.length - 1) {
          h = this.mergePatches(h, height, width, s);
          height = Math.ceil(height / 2);
          width = Math.ceil(width / 2);
        }
      }
      const normed = layerNorm(h, this.p('layernorm.weight'), this.p('layernorm.bias'), cfg.layerNormEps);
      const pooled = tf.mean(normed, 1);
      return linear(pooled, this.params.get('classifier.weight'), this.params.get('classifier.bias'));
    });
  }

  /** One Swin block on tokens [B, H*W, C]: (shifted) window attention and MLP, each pre-norm with a residual. */
  private block(h: tf.Tensor, height: number, width: number, stage: number, index: number, global: number, pathRate: number, noise: PassNoise): tf.Tensor {
    const cfg = this.cfg;
    const [b, length, c] = h.shape as [number, number, number];
    const l = (name: string) => this.p(`encoder.layers.${stage}.blocks.${index}.${name}`);
    const { window, shift } = windowPlan(height, width, cfg.windowSize, index);

    let x = tf.reshape(layerNorm(h, l('layernorm_before.weight'), l('layernorm_before.bias'), cfg.layerNormEps), [b, height, width, c]);
    // HF maybe_pad: zeros (after the norm) on the right/bottom up to whole windows.
    const padB = (window - (height % window)) % window;
    const padR = (window - (width % window)) % window;
    if (padB || padR) x = tf.pad(x, [[0, 0], [0, padB], [0, padR], [0, 0]]);
    const heightPad = height + padB;
    const widthPad = width + padR;
    // The cyclic shift (torch.roll by -shift) and the partition in one gather when shifted.
    const windows = shift ? shiftedWindowPartition(x, window, shift) : windowPartition(x, window);
    const mask = shift ? shiftedWindowMask(heightPad, widthPad, window, shift) : null;
    let attn = this.windowAttention(windows, stage, index, window, b, mask, noise, global);
    attn = dropout(attn, noise.drop.attentionOutput, layerSeed(noise.seed, global, 1));

    let merged = shift ? shiftedWindowReverse(attn, window, heightPad, widthPad, shift) : windowReverse(attn, window, heightPad, widthPad);
    if (padB || padR) merged = tf.slice(merged, [0, 0, 0, 0], [b, height, width, c]);
    h = tf.add(h, dropPath(tf.reshape(merged, [b, length, c]), pathRate, layerSeed(noise.seed, global, 2)));

    const mlpIn = layerNorm(h, l('layernorm_after.weight'), l('layernorm_after.bias'), cfg.layerNormEps);
    const hidden = dropout(this.act(linear(mlpIn, l('intermediate.dense.weight'), l('intermediate.dense.bias'))), noise.drop.mlpHidden, layerSeed(noise.seed, global, 5));
    let mlp = linear(hidden, l('output.dense.weight'), l('output.dense.bias'));
    mlp = dropout(mlp, noise.drop.mlpOutput, layerSeed(noise.seed, global, 3));
    return tf.add(h, dropPath(mlp, pathRate, layerSeed(noise.seed, global, 4)));
  }

  /**
   * Multi-head attention inside each window, windows [B*nW, N, C]. The relative position bias
   * [heads, N, N] is gathered from the table (its gradient is a segment sum into the table); with
   * a shift mask [nW, N, N] both are combined into one [1, nW*heads, N, N] addend, and the scores
   * are viewed as [B, nW*heads, N, N] so a plain rank-4 broadcast add applies both per window.
   */
  private windowAttention(
    windows: tf.Tensor,
    stage: number,
    index: number,
    window: number,
    batch: number,
    mask: Float32Array | null,
    noise: PassNoise,
    global: number,
  ): tf.Tensor {
    const cfg = this.cfg;
    const l = (name: string) => this.p(`encoder.layers.${stage}.blocks.${index}.attention.${name}`);
    const [bw, n, c] = windows.shape as [number, number, number];
    const heads = cfg.numHeads[stage];
    const dh = c / heads;
    const split = (name: string) => {
      const y = linear(windows, l(`self.${name}.weight`), cfg.qkvBias ? l(`self.${name}.bias`) : undefined);
      return tf.transpose(tf.reshape(y, [bw, n, heads, dh]), [0, 2, 1, 3]); // [B*nW, heads, N, dh]
    };
    const q = split('query');
    const k = split('key');
    const v = split('value');

    const index1d = tf.tensor1d(relativePositionIndex(window, cfg.windowSize), 'int32');
    const table = l('self.relative_position_bias_table'); // [(2W-1)^2, heads]
    const relBias = tf.transpose(tf.reshape(tf.gather(table, index1d), [n, n, heads]), [2, 0, 1]); // [heads, N, N]

    let scores = tf.matMul(q, k, false, true); // [B*nW, heads, N, N]
    let bias: tf.Tensor;
    if (mask) {
      const nW = bw / batch;
      const maskT = tf.tensor4d(mask, [nW, 1, n, n]);
      bias = tf.reshape(tf.add(maskT, tf.reshape(relBias, [1, heads, n, n])), [1, nW * heads, n, n]);
      scores = tf.reshape(scores, [batch, nW * heads, n, n]);
    } else {
      bias = tf.reshape(relBias, [1, heads, n, n]);
    }
    let probs = tf.reshape(scaledSoftmax(scores, 1 / Math.sqrt(dh), bias), [bw, heads, n, n]);
    probs = dropout(probs, noise.drop.attentionProbs, layerSeed(noise.seed, global, 0));
    const ctx = tf.reshape(tf.transpose(tf.matMul(probs, v), [0, 2, 1, 3]), [bw, n, c]);
    return linear(ctx, l('output.dense.weight'), l('output.dense.bias'));
  }

  /**
   * HF SwinPatchMerging on tokens [B, H*W, C]: pad odd sides with zeros, concatenate each 2x2
   * neighbourhood as [x(0,0), x(1,0), x(0,1), x(1,1)] (row offset fastest), LayerNorm, linear to 2C.
   * The gather is two rank-4 transposes instead of four strided slices.
   */
  private mergePatches(h: tf.Tensor, height: number, width: number, stage: number): tf.Tensor {
    const [b, , c] = h.shape as [number, number, number];
    let x = tf.reshape(h, [b, height, width, c]);
    const padB = height % 2;
    const padR = width % 2;
    if (padB || padR) x = tf.pad(x, [[0, 0], [0, padB], [0, padR], [0, 0]]);
    const h2 = (height + padB) / 2;
    const w2 = (width + padR) / 2;
    // [B*h2, dy, w2, (dx, C)] -> [B*h2, w2, dy, (dx, C)] -> per cell [dy, dx, C] -> [dx, dy, C]
    const rows = tf.transpose(tf.reshape(x, [b * h2, 2, w2, 2 * c]), [0, 2, 1, 3]);
    const cells = tf.transpose(tf.reshape(rows, [b * h2 * w2, 2, 2, c]), [0, 2, 1, 3]);
    const merged = tf.reshape(cells, [b, h2 * w2, 4 * c]);
    const l = (name: string) => this.p(`encoder.layers.${stage}.downsample.${name}`);
    const normed = layerNorm(merged, l('norm.weight'), l('norm.bias'), TORCH_LAYER_NORM_EPS);
    return linear(normed, l('reduction.weight'));
  }

  dispose(): void {
    this.params.dispose();
  }
}
