/**
 * The loader's worker thread: opens the dataset again from its `source`, runs an ordinary
 * in-thread DataLoader with the same options and posts each batch (its buffers transferred, not
 * copied) with the loader position after it. The training step is synchronous and holds the
 * main thread for hundreds of milliseconds; here reading shards, decoding and augmenting go on
 * meanwhile. Protocol: worker-client.ts.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { DataLoader, type DataLoaderOptions } from './loader.js';
import { openDataSpec } from './spec.js';
import { limitDataset } from '../subset.js';
import type { DatasetSource } from './types.js';
import { transferablesOf, wireError, type ToWorker, type FromWorker } from './worker-protocol.js';

interface Job {
  id: number;
  credits: number;
  stopped: boolean;
  wake: (() => void) | null;
}

const port = parentPort;
if (!port) throw new Error('loader-worker.ts runs as a worker thread (see worker-client.ts)');
const { source, options } = workerData as { source: DatasetSource; options: DataLoaderOptions };
const loaderReady = openDataSpec(source.spec, source.options).then((dataset) => new DataLoader(limitDataset(dataset, source.limit), { ...options, worker: false }));
loaderReady.catch(() => undefined); // reported by the first epoch's run

let current: Job | null = null;
let running: Promise<void> = Promise.resolve();

const post = (m: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);

async function run(job: Job, state: Parameters<DataLoader['restore']>[0]): Promise<void> {
  try {
    const loader = await loaderReady;
    loader.restore(state);
    for await (const batch of loader.epochBatches()) {
      if (job.stopped) break;
      post({ type: 'batch', id: job.id, batch, state: loader.state() }, transferablesOf(batch));
      job.credits--;
      while (job.credits <= 0 && !job.stopped) await new Promise<void>((resolve) => (job.wake = resolve));
      if (job.stopped) break;
    }
    if (!job.stopped) post({ type: 'end', id: job.id, state: loader.state() });
  } catch (e) {
    if (!job.stopped) post({ type: 'error', id: job.id, error: wireError(e) });
  }
}

port.on('message', (m: ToWorker) => {
  if (m.type === 'epoch') {
    if (current) stop(current);
    const job: Job = { id: m.id, credits: m.credits, stopped: false, wake: null };
    current = job;
    running = running.then(() => run(job, m.state));
  } else if (current && current.id === m.id) {
    if (m.type === 'credit') {
      current.credits++;
      current.wake?.();
    } else stop(current);
  }
});

function stop(job: Job): void {
  job.stopped = true;
  job.wake?.();
}
