/**
 * The input pipeline against the step it feeds: CIFAR-10 JPEG shards (../shared/data/cifar10)
 * decoded, pad-crop 4 + flip augmented and normalised by masksub's DataLoader, batch 128, both
 * ways the trainer can run it: on a worker thread (its default, `data.loader_worker`) and on the
 * main thread between steps.
 *   - alone: images/s the loader delivers when nothing else runs;
 *   - overlapped: the loader feeding real ResNet-20 standard steps, with the time the step loop
 *     waited for its next batch (what the trainer's progress line reports as data wait);
 *   - first batch: from the loader's creation to its first batch (a worker's start-up, the shard
 *     index and the first decode), the wait before a run's first step.
 * The bar: the pipeline alone at least 3x faster than the fastest training step consumes.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { tf } from '@masksub/core';
import { DataLoader, explicitPreprocessSpec, openDataSpec } from '@masksub/train';
import { makeResNetWorkload } from './arch/resnet.js';

/** One way of running the loader, alone and feeding steps. */
export interface PipelineMode {
  first_batch_ms: number;
  img_per_s_alone: number;
  overlapped_ms_per_step: number;
  overlapped_wait_ms_per_step: number;
  wait_fraction: number;
}

/** The worker thread's numbers at the top level (what the trainer runs), the main thread's beside them. */
export interface PipelineResult extends PipelineMode {
  source: string;
  batch: number;
  batches: number;
  overlapped_steps: number;
  main_thread: PipelineMode;
}

const CIFAR = resolve(import.meta.dirname, '../../shared/data/cifar10');

function loaderFor(source: Awaited<ReturnType<typeof openDataSpec>>, batch: number, worker: boolean): DataLoader {
  return new DataLoader(source, {
    batchSize: batch,
    preprocess: explicitPreprocessSpec({ size: 32, mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616] }),
    shuffle: true,
    dropLast: true,
    seed: 0,
    augment: { padCrop: 4, hflip: 0.5 },
    worker,
  });
}

async function measure(
  source: Awaited<ReturnType<typeof openDataSpec>>,
  work: ReturnType<typeof makeResNetWorkload>,
  o: { batch: number; batches: number; steps: number; worker: boolean },
): Promise<PipelineMode> {
  const f0 = performance.now();
  let loader = loaderFor(source, o.batch, o.worker);
  let it = loader.epochBatches()[Symbol.asyncIterator]();
  await it.next(); // shard index, first decode (and the worker's start)
  const firstBatch = performance.now() - f0;
  const t0 = performance.now();
  for (let i = 0; i < o.batches; i++) if ((await it.next()).done) break;
  const alone = (o.batches * o.batch * 1000) / (performance.now() - t0);
  await it.return?.(undefined);
  await loader.close();

  loader = loaderFor(source, o.batch, o.worker);
  it = loader.epochBatches()[Symbol.asyncIterator]();
  await it.next();
  let wait = 0;
  const s0 = performance.now();
  for (let i = 1; i <= o.steps; i++) {
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
  await loader.close();
  return { first_batch_ms: firstBatch, img_per_s_alone: alone, overlapped_ms_per_step: total / o.steps, overlapped_wait_ms_per_step: wait / o.steps, wait_fraction: wait / total };
}

export async function benchPipeline(opts: { quick: boolean; log: (s: string) => void }): Promise<PipelineResult | string> {
  if (!existsSync(CIFAR)) return `${CIFAR} not found`;
  const spec = `webdataset:${CIFAR}/train-{000000..000004}.tar.gz`;
  const batch = opts.quick ? 32 : 128;
  const batches = opts.quick ? 8 : 40;
  const steps = opts.quick ? 3 : 12;
  const source = await openDataSpec(spec);
  const work = makeResNetWorkload(batch);
  // Warm the step as long as a measurement: measured first without it, a mode's steps ran ~10 %
  // slower than the same steps measured second (the order, not the mode, decided).
  for (let i = 0; i < steps; i++) work.step(false, i);
  const modes: Record<'worker' | 'main', PipelineMode> = {
    worker: await measure(source, work, { batch, batches, steps, worker: true }),
    main: await measure(source, work, { batch, batches, steps, worker: false }),
  };
  work.dispose();
  for (const [name, m] of Object.entries(modes)) {
    opts.log(
      `  pipeline on the ${name === 'worker' ? 'worker thread' : 'main thread'}: first batch after ${m.first_batch_ms.toFixed(0)} ms, ${m.img_per_s_alone.toFixed(0)} img/s alone; feeding ResNet-20: ${m.overlapped_ms_per_step.toFixed(0)} ms/step, waiting ${m.overlapped_wait_ms_per_step.toFixed(0)} ms/step for data (${(100 * m.wait_fraction).toFixed(1)} %)\n`,
    );
  }
  return { source: spec, batch, batches, overlapped_steps: steps, ...modes.worker, main_thread: modes.main };
}
