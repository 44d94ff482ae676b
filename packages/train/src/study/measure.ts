/**
 * The measurement pass of a study (the paper's Table A.5 columns "train loss (original)" and
 * "train loss (drop)"): the final model's recipe loss on a fixed subset of the training data,
 * once on clean inputs and once through a drop operator, for every setting whatever it trained
 * on. Same samples (first N, no augmentation, fixed order) and same drop draws (fixed seed) for
 * every setting, so the columns compare models, not draws.
 *
 * Image-text contrastive runs (CLIP) are measured with the contrastive loss they train with
 * (symmetric CE over the image-text similarity matrix, scaled by the model's logit scale), on
 * clean images and on dropped images (the captions are never dropped: the sub pass drops only
 * images too). That loss depends on the batch composition (every other pair of a batch is a
 * negative), so it is measured over fixed batches of exactly `measure.batch_size` pairs: the first
 * floor(samples / batch_size) full batches in file order; a partial last batch is left out, as a
 * batch of fewer negatives would not be comparable. Template captions take each class's first
 * template (as evaluation does), not the per-step random template of training.
 */
import {
  type AdapterModel,
  type ArchitectureAdapter,
  type DropOperator,
  type ModelInputs,
  type Targets,
  textCapabilityOf,
  dropPathSub,
  dropoutSub,
  loadPretrained,
  OptionError,
  relaxedLoss,
  Rng,
  tf,
} from '@masksub/core';
import { join } from 'node:path';
import type { RunConfig } from '../config.js';
import { readGlueTask } from '../data/glue.js';
import { batchCaptions, openImageTextSplit, parseGlueSpec, taskKindOf, type GlueSpec } from '../tasks/index.js';
import { requireImageTextModel } from '../tasks/zero-shot.js';
import { DataLoader } from '../data/loader.js';
import { openDataSpec } from '../data/spec.js';
import { preprocessForModel } from '../model-preprocess.js';
import { limitDataset } from '../subset.js';
import type { MeasureSpec } from './schema.js';

export interface TrainLossMeasurement {
  /** Mean recipe loss on clean inputs (eval mode). */
  clean: number;
  /** Mean recipe loss on dropped inputs. */
  drop: number;
  drop_kind: MeasureSpec['drop'];
  ratio: number;
  samples: number;
  seed: number;
}

/** The drop operator of a kind: the stochastic ones from core, the others from the model's adapter. */
export function measureDropOperator(model: AdapterModel, kind: MeasureSpec['drop']): DropOperator {
  if (kind === 'dropout') return dropoutSub();
  if (kind === 'drop-path') return dropPathSub();
  return model.dropOperator(kind);
}

/** One fixed batch of the measurement: model inputs, recipe targets, its size, and what to free. */
interface MeasureBatch {
  inputs: ModelInputs;
  targets: Targets;
  size: number;
  tensors: tf.Tensor[];
}

/** The first `spec.samples` training images, unaugmented, in file order. */
async function* imageBatches(config: RunConfig, model: AdapterModel, modelDir: string, spec: MeasureSpec): AsyncGenerator<MeasureBatch> {
  const preprocess = await preprocessForModel(model, modelDir);
  const numClasses = config.data.num_classes ?? model.numClasses;
  const train = limitDataset(limitDataset(await openDataSpec(config.data.train, { numClasses }), config.data.train_limit), spec.samples);
  const loader = new DataLoader(train, { batchSize: spec.batch_size, preprocess, shuffle: false, dropLast: false, numClasses });
  for await (const batch of loader.epochBatches()) {
    const x = tf.tensor4d(batch.images, batch.shape);
    const labels = tf.tensor1d(batch.labels, 'int32');
    yield { inputs: { pixel_values: x }, targets: { labels }, size: batch.shape[0], tensors: [x, labels] };
  }
}

/** The first `spec.samples` GLUE training rows in file order, tokenized by the saved folder's tokenizer. */
async function* textBatches(config: RunConfig, glue: GlueSpec, adapter: ArchitectureAdapter, modelDir: string, spec: MeasureSpec): AsyncGenerator<MeasureBatch> {
  const text = textCapabilityOf(adapter);
  if (!text) throw new OptionError('data.train', `the ${adapter.name} model takes no text: GLUE needs a text model`);
  const tokenizer = await text.loadTokenizer(config.data.tokenizer ?? modelDir);
  const all = await readGlueTask(glue.dir, glue.task, glue.split);
  const rows = all.slice(0, Math.min(spec.samples, config.data.train_limit ?? all.length));
  for (let start = 0; start < rows.length; start += spec.batch_size) {
    const part = rows.slice(start, start + spec.batch_size);
    const inputs = tokenizer.encode(part.map((r) => (r.text_b === undefined ? r.text_a : [r.text_a, r.text_b])), { maxLength: config.data.max_length, padding: 'longest' });
    const labels = tf.tensor1d(part.map((r) => r.label), glue.task === 'stsb' ? 'float32' : 'int32');
    yield { inputs, targets: { labels }, size: part.length, tensors: [...Object.values(inputs), labels] };
  }
}

