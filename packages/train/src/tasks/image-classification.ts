/** Image classification: today's pipeline (decode, augment, mixup/cutmix) and top-1/top-5. */
import { join } from 'node:path';
import { OptionError, tf, writeFileAtomic, type MaskSubModel } from '@masksub/core';
import type { JsonValue } from '../checkpoint/checkpoint.js';
import type { RunConfig } from '../config.js';
import { DataLoader, type DataLoaderOptions } from '../data/loader.js';
import { recipeLoaderOptions } from '../data/recipe-augment.js';
import { preprocessSpecToHf, type PreprocessSpec } from '../data/preprocess.js';
import type { AnyImageDataset, ImageBatch, LoaderState } from '../data/types.js';
import { evaluate } from '../evaluate.js';
import { imageProcessorType } from '../model-preprocess.js';
import type { Task, TaskBatch, TaskEval } from './types.js';

export interface ImageTaskOptions {
  config: RunConfig;
  train: AnyImageDataset;
  eval: AnyImageDataset | null;
  preprocess: PreprocessSpec;
  numClasses: number;
  /** The folder the model came from (its image processor type is kept in the saved folder). */
  checkpointDir: string;
  /** The classes' names in label order, when the data names them (tasks/labels.ts). */
  labelNames?: readonly string[];
}

function batchOf(batch: ImageBatch): TaskBatch {
  const x = tf.tensor4d(batch.images, batch.shape);
  const n = batch.shape[0];
  const target = batch.targets ? tf.tensor2d(batch.targets, [n, batch.targets.length / n]) : tf.tensor1d(batch.labels, 'int32');
  const targets = batch.targets ? { soft: target as tf.Tensor2D } : { labels: target as tf.Tensor1D };
  return { inputs: { pixel_values: x }, targets, size: n, tensors: [x, target] };
}

/** The training loader of an image task: batch size, seed, shuffling and the augment.* keys (no batch mixing). */
export function imageTrainLoaderOptions(config: RunConfig, preprocess: PreprocessSpec, numClasses: number | undefined): DataLoaderOptions {
  const aug = config.augment;
  return {
    batchSize: config.train.batch_size,
    preprocess,
    shuffle: true,
    dropLast: true,
    seed: config.train.seed,
    numClasses,
    worker: config.data.loader_worker,
    augment: {
      randomResizedCrop: aug.random_resized_crop === false ? undefined : { scale: aug.random_resized_crop.scale },
      padCrop: aug.pad_crop || undefined,
      hflip: aug.hflip,
    },
    ...recipeLoaderOptions(aug, preprocess),
  };
}

export class ImageClassificationTask implements Task {
  readonly kind = 'image-classification' as const;
  readonly metricKeys = ['top1', 'top5'] as const;
  readonly unit = 'img';
  private readonly loader: DataLoader;

  readonly labelNames: readonly string[] | undefined;

  constructor(private readonly o: ImageTaskOptions) {
    const { config } = o;
    this.labelNames = o.labelNames;
    const aug = config.augment;
    const mixing = aug.mixup > 0 || aug.cutmix > 0 || aug.label_smoothing > 0;
    if (o.train.size !== undefined && o.train.size < config.train.batch_size) {
      throw new OptionError('train.batch_size', `${config.train.batch_size} is larger than the ${o.train.size} samples of ${o.train.description}; lower it`);
    }
    this.loader = new DataLoader(o.train, {
      ...imageTrainLoaderOptions(config, o.preprocess, o.numClasses),
      mixup: mixing
        ? { mixupAlpha: aug.mixup, cutmixAlpha: aug.cutmix, prob: aug.mix_prob, switchProb: aug.switch_prob, labelSmoothing: aug.label_smoothing }
        : undefined,
    });
  }

  get batchesPerEpoch(): number | undefined {
    return this.loader.batchesPerEpoch;
  }

  get epoch(): number {
    return this.loader.epoch;
  }

  get description(): string {
    return this.o.train.description;
  }

  async *batches(): AsyncGenerator<TaskBatch> {
    for (;;) {
      let any = false;
      for await (const b of this.loader.epochBatches()) {
        any = true;
        yield batchOf(b);
      }
      if (!any) throw new OptionError('data.train', `${this.o.train.description} gives no full batch of ${this.o.config.train.batch_size}`);
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
    const { config } = this.o;
    const r = await evaluate(model, this.o.eval, this.o.preprocess, config.train.eval_batch_size ?? config.train.batch_size);
    return {
      metrics: { top1: r.top1, top5: r.top5, loss: r.loss },
      count: r.count,
      summary: `top-1 ${r.top1.toFixed(2)}%  top-5 ${r.top5.toFixed(2)}%  loss ${r.loss.toFixed(4)}  (${r.count} images)`,
    };
  }

  completeFolder(modelDir: string): void {
    // The run's own preprocessing beside the weights, so `masksub eval` (and HF image processors)
    // feed the fine-tuned model exactly what it was trained and evaluated on.
    const hf = preprocessSpecToHf(this.o.preprocess, imageProcessorType(this.o.checkpointDir));
    writeFileAtomic(join(modelDir, 'preprocessor_config.json'), new TextEncoder().encode(`${JSON.stringify(hf, null, 2)}\n`));
  }
}
