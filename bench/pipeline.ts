/**
 * The input pipeline against the step it feeds: CIFAR-10 JPEG shards (../shared/data/cifar10)
 * decoded, pad-crop 4 + flip augmented and normalised by masksub's DataLoader, batch 128.
 *   - alone: images/s the loader delivers when nothing else runs;
 *   - overlapped: the loader feeding real ResNet-20 standard steps, with the time the step loop
 *     waited for its next batch (what the trainer's progress line reports as data wait).
 * The bar: the pipeline alone at least 3x faster than the fastest training step consumes.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { tf } from '@masksub/core';
import { DataLoader, explicitPreprocessSpec, openDataSpec } from '@masksub/train';
import { makeResNetWorkload } from './arch/resnet.js';

export interface PipelineResult {
  source: string;
  batch: number;
  batches: number;
  img_per_s_alone: number;
  overlapped_steps: number;
  overlapped_ms_per_step: number;
  overlapped_wait_ms_per_step: number;
  wait_fraction: number;
}

const CIFAR = resolve(import.meta.dirname, '../../shared/data/cifar10');

function loaderFor(source: Awaited<ReturnType<typeof openDataSpec>>, batch: number): DataLoader {
  return new DataLoader(source, {
    batchSize: batch,
    preprocess: explicitPreprocessSpec({ size: 32, mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616] }),
    shuffle: true,
    dropLast: true,
    seed: 0,
    augment: { padCrop: 4, hflip: 0.5 },
  });
}

export async function benchPipeline(opts: { quick: boolean; log: (s: string) => void }): Promise<PipelineResult | string> {
  if (!existsSync(CIFAR)) return `${CIFAR} not found`;
  const spec = `webdataset:${CIFAR}/train-{000000..000004}.tar.gz`;
  const batch = opts.quick ? 32 : 128;
  const batches = opts.quick ? 8 : 40;
  const source = await openDataSpec(spec);

  let loader = loaderFor(source, batch);
  let it = loader.epochBatches()[Symbol.asyncIterator]();
  await it.next(); // shard index, first decode
  const t0 = performance.now();
  for (let i = 0; i < batches; i++) if ((await it.next()).done) break;
  const alone = (batches * batch * 1000) / (performance.now() - t0);
  await it.return?.(undefined);

  const steps = opts.quick ? 3 : 10;
  const work = makeResNetWorkload(batch);
  loader = loaderFor(source, batch);
  it = loader.epochBatches()[Symbol.asyncIterator]();
  await it.next();
  work.step(false, 0);
  let wait = 0;
  const s0 = performance.now();
  for (let i = 1; i <= steps; i++) {
    const w0 = performance.now();
    const next = await it.next();
    wait += performance.now() - w0;
    if (next.done) break;
    const x = tf.tensor4d(next.value.images, next.value.shape);
    const labels = tf.tensor1d(next.value.labels, 'int32');
    work.stepOn({ inputs: { pixel_values: x }, targets: { labels } }, i);
    tf.dispose([x, labels]);
  }
  const total = performance.now() - s0;
  await it.return?.(undefined);
  work.dispose();
  const r: PipelineResult = {
    source: spec,
    batch,
    batches,
    img_per_s_alone: alone,
    overlapped_steps: steps,
    overlapped_ms_per_step: total / steps,
    overlapped_wait_ms_per_step: wait / steps,
    wait_fraction: wait / total,
  };
  opts.log(`  pipeline alone: ${alone.toFixed(0)} img/s; feeding ResNet-20: ${r.overlapped_ms_per_step.toFixed(0)} ms/step, waiting ${r.overlapped_wait_ms_per_step.toFixed(0)} ms/step for data (${(100 * r.wait_fraction).toFixed(1)} %)\n`);
  return r;
}