/**
 * The first `floor(spec.samples / spec.batch_size)` full batches of training image-text pairs in
 * file order, unaugmented, with their caption groups as targets (the task's contrastive targets).
 */
async function* contrastiveBatches(config: RunConfig, model: AdapterModel, adapter: ArchitectureAdapter, modelDir: string, spec: MeasureSpec): AsyncGenerator<MeasureBatch> {
  checkMeasureSpec(config, spec);
  const m = requireImageTextModel(model);
  const text = textCapabilityOf(adapter);
  if (!text) throw new OptionError('model', `the ${adapter.name} adapter offers no tokenizer: the contrastive measurement encodes captions with one`);
  // The saved folder carries the tokenizer files and preprocessing the run trained with.
  const tokenizer = await text.loadTokenizer(config.data.tokenizer ?? modelDir);
  const maxLength = Math.min(config.data.max_length, m.textContextLength ?? config.data.max_length);
  const preprocess = await preprocessForModel(model, modelDir);
  const split = await openImageTextSplit(config.data.train, 'data.train', config.data.train_limit, { classes: config.data.classes, templates: config.data.templates });
  const train = limitDataset(split.data, spec.samples);
  const numClasses = split.captions.kind === 'templates' ? split.captions.classNames.length : undefined;
  const loader = new DataLoader(train, { batchSize: spec.batch_size, preprocess, shuffle: false, dropLast: true, numClasses });
  for await (const batch of loader.epochBatches()) {
    const { captions, groups } = batchCaptions(batch, split.captions, split.data.description);
    const pixels = tf.tensor4d(batch.images, batch.shape);
    const encoded = tokenizer.encode(captions, { maxLength, padding: 'longest' });
    const labels = tf.tensor1d(groups, 'int32');
    yield { inputs: { pixel_values: pixels, ...encoded }, targets: { labels }, size: batch.shape[0], tensors: [pixels, ...Object.values(encoded), labels] };
  }
}

/**
 * What can be checked about a measurement before the run trains (so a bad study file fails in
 * seconds, not after the cell's training): a contrastive measurement needs batches of at least 2
 * pairs and at least one full batch.
 */
export function checkMeasureSpec(config: RunConfig, spec: MeasureSpec): void {
  if (taskKindOf(config) !== 'image-text-contrastive') return;
  if (spec.batch_size < 2) throw new OptionError('measure.batch_size', `${spec.batch_size}: the contrastive loss needs at least 2 image-text pairs a batch (the others are the negatives)`);
  if (spec.samples < spec.batch_size) {
    throw new OptionError('measure.samples', `${spec.samples} is fewer than measure.batch_size ${spec.batch_size}: the contrastive loss is measured over full batches of batch_size pairs`);
  }
}

/**
 * Measure the final model of a finished run folder (`<run>/model`, saved by the trainer with the
 * preprocessing or tokenizer it was trained with): image classification, GLUE text tasks and
 * image-text contrastive training (every task kind the trainer runs).
 */
export async function measureTrainLoss(config: RunConfig, spec: MeasureSpec): Promise<TrainLossMeasurement> {
  const modelDir = join(config.run.dir, 'model');
  const { model, adapter } = await loadPretrained(modelDir, { seed: config.train.seed, log: () => undefined });
  try {
    const glue = parseGlueSpec(config.data.train);
    const batches = glue
      ? textBatches(config, glue, adapter, modelDir, spec)
      : taskKindOf(config) === 'image-text-contrastive'
        ? contrastiveBatches(config, model, adapter, modelDir, spec)
        : imageBatches(config, model, modelDir, spec);
    const op = measureDropOperator(model, spec.drop);
    const rng = new Rng(spec.seed);
    // The trainer's recipe loss (train.loss, else the model's own: CLIP's is the contrastive
    // loss), without smoothing or mixing.
    const loss = config.train.loss ? relaxedLoss(config.train.loss) : (model.recipeLoss?.({}) ?? relaxedLoss('ce'));
    let clean = 0;
    let drop = 0;
    let count = 0;
    for await (const batch of batches) {
      const { inputs, targets } = batch;
      const mask = op.sample(inputs, spec.ratio, rng);
      const view = op.apply(inputs, mask);
      const [c, d] = tf.tidy(() => {
        const lc = loss.main(model.forward(inputs, { training: false }), targets);
        // Eval mode (batch-norm running statistics, no dropout of the model's own) with the drop
        // applied: only the drop differs.
        const ld = loss.main(model.forward(view.inputs, { ...view.forward, training: false }), targets);
        return [lc.dataSync()[0], ld.dataSync()[0]];
      });
      for (const [k, t] of Object.entries(view.inputs)) if (inputs[k] !== t) t.dispose();
      view.forward.keepIndices?.dispose();
      view.forward.maskedPositions?.dispose();
      tf.dispose(batch.tensors);
      clean += c * batch.size;
      drop += d * batch.size;
      count += batch.size;
    }
    if (count === 0) throw new OptionError('measure.samples', `${config.data.train}: no training samples to measure the train loss on`);
    return { clean: clean / count, drop: drop / count, drop_kind: spec.drop, ratio: spec.ratio, samples: count, seed: spec.seed };
  } finally {
    model.dispose();
  }
}
