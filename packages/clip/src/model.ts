/**
 * CLIP (HF CLIPModel) in tfjs ops. Vision tower: patch embedding as a matmul on patches (the
 * conv has no bias), class embedding, positions, `pre_layrnorm`, pre-LN encoder, `post_layernorm`
 * on CLS, `visual_projection`. Text tower: token + position embeddings, causal (and padding)
 * masked pre-LN encoder, `final_layer_norm`, pooled at the EOS token, `text_projection`. The
 * output is the [B, B] image-text similarity exp(logit_scale) * norm(img) @ norm(txt)^T.
 *
 * MaskSub for CLIP: the sub pass removes image patch tokens after the positions are added (MAE
 * style, CLS kept) and sees the same texts; only the vision tower follows the sub pass's
 * instructions, so the text embeddings of both passes are identical.
 */
import {
  OptionError,
  ParameterStore,
  Rng,
  activation,
  embedding,
  layerNorm,
  linear,
  passDropoutRates,
  relaxedLoss,
  tf,
  tokenRemoval,
  zeroFill,
  type AdapterModel,
  type DropKind,
  type DropOperator,
  type ForwardOptions,
  type HFConfig,
  type ModelInputs,
  type RelaxedLoss,
  type SharedBranch,
} from '@masksub/core';
import { LEGACY_EOS_TOKEN_ID, parseClipConfig, type ClipConfig } from './config.js';
import { clipParamSpecs } from './weights.js';
import { clipEncoder, pixelShapeProblem, visionHiddenStates } from './tower.js';
import { clipParamGroups } from './param-groups.js';
import type { ParamGroups } from '@masksub/core';

/** Added to attention scores that must not be attended; exp() of it underflows to exactly 0. */
const MASKED_SCORE = -1e9;

export interface ClipOutputs {
  logitsPerImage: tf.Tensor2D;
  logitsPerText: tf.Tensor2D;
  imageEmbeds: tf.Tensor2D;
  textEmbeds: tf.Tensor2D;
}

export class ClipModel implements AdapterModel {
  readonly architecture = 'clip';
  readonly params: ParameterStore;
  readonly cfg: ClipConfig;
  readonly defaultDrop: DropKind = 'token-removal';
  private readonly textAct: (x: tf.Tensor) => tf.Tensor;
  private readonly visionAct: (x: tf.Tensor) => tf.Tensor;

  constructor(
    readonly config: Readonly<HFConfig>,
    options: { rng?: Rng } = {},
  ) {
    this.cfg = parseClipConfig(config);
    this.textAct = activation(this.cfg.text.hiddenAct);
    this.visionAct = activation(this.cfg.vision.hiddenAct);
    this.params = new ParameterStore(clipParamSpecs(this.cfg), options.rng ?? new Rng(0));
    // HF initialises the temperature to log(1/0.07) (logit_scale_init_value), not randomly.
    const scale = tf.scalar(this.cfg.logitScaleInit);
    this.params.get('logit_scale').assign(scale);
    scale.dispose();
  }

  /** The embedding size both towers project to (what the registry calls the model's width). */
  /** Layer ids for layer-wise lr decay and the no-weight-decay parameters (see param-groups.ts). */
  paramGroups(): ParamGroups {
    return clipParamGroups(this.cfg.vision.numHiddenLayers, this.cfg.text.numHiddenLayers);
  }

  get numClasses(): number {
    return this.cfg.projectionDim;
  }

  /** CLIP trains on the image-text similarity: the contrastive relaxed loss. */
  recipeLoss(): RelaxedLoss {
    return relaxedLoss('contrastive');
  }

  /** Longest caption the text tower takes (max_position_embeddings). */
  get textContextLength(): number {
    return this.cfg.text.maxPositionEmbeddings;
  }

  /** Side of the square images the vision tower takes. */
  get imageSize(): number {
    return this.cfg.vision.imageSize;
  }

  get gridSize(): number {
    return this.cfg.vision.imageSize / this.cfg.vision.patchSize;
  }

  get numPatches(): number {
    return this.gridSize ** 2;
  }

  /** Token removal (default, MAE style) or zero-fill of 32 px squares on the image. */
  dropOperator(kind: DropKind): DropOperator {
    switch (kind) {
      case 'token-removal':
        return tokenRemoval(this.numPatches);
      case 'zero-fill':
        return zeroFill(Math.min(32, this.cfg.vision.imageSize));
      default:
        throw new OptionError('drop', `CLIP offers token-removal and zero-fill on the images, not '${kind}' (dropout/drop-path are the dropsub/pathsub variants)`);
    }
  }

