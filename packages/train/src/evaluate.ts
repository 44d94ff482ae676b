/** Classification evaluation: top-1 / top-5 accuracy (percent) and mean CE loss over a dataset. */
import { denseTargets, type MaskSubModel, softCrossEntropy, tf } from '@masksub/core';
import { DataLoader } from './data/loader.js';
import type { PreprocessSpec } from './data/preprocess.js';
import type { AnyImageDataset } from './data/types.js';

export interface EvalResult {
  top1: number;
  top5: number;
  loss: number;
  count: number;
}

export async function evaluate(
  model: MaskSubModel,
  dataset: AnyImageDataset,
  preprocess: PreprocessSpec,
  batchSize: number,
  inputName = 'pixel_values',
): Promise<EvalResult> {
  const loader = new DataLoader(dataset, { batchSize, preprocess, shuffle: false, dropLast: false });
  let correct1 = 0;
  let correct5 = 0;
  let lossSum = 0;
  let count = 0;
  for await (const batch of loader.epochBatches()) {
    const b = batch.shape[0];
    const [c1, c5, loss] = tf.tidy(() => {
      const x = tf.tensor4d(batch.images, batch.shape);
      const logits = model.forward({ [inputName]: x }, { training: false });
      const labels = tf.tensor1d(batch.labels, 'int32');
      const k = Math.min(5, logits.shape[1] as number);
      const { indices } = tf.topk(logits, k);
      const hits = tf.cast(tf.equal(indices, tf.expandDims(labels, 1)), 'float32');
      const top1 = tf.sum(tf.slice(hits, [0, 0], [b, 1]));
      const top5 = tf.sum(hits);
      const nll = tf.mul(softCrossEntropy(logits, denseTargets({ labels }, logits.shape[1] as number)), b);
      return [top1.dataSync()[0], top5.dataSync()[0], nll.dataSync()[0]];
    });
    correct1 += c1;
    correct5 += c5;
    lossSum += loss;
    count += b;
  }
  return { top1: (100 * correct1) / Math.max(1, count), top5: (100 * correct5) / Math.max(1, count), loss: lossSum / Math.max(1, count), count };
}
