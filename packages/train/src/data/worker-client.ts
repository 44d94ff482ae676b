/**
 * The main-thread side of a DataLoader's worker (loader-worker.ts): starts it, asks for one
 * epoch at a time and hands the batches out as they arrive. The worker is unref'd while no epoch
 * is iterated, so an idle loader never keeps the process alive.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { DataLoaderOptions } from './loader.js';
import type { DatasetSource, ImageBatch, LoaderState } from './types.js';
import { reviveError, type FromWorker, type ToWorker } from './worker-protocol.js';

/**
 * The worker's entry. From TypeScript sources (tests, `pnpm masksub`) a small ES module first
 * registers tsx in the worker (loader flags given to a worker do not reach its entry module),
 * then imports loader-worker.ts with the `source` export condition.
 */
function workerEntry(): { url: URL; execArgv?: string[] } {
  if (!import.meta.url.endsWith('.ts')) return { url: new URL('./loader-worker.js', import.meta.url) };
  const tsxApi = pathToFileURL(tsxEsmApi()).href;
  const entry = new URL('./loader-worker.ts', import.meta.url).href;
  const code = `import { register } from ${JSON.stringify(tsxApi)}; register(); await import(${JSON.stringify(entry)});`;
  return { url: new URL(`data:text/javascript,${encodeURIComponent(code)}`), execArgv: ['--conditions=source'] };
}

/** tsx's ES-module API entry, read from its package.json exports (require.resolve gives the CommonJS one). */
function tsxEsmApi(): string {
  const manifest = createRequire(import.meta.url).resolve('tsx/package.json');
  const exports = (JSON.parse(readFileSync(manifest, 'utf8')) as { exports: Record<string, { import?: { default?: string } }> }).exports;
  const target = exports['./esm/api']?.import?.default;
  if (!target) throw new Error(`${manifest}: no './esm/api' import export; the loader worker cannot start from TypeScript sources`);
  return join(dirname(manifest), target);
}

export class LoaderWorker {
  private readonly worker: Worker;
  private nextId = 0;
  private exited: Error | null = null;

  constructor(source: DatasetSource, options: DataLoaderOptions) {
    const { url, execArgv } = workerEntry();
    this.worker = new Worker(url, { workerData: { source, options }, execArgv });
    this.worker.unref();
    this.worker.on('exit', (code) => {
      this.exited ??= new Error(`the data loader's worker thread stopped (exit code ${code})`);
    });
  }

  /**
   * The batches of the epoch that starts at `state`, each with the loader position after it; the
   * last item has no batch and the position after the epoch. Up to `ahead` batches are in flight.
   */
  async *epoch(state: LoaderState, ahead: number): AsyncGenerator<{ batch: ImageBatch | null; state: LoaderState }> {
    if (this.exited) throw this.exited;
    const id = ++this.nextId;
    const inbox: (FromWorker | { type: 'exit'; error: Error })[] = [];
    let wake: (() => void) | null = null;
    const deliver = (m: FromWorker | { type: 'exit'; error: Error }) => {
      inbox.push(m);
      wake?.();
    };
    const onMessage = (m: FromWorker) => {
      if (m.id === id) deliver(m);
    };
    const onError = (e: Error) => deliver({ type: 'exit', error: e });
    const onExit = (code: number) => deliver({ type: 'exit', error: new Error(`the data loader's worker thread stopped (exit code ${code})`) });
    this.worker.on('message', onMessage);
    this.worker.on('error', onError);
    this.worker.on('exit', onExit);
    this.worker.ref();
    let finished = false;
    try {
      this.send({ type: 'epoch', id, state, credits: ahead });
      for (;;) {
        while (inbox.length === 0) await new Promise<void>((resolve) => (wake = resolve));
        wake = null;
        const m = inbox.shift()!;
        if (m.type === 'batch') {
          yield { batch: m.batch, state: m.state };
          this.send({ type: 'credit', id });
        } else if (m.type === 'end') {
          finished = true;
          yield { batch: null, state: m.state };
          return;
        } else {
          finished = true;
          throw m.type === 'error' ? reviveError(m.error) : m.error;
        }
      }
    } finally {
      if (!finished && !this.exited) this.send({ type: 'stop', id });
      this.worker.off('message', onMessage);
      this.worker.off('error', onError);
      this.worker.off('exit', onExit);
      this.worker.unref();
    }
  }

  private send(m: ToWorker): void {
    this.worker.postMessage(m);
  }

  /** Stops the thread (the loader falls back to nothing: a closed loader is not used again). */
  async close(): Promise<void> {
    this.exited ??= new Error('the data loader was closed');
    await this.worker.terminate();
  }
}