  /** logits_per_image [B, B]: row i scores image i against every text. */
  forward(inputs: ModelInputs, options: ForwardOptions = {}): tf.Tensor {
    return tf.tidy(() => this.forwardWithText(inputs, this.textFeatures(inputs, options), options));
  }

  /**
   * The text tower is the part both passes of a MaskSub step compute identically (the drop
   * operators change only the images, the sub pass's rates are the vision tower's), so withMaskSub
   * embeds the captions once per step and backpropagates both passes' gradients through it once.
   */
  readonly sharedBranch: SharedBranch = {
    inputs: ['input_ids', 'attention_mask'],
    encode: (inputs, options) => this.textFeatures(inputs, options),
    forwardWith: (inputs, textEmbeds, options) => this.forwardWithText(inputs, textEmbeds, options),
  };

  private forwardWithText(inputs: ModelInputs, textEmbeds: tf.Tensor, options: ForwardOptions): tf.Tensor {
    return tf.tidy(() => {
      const image = this.imageFeatures(inputs, options);
      if (image.shape[0] !== textEmbeds.shape[0]) {
        throw new OptionError('input_ids', `${textEmbeds.shape[0]} captions for ${image.shape[0]} images: the contrastive loss pairs image i with caption i`);
      }
      return this.similarity(image, textEmbeds);
    });
  }

  /** Both similarity matrices and the projected (unnormalised) embeddings, as CLIPModel returns them. */
  forwardAll(inputs: ModelInputs, options: ForwardOptions = {}): ClipOutputs {
    return tf.tidy(() => {
      const imageEmbeds = this.imageFeatures(inputs, options);
      const textEmbeds = this.textFeatures(inputs, options);
      const logitsPerImage = this.similarity(imageEmbeds, textEmbeds);
      return { logitsPerImage, logitsPerText: tf.transpose(logitsPerImage) as tf.Tensor2D, imageEmbeds, textEmbeds };
    }) as ClipOutputs;
  }

  /** exp(logit_scale) * norm(img) @ norm(txt)^T, for any number of images and texts. */
  similarity(imageEmbeds: tf.Tensor, textEmbeds: tf.Tensor): tf.Tensor2D {
    return tf.tidy(() => {
      const unit = (x: tf.Tensor) => tf.mul(x, tf.rsqrt(tf.sum(tf.square(x), -1, true)));
      const cosine = tf.matMul(unit(imageEmbeds), unit(textEmbeds), false, true);
      return tf.mul(cosine, tf.exp(this.params.get('logit_scale'))) as tf.Tensor2D;
    });
  }

  /** visual_projection(post_layernorm(CLS)) [B, projection_dim]; honours keepIndices and the sub pass's rates. */
  imageFeatures(inputs: ModelInputs, options: ForwardOptions = {}): tf.Tensor2D {
    const x = this.checkPixels(inputs);
    const v = this.cfg.vision;
    return tf.tidy(() => {
      // Image features read CLS alone: the last layer computes only that row.
      const h = visionHiddenStates(this.params, v, this.visionAct, x, options, {
        configDropPathRate: this.cfg.dropPathRate,
        configDropPathRule: this.cfg.dropPathRule,
        clsOnly: true,
      });
      const [b, , d] = h.shape;
      const pooled = layerNorm(
        tf.reshape(tf.slice(h, [0, 0, 0], [b, 1, d]), [b, d]),
        this.params.get('vision_model.post_layernorm.weight'),
        this.params.get('vision_model.post_layernorm.bias'),
        v.layerNormEps,
      );
      return linear(pooled, this.params.get('visual_projection.weight')) as tf.Tensor2D;
    });
  }

