/**
 * Image-text contrastive training (CLIP, the MaskSub paper's Table 12 row at small scale): image
 * batches with their captions, encoded by the model's own tokenizer; the model's output is the
 * [B, B] image-text similarity and the recipe loss is the contrastive relaxed loss (the sub-model,
 * which sees token-removed images and the same captions, mimics the main similarity matrix).
 *
 * Captions come from WebDataset `<key>.txt` or from class names filled into prompt templates.
 * Duplicate captions in a batch are expected with templates (two cats, one prompt), so the main
 * loss gets caption groups as targets (core's contrastiveTargets): with `.txt` captions a group is
 * one exact caption text; with templates a group is one class, so two images of a class and
 * their differently templated captions are all positives for each other (uniform targets over the
 * group, rows and columns). With distinct captions this is CLIP's arange loss.
 *
 * Evaluation on the eval split: retrieval recall@1/@5 in both directions over the distinct
 * captions (templates: the first template per class), in percent; the eval loss; and, when the
 * eval captions come from class names, zero-shot top-1/top-5 with every template (CLIP's prompt
 * ensemble, the same code as `masksub eval --zero-shot`).
 */
import { copyFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { OptionError, contrastiveLoss, tf, writeFileAtomic, type MaskSubModel, type TextTokenizer } from '@masksub/core';
import type { JsonValue } from '../checkpoint/checkpoint.js';
import type { RunConfig } from '../config.js';
import { templateCaptions, type CaptionSource } from '../data/image-text.js';
import { DataLoader, deriveRng } from '../data/loader.js';
import { preprocessSpecToHf, type PreprocessSpec } from '../data/preprocess.js';
import type { AnyImageDataset, ImageBatch, LoaderState } from '../data/types.js';
import { imageProcessorType } from '../model-preprocess.js';
import { imageTrainLoaderOptions } from './image-classification.js';
import type { Task, TaskBatch, TaskEval } from './types.js';
import { evaluateZeroShot, requireImageTextModel, zeroShotWeights, type ImageTextModel } from './zero-shot.js';

/** Metric keys of contrastive evaluation, all in percent. */
export const RETRIEVAL_METRIC_KEYS = ['i2t_r1', 'i2t_r5', 't2i_r1', 't2i_r5'] as const;
export const ZERO_SHOT_METRIC_KEYS = ['zero_shot_top1', 'zero_shot_top5'] as const;

/** Stream id of the per-batch template choice (derived from the loader position, so a resume draws the same). */
const TEMPLATE_STREAM = 0x7e3a;

export interface ImageTextSplit {
  data: AnyImageDataset;
  captions: CaptionSource;
}

export interface ImageTextTaskOptions {
  config: RunConfig;
  model: ImageTextModel;
  train: ImageTextSplit;
  eval: ImageTextSplit | null;
  preprocess: PreprocessSpec;
  tokenizer: TextTokenizer;
  /** Longest caption in tokens (the text tower's context length at most). */
  maxLength: number;
  /** The folder the model came from (its image processor type is kept in the saved folder). */
  checkpointDir: string;
}

/**
 * Captions of a batch and their caption groups (the contrastive targets): `.txt` captions group
 * by exact text, template captions by class. `rng` picks a template per sample (training); without
 * it every sample gets the first template (evaluation).
 */
export function batchCaptions(batch: ImageBatch, source: CaptionSource, description: string, rng?: ReturnType<typeof deriveRng>): { captions: string[]; groups: Int32Array } {
  const n = batch.labels.length;
  if (source.kind === 'text') {
    const captions = batch.captions;
    if (!captions || captions.length !== n) throw new OptionError('data', `${description}: the batch carries no captions (image-text data needs <key>.txt per image)`);
    const ids = new Map<string, number>();
    const groups = Int32Array.from(captions, (c) => {
      let id = ids.get(c);
      if (id === undefined) ids.set(c, (id = ids.size));
      return id;
    });
    return { captions, groups };
  }
  const captions = templateCaptions(batch.labels, batch.keys, { names: source.classNames, source: source.classFile }, source.templates, rng);
  return { captions, groups: Int32Array.from(batch.labels) };
}

export class ImageTextContrastiveTask implements Task {
  readonly kind = 'image-text-contrastive' as const;
  readonly metricKeys: readonly string[];
  readonly unit = 'img';
  private readonly loader: DataLoader;

  constructor(private readonly o: ImageTextTaskOptions) {
    const { config } = o;
    const aug = config.augment;
    if (aug.mixup > 0 || aug.cutmix > 0 || aug.label_smoothing > 0) {
      throw new OptionError(aug.mixup > 0 ? 'augment.mixup' : aug.cutmix > 0 ? 'augment.cutmix' : 'augment.label_smoothing', 'mixes labels, but an image-text task has captions, not classes: set it to 0');
    }
    if (config.train.batch_size < 2) throw new OptionError('train.batch_size', 'contrastive training needs at least 2 image-text pairs a batch');
    if (o.train.data.size !== undefined && o.train.data.size < config.train.batch_size) {
      throw new OptionError('train.batch_size', `${config.train.batch_size} is larger than the ${o.train.data.size} samples of ${o.train.data.description}; lower it`);
    }
    const classes = o.train.captions.kind === 'templates' ? o.train.captions.classNames.length : undefined;
    this.loader = new DataLoader(o.train.data, imageTrainLoaderOptions(config, o.preprocess, classes));
    const zeroShot = o.eval?.captions.kind === 'templates';
    this.metricKeys = zeroShot ? [...ZERO_SHOT_METRIC_KEYS, ...RETRIEVAL_METRIC_KEYS] : [...RETRIEVAL_METRIC_KEYS];
  }

  get batchesPerEpoch(): number | undefined {
    return this.loader.batchesPerEpoch;
  }

  get epoch(): number {
    return this.loader.epoch;
  }

  get description(): string {
    const c = this.o.train.captions;
    return `${this.o.train.data.description}, ${c.kind === 'text' ? '.txt captions' : `captions from ${c.classFile} x ${c.templates.length} template(s)`}`;
  }

  private encode(captions: readonly string[]) {
    return this.o.tokenizer.encode(captions, { maxLength: this.o.maxLength, padding: 'longest' });
  }

  async *batches(): AsyncGenerator<TaskBatch> {
    for (;;) {
      let any = false;
      for await (const b of this.loader.epochBatches()) {
        any = true;
        const position = this.loader.state();
        const rng = deriveRng(position.rng, TEMPLATE_STREAM, position.epoch, position.index);
        const { captions, groups } = batchCaptions(b, this.o.train.captions, this.o.train.data.description, rng);
        const pixels = tf.tensor4d(b.images, b.shape);
        const text = this.encode(captions);
        const labels = tf.tensor1d(groups, 'int32');
        yield { inputs: { pixel_values: pixels, ...text }, targets: { labels }, size: b.shape[0], tensors: [pixels, ...Object.values(text), labels] };
      }
      if (!any) throw new OptionError('data.train', `${this.o.train.data.description} gives no full batch of ${this.o.config.train.batch_size}`);
    }
  }

  state(): JsonValue {
    return this.loader.state() as unknown as JsonValue;
  }

  restore(state: JsonValue): void {
    this.loader.restore(state as unknown as LoaderState);
  }

  async evaluate(model: MaskSubModel): Promise<TaskEval | null> {
    if (!this.o.eval) return null;
    const batchSize = this.o.config.train.eval_batch_size ?? this.o.config.train.batch_size;
    return evaluateImageTextSplit(requireImageTextModel(model), this.o.eval, this.o.preprocess, (c) => this.encode(c), batchSize);
  }

  completeFolder(modelDir: string): void {
    // What `masksub eval --zero-shot` (and HF's CLIPProcessor) need to use the folder alone: the
    // tokenizer files the captions were encoded with and the images' preprocessing.
    for (const f of this.o.tokenizer.files) copyFileSync(f, join(modelDir, basename(f)));
    const hf = preprocessSpecToHf(this.o.preprocess, imageProcessorType(this.o.checkpointDir) ?? 'CLIPImageProcessor');
    writeFileAtomic(join(modelDir, 'preprocessor_config.json'), new TextEncoder().encode(`${JSON.stringify(hf, null, 2)}\n`));
  }
}

/**
 * What the task logs for an eval split (and `masksub eval` prints for an image-text folder):
 * retrieval recalls and the eval loss, plus zero-shot top-1/top-5 over every template when the
 * captions come from class names.
 */
export async function evaluateImageTextSplit(
  model: ImageTextModel,
  split: ImageTextSplit,
  preprocess: PreprocessSpec,
  encode: (captions: readonly string[]) => Record<string, tf.Tensor>,
  batchSize: number,
): Promise<TaskEval> {
  const r = await evaluateImageText(model, split, preprocess, encode, batchSize);
  const metrics: Record<string, number> = { ...r.metrics };
  let zeroShot = '';
  if (split.captions.kind === 'templates') {
    const { classNames, templates, classFile } = split.captions;
    const classifier = zeroShotWeights(model, classNames, templates, encode);
    try {
      const z = await evaluateZeroShot(model, split.data, preprocess, classifier, batchSize, classFile);
      metrics.zero_shot_top1 = z.metrics.top1;
      metrics.zero_shot_top5 = z.metrics.top5;
      zeroShot = `zero-shot top-1 ${z.metrics.top1.toFixed(2)}%  top-5 ${z.metrics.top5.toFixed(2)}%  `;
    } finally {
      tf.dispose(classifier);
    }
  }
  const f = (k: string) => metrics[k].toFixed(2);
  return {
    metrics,
    count: r.count,
    summary: `${zeroShot}i2t R@1 ${f('i2t_r1')}%  R@5 ${f('i2t_r5')}%  t2i R@1 ${f('t2i_r1')}%  R@5 ${f('t2i_r5')}%  loss ${metrics.loss.toFixed(4)}  (${r.count} images, ${r.captions} captions)`,
  };
}

export interface ImageTextEvalResult {
  /** Retrieval recalls in percent and the mean contrastive loss (grouped targets) over eval batches. */
  metrics: Record<(typeof RETRIEVAL_METRIC_KEYS)[number] | 'loss', number>;
  count: number;
  /** Distinct captions retrieved among. */
  captions: number;
}

const unit = (x: tf.Tensor) => tf.div(x, tf.norm(x, 2, -1, true));

/**
 * Retrieval over an eval split: every image against the distinct captions of the split.
 * image -> text R@k: the image's own caption is among the k most similar captions (a caption
 * ranks above it only when strictly more similar). text -> image R@k, per distinct caption: one
 * of the images it captions is among the k most similar images. Percent. The loss is the main
 * contrastive loss of each eval batch (grouped targets), averaged over images.
 */
export async function evaluateImageText(
  model: ImageTextModel,
  split: ImageTextSplit,
  preprocess: PreprocessSpec,
  encode: (captions: readonly string[]) => Record<string, tf.Tensor>,
  batchSize: number,
): Promise<ImageTextEvalResult> {
  const loader = new DataLoader(split.data, {
    batchSize,
    preprocess,
    shuffle: false,
    dropLast: false,
    numClasses: split.captions.kind === 'templates' ? split.captions.classNames.length : undefined,
  });
  const loss = contrastiveLoss();
  const captionIndex = new Map<string, number>();
  const textRows: tf.Tensor[] = [];
  const imageRows: tf.Tensor[] = [];
  const truth: number[] = [];
  let lossSum = 0;
  try {
    for await (const batch of loader.epochBatches()) {
      const { captions, groups } = batchCaptions(batch, split.captions, split.data.description);
      const text = encode(captions);
      const pixels = tf.tensor4d(batch.images, batch.shape);
      const labels = tf.tensor1d(groups, 'int32');
      try {
        const [img, txt, l] = tf.tidy(() => {
          const i = model.imageFeatures({ pixel_values: pixels });
          const t = model.textFeatures(text);
          return [unit(i), unit(t), loss.main(model.similarity(i, t), { labels })];
        });
        lossSum += l.dataSync()[0] * captions.length;
        l.dispose();
        imageRows.push(img);
        const fresh: number[] = [];
        captions.forEach((c, i) => {
          let id = captionIndex.get(c);
          if (id === undefined) {
            captionIndex.set(c, (id = captionIndex.size));
            fresh.push(i);
          }
          truth.push(id);
        });
        textRows.push(fresh.length ? tf.gather(txt, tf.tensor1d(fresh, 'int32')) : tf.zeros([0, txt.shape[1] as number]));
        txt.dispose();
      } finally {
        tf.dispose([pixels, labels, ...Object.values(text)]);
      }
    }
    const n = truth.length;
    if (n === 0) throw new OptionError('data.eval', `${split.data.description} holds no samples to evaluate`);
    const [images, texts] = [tf.concat(imageRows), tf.concat(textRows)];
    // S [N, U] on the host: one row per image, one column per distinct caption.
    const s = tf.matMul(images, texts, false, true);
    const sim = s.dataSync() as Float32Array;
    tf.dispose([s, images, texts]);
    const u = captionIndex.size;
    const recall = retrievalRecalls(sim, n, u, Int32Array.from(truth));
    return { metrics: { ...recall, loss: lossSum / n }, count: n, captions: u };
  } finally {
    tf.dispose([...imageRows, ...textRows]);
  }
}

/**
 * Recall@1/@5 (percent) from a similarity matrix [n images, u captions] (row-major) and each
 * image's caption. Ties count in the query's favour (only strictly higher scores rank above).
 */
export function retrievalRecalls(sim: ArrayLike<number>, n: number, u: number, truth: Int32Array): Record<(typeof RETRIEVAL_METRIC_KEYS)[number], number> {
  let i2t1 = 0;
  let i2t5 = 0;
  const bestTrue = new Float64Array(u).fill(-Infinity);
  for (let i = 0; i < n; i++) {
    const own = sim[i * u + truth[i]];
    let above = 0;
    for (let j = 0; j < u; j++) if (sim[i * u + j] > own) above++;
    if (above < 1) i2t1++;
    if (above < 5) i2t5++;
    if (own > bestTrue[truth[i]]) bestTrue[truth[i]] = own;
  }
  let t2i1 = 0;
  let t2i5 = 0;
  for (let j = 0; j < u; j++) {
    let above = 0;
    for (let i = 0; i < n; i++) if (sim[i * u + j] > bestTrue[j]) above++;
    if (above < 1) t2i1++;
    if (above < 5) t2i5++;
  }
  const pct = (h: number, of: number) => (100 * h) / of;
  return { i2t_r1: pct(i2t1, n), i2t_r5: pct(i2t5, n), t2i_r1: pct(t2i1, u), t2i_r5: pct(t2i5, u) };
}
