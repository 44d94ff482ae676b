/**
 * The measurement pass of a study (the paper's Table A.5 columns "train loss (original)" and
 * "train loss (drop)"): the final model's recipe loss on a fixed subset of the training data,
 * once on clean inputs and once through a drop operator, for every setting whatever it trained
 * on. Same samples (first N, no augmentation, fixed order) and same drop draws (fixed seed) for
 * every setting, so the columns compare models, not draws.
 */
import {
  type AdapterModel,
  type DropOperator,
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

/**
 * Measure the final model of a finished run folder (`<run>/model`, saved by the trainer with the
 * preprocessing it was trained with).
 */
export async function measureTrainLoss(config: RunConfig, spec: MeasureSpec): Promise<TrainLossMeasurement> {
  const modelDir = join(config.run.dir, 'model');
  const { model } = await loadPretrained(modelDir, { seed: config.train.seed, log: () => undefined });
  try {
    const preprocess = await preprocessForModel(model, modelDir);
    const numClasses = config.data.num_classes ?? model.numClasses;
    const train = limitDataset(limitDataset(await openDataSpec(config.data.train, { numClasses }), config.data.train_limit), spec.samples);
    const loader = new DataLoader(train, { batchSize: spec.batch_size, preprocess, shuffle: false, dropLast: false, numClasses });
    const op = measureDropOperator(model, spec.drop);
    const rng = new Rng(spec.seed);
    // The trainer's recipe loss (train.loss, else the model's own), without smoothing or mixing.
    const loss = config.train.loss ? relaxedLoss(config.train.loss) : (model.recipeLoss?.({}) ?? relaxedLoss('ce'));
    let clean = 0;
    let drop = 0;
    let count = 0;
    for await (const batch of loader.epochBatches()) {
      const b = batch.shape[0];
      const x = tf.tensor4d(batch.images, batch.shape);
      const labels = tf.tensor1d(batch.labels, 'int32');
      const inputs = { pixel_values: x };
      const mask = op.sample(inputs, spec.ratio, rng);
      const view = op.apply(inputs, mask);
      const [c, d] = tf.tidy(() => {
        const lc = loss.main(model.forward(inputs, { training: false }), { labels });
        // Eval mode (batch-norm running statistics) with the drop applied: only the drop differs.
        const ld = loss.main(model.forward(view.inputs, { ...view.forward, training: false }), { labels });
        return [lc.dataSync()[0], ld.dataSync()[0]];
      });
      for (const [k, t] of Object.entries(view.inputs)) if (inputs[k as keyof typeof inputs] !== t) t.dispose();
      view.forward.keepIndices?.dispose();
      view.forward.maskedPositions?.dispose();
      tf.dispose([x, labels]);
      clean += c * b;
      drop += d * b;
      count += b;
    }
    if (count === 0) throw new OptionError('measure.samples', `${config.data.train}: no training samples to measure the train loss on`);
    return { clean: clean / count, drop: drop / count, drop_kind: spec.drop, ratio: spec.ratio, samples: count, seed: spec.seed };
  } finally {
    model.dispose();
  }
}