  /**
   * text_projection(final_layer_norm(h)[EOS]) [B, projection_dim]. Only `training` and
   * `stepSeed` are read from the options: the sub pass's instructions are for the images, so both
   * passes embed the texts identically.
   */
  textFeatures(inputs: ModelInputs, options: ForwardOptions = {}): tf.Tensor2D {
    const { ids, mask } = this.checkText(inputs);
    const t = this.cfg.text;
    const [b, len] = ids.shape as [number, number];
    const idData = ids.dataSync();
    for (let i = 0; i < idData.length; i++) {
      if (!Number.isInteger(idData[i]) || idData[i] < 0 || idData[i] >= t.vocabSize) {
        throw new OptionError('input_ids', `token id ${idData[i]} at [${Math.floor(i / len)}, ${i % len}] is outside the vocabulary [0, ${t.vocabSize})`);
      }
    }
    const eos = eosPositions(idData, b, len, t.eosTokenId);
    return tf.tidy(() => {
      const d = t.hiddenSize;
      const tokens = embedding(this.params.get('text_model.embeddings.token_embedding.weight'), tf.cast(tf.reshape(ids, [b * len]), 'int32'));
      const positions = tf.slice(this.params.get('text_model.embeddings.position_embedding.weight'), [0, 0], [len, d]);
      let h = tf.add(tf.reshape(tokens, [b, len, d]), positions);
      h = clipEncoder(this.params, h, 'text_model', t, this.textAct, {
        bias: attentionBias(mask, b, len),
        // The text tower is not the sub-model's: DropSub/PathSub leave it alone.
        drop: passDropoutRates({ training: options.training }, { hidden: 0, attentionProbs: t.attentionDropout }),
        dropPathRate: 0,
        dropPathRule: 'linear',
        // The same noise in both passes of a step (the reference embeds the texts once), new
        // noise each step.
        seed: options.stepSeed ?? 0,
        // The features read each caption's EOS token alone: the last layer computes only that row.
        readTokens: { at: eos },
      });
      const pooled = layerNorm(tf.reshape(h, [b, d]), this.params.get('text_model.final_layer_norm.weight'), this.params.get('text_model.final_layer_norm.bias'), t.layerNormEps);
      return linear(pooled, this.params.get('text_projection.weight')) as tf.Tensor2D;
    });
  }

  private checkPixels(inputs: ModelInputs): tf.Tensor {
    const problem = pixelShapeProblem(inputs.pixel_values, this.cfg.vision);
    if (problem) throw new OptionError('pixel_values', `CLIP ${problem}${inputs.pixel_values ? '' : `, got [${Object.keys(inputs)}]`}`);
    return inputs.pixel_values!;
  }

  private checkText(inputs: ModelInputs): { ids: tf.Tensor; mask?: tf.Tensor } {
    const ids = inputs.input_ids;
    const maxLen = this.cfg.text.maxPositionEmbeddings;
    if (!ids) throw new OptionError('input_ids', `CLIP needs input 'input_ids' [B, L <= ${maxLen}] (see tokenizeCaptions), got [${Object.keys(inputs)}]`);
    const len = ids.shape[1] ?? 0;
    if (ids.rank !== 2 || len < 1 || len > maxLen) {
      throw new OptionError('input_ids', `expected [B, L] with 1 <= L <= max_position_embeddings ${maxLen}, got [${ids.shape}]`);
    }
    const mask = inputs.attention_mask;
    if (mask && (mask.rank !== 2 || mask.shape[0] !== ids.shape[0] || mask.shape[1] !== ids.shape[1])) {
      throw new OptionError('attention_mask', `expected the shape of input_ids [${ids.shape}], got [${mask.shape}]`);
    }
    return { ids, mask };
  }

  dispose(): void {
    this.params.dispose();
  }
}

/**
 * Per caption, the position the text is pooled at (transformers' CLIPTextTransformer rule): with
 * the legacy eos_token_id 2, argmax(input_ids) (first maximum, as torch.argmax); otherwise the
 * first token equal to eos_token_id (position 0 when there is none, as argmax of all zeros).
 */
export function eosPositions(ids: ArrayLike<number>, batch: number, length: number, eosTokenId: number): Int32Array {
  const out = new Int32Array(batch);
  for (let b = 0; b < batch; b++) {
    let best = 0;
    for (let i = 0; i < length; i++) {
      const id = ids[b * length + i];
      if (eosTokenId === LEGACY_EOS_TOKEN_ID) {
        if (id > ids[b * length + best]) best = i;
      } else if (id === eosTokenId) {
        best = i;
        break;
      }
    }
    out[b] = best;
  }
  return out;
}

/** Causal mask [1, 1, L, L], plus the padding mask [B, 1, 1, L] when one is given. */
function attentionBias(mask: tf.Tensor | undefined, batch: number, length: number): tf.Tensor {
  const causal = new Float32Array(length * length);
  for (let q = 0; q < length; q++) for (let k = q + 1; k < length; k++) causal[q * length + k] = MASKED_SCORE;
  const causalT = tf.tensor4d(causal, [1, 1, length, length]);
  if (!mask) return causalT;
  const padding = tf.mul(tf.sub(1, tf.reshape(tf.cast(mask, 'float32'), [batch, 1, 1, length])), MASKED_SCORE);
  return tf.add(causalT, padding);
}

