/**
 * Zero-shot classification with an image-text model (CLIP), as the CLIP paper evaluates it:
 * each class is the text embedding of its prompts ("a photo of a {}."), each prompt's embedding
 * normalised, averaged over the templates and renormalised; an image is assigned the class of
 * highest cosine similarity. Reports top-1 / top-5 in percent and the mean CE of the scaled
 * similarities. Works on any folder whose model offers image and text embeddings, before and
 * after training; the trainer does not know the architecture (the model is duck-typed).
 */
import { OptionError, denseTargets, softCrossEntropy, tf, type MaskSubModel, type ModelInputs } from '@masksub/core';
import { DataLoader } from '../data/loader.js';
import type { PreprocessSpec } from '../data/preprocess.js';
import type { AnyImageDataset } from '../data/types.js';
import { fillTemplate } from '../data/image-text.js';

/** What zero-shot (and contrastive) evaluation needs from a model: CLIPModel's two towers and its similarity. */
export interface ImageTextModel extends MaskSubModel {
  /** Projected image embeddings [B, D] (not normalised). */
  imageFeatures(inputs: ModelInputs): tf.Tensor2D;
  /** Projected text embeddings [T, D] (not normalised). */
  textFeatures(inputs: ModelInputs): tf.Tensor2D;
  /** exp(logit_scale) * norm(images) @ norm(texts)^T [B, T]. */
  similarity(imageEmbeds: tf.Tensor, textEmbeds: tf.Tensor): tf.Tensor2D;
  /** Longest text the text tower takes, when it has a limit. */
  readonly textContextLength?: number;
  /** Side of the square images the vision tower takes, when fixed. */
  readonly imageSize?: number;
}

export function isImageTextModel(model: MaskSubModel): model is ImageTextModel {
  const m = model as Partial<ImageTextModel>;
  return typeof m.imageFeatures === 'function' && typeof m.textFeatures === 'function' && typeof m.similarity === 'function';
}

/** The model as an image-text model, or an error naming what it is. */
export function requireImageTextModel(model: MaskSubModel, option = 'model'): ImageTextModel {
  if (!isImageTextModel(model)) {
    throw new OptionError(option, `zero-shot and contrastive tasks need an image-text model (CLIPModel); '${model.architecture}' ${String((model.config as Record<string, unknown>).architectures ?? '')} has no text tower`);
  }
  return model;
}

/** Captions -> the model's text inputs (input_ids, attention_mask); the caller disposes them. */
export type CaptionEncoder = (captions: readonly string[]) => ModelInputs;

const unit = (x: tf.Tensor) => tf.div(x, tf.norm(x, 2, -1, true));

/**
 * The zero-shot classifier [C, D]: per class, the unit text embeddings of its prompts averaged
 * over the templates and renormalised (CLIP's prompt ensembling).
 */
export function zeroShotWeights(model: ImageTextModel, classNames: readonly string[], templates: readonly string[], encode: CaptionEncoder): tf.Tensor2D {
  if (classNames.length === 0) throw new OptionError('classes', 'no class names');
  if (templates.length === 0) throw new OptionError('templates', 'no templates');
  const rows: tf.Tensor[] = [];
  try {
    for (const name of classNames) {
      const inputs = encode(templates.map((t) => fillTemplate(t, name)));
      try {
        rows.push(tf.tidy(() => unit(tf.mean(unit(model.textFeatures(inputs)), 0))));
      } finally {
        tf.dispose(Object.values(inputs));
      }
    }
    return tf.stack(rows) as tf.Tensor2D;
  } finally {
    tf.dispose(rows);
  }
}

export interface ZeroShotResult {
  metrics: { top1: number; top5: number };
  /** Mean CE of exp(logit_scale) * cosine against the labels. */
  loss: number;
  count: number;
}

/** Top-1 / top-5 (percent) of image-to-class similarity over an image-classification dataset. */
export async function evaluateZeroShot(
  model: ImageTextModel,
  dataset: AnyImageDataset,
  preprocess: PreprocessSpec,
  classifier: tf.Tensor2D,
  batchSize: number,
  classFile = 'classes',
): Promise<ZeroShotResult> {
  const classes = classifier.shape[0];
  const loader = new DataLoader(dataset, { batchSize, preprocess, shuffle: false, dropLast: false });
  let hits1 = 0;
  let hits5 = 0;
  let lossSum = 0;
  let count = 0;
  for await (const batch of loader.epochBatches()) {
    const n = batch.shape[0];
    for (let i = 0; i < n; i++) {
      const l = batch.labels[i];
      if (!(l >= 0 && l < classes)) throw new OptionError('classes', `sample '${batch.keys[i]}' of ${dataset.description} has label ${l}, but ${classFile} names ${classes} classes`);
    }
    const [h1, h5, loss] = tf.tidy(() => {
      const logits = model.similarity(model.imageFeatures({ pixel_values: tf.tensor4d(batch.images, batch.shape) }), classifier);
      const labels = tf.tensor1d(batch.labels, 'int32');
      const k = Math.min(5, classes);
      const hits = tf.cast(tf.equal(tf.topk(logits, k).indices, tf.expandDims(labels, 1)), 'float32');
      return [
        tf.sum(tf.slice(hits, [0, 0], [n, 1])).dataSync()[0],
        tf.sum(hits).dataSync()[0],
        softCrossEntropy(logits, denseTargets({ labels }, classes)).dataSync()[0] * n,
      ];
    });
    hits1 += h1;
    hits5 += h5;
    lossSum += loss;
    count += n;
  }
  const pct = (h: number) => (100 * h) / Math.max(1, count);
  return { metrics: { top1: pct(hits1), top5: pct(hits5) }, loss: lossSum / Math.max(1, count), count };
}
