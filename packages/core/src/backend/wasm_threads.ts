/**
 * Makes tfjs' threaded SIMD wasm build start under Node.
 *
 * tfjs 4.22 turns threads off under Node (WASM_HAS_MULTITHREAD_SUPPORT is false when IS_NODE)
 * because its Emscripten pthread workers cannot start there:
 *  1. the worker script is handed over as a `blob:` URL, and Node's `worker_threads.Worker`
 *     accepts only file paths / file: URLs;
 *  2. the worker then loads the main module from another Blob (`mainScriptUrlOrBlob`), with
 *     `importScripts(URL.createObjectURL(blob))`, which reads it as a file and fails;
 *  3. that main module is the factory's `toString()` from tfjs' Node bundle, which refers to
 *     bundle-scope names (`require$$0` = fs, `require$$1` = path, ..., `commonjsGlobal`) that do
 *     not exist in the worker's global scope.
 *  4. the C++ side sizes its pool as min(requested, logical cores / 2) — it assumes two
 *     hyper-threads per core — read once when the module starts, so on a 2-vCPU machine it
 *     always gets 1 thread. `os.cpus()` (what Emscripten asks in Node) is made to report
 *     2 x threads entries while the module starts, then restored.
 * We capture both Blobs' text as tfjs creates them, write them to a private temp folder, return
 * the worker's file path from `URL.createObjectURL`, and give the worker a preamble that
 * defines the missing names and loads the main module from its file. Nothing in tfjs is edited.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tf } from '../tf.js';

const MAIN_MARK = 'var WasmBackendModuleThreadedSimd';
const WORKER_MARK = 'WasmBackendModuleThreadedSimd(Module)';
/** The worker's own main-module loader (see 2. above), replaced by a load from our file. */
const WORKER_LOADER =
  'if(typeof e.data.urlOrBlob=="string"){importScripts(e.data.urlOrBlob)}else{var objectUrl=URL.createObjectURL(e.data.urlOrBlob);importScripts(objectUrl);URL.revokeObjectURL(objectUrl)}';

interface PatchState {
  dir: string;
  mainPath: string | null;
  workerPath: string | null;
}

let state: PatchState | null = null;

function workerPreamble(mainPath: string): string {
  // Bundle-scope names used by the factory text (3. above), defined as worker globals.
  return [
    "globalThis.require$$0 = require('fs');",
    "globalThis.require$$1 = require('path');",
    "globalThis.require$$3 = require('perf_hooks');",
    "globalThis.require$$4 = require('os');",
    'globalThis.commonjsGlobal = globalThis;',
    `globalThis.__masksubWasmMain = ${JSON.stringify(mainPath)};`,
    `globalThis._scriptDir = ${JSON.stringify(mainPath)};`,
    '',
  ].join('\n');
}

/**
 * Installs the Blob / createObjectURL hooks (once per process) and enables tfjs' threaded wasm.
 * Call before the wasm backend is first initialised, together with `setThreadsCount(threads)`.
 * Returns a function that removes the Blob and os.cpus hooks once the backend has started (the
 * createObjectURL hook stays, narrowly, for workers spawned later).
 */
export function enableThreadedWasmInNode(threads: number): () => void {
  if (state === null) {
    state = { dir: mkdtempSync(join(tmpdir(), 'masksub-wasm-')), mainPath: null, workerPath: null };
  }
  const s = state;
  const NativeBlob = globalThis.Blob;
  const captured = new WeakMap<Blob, string>();

  class CapturingBlob extends NativeBlob {
    constructor(...args: ConstructorParameters<typeof NativeBlob>) {
      super(...args);
      const parts: unknown[] | undefined = args[0];
      if (parts && parts.every((p) => typeof p === 'string')) {
        const text = (parts as string[]).join('');
        if (text.startsWith(MAIN_MARK)) {
          s.mainPath = join(s.dir, 'tfjs-backend-wasm-threaded-simd.main.cjs');
          writeFileSync(s.mainPath, text);
        } else if (text.includes(WORKER_MARK)) {
          captured.set(this, text);
        }
      }
    }
  }

  const nativeCreateObjectURL = URL.createObjectURL.bind(URL);
  URL.createObjectURL = (obj: Blob): string => {
    const text = captured.get(obj);
    if (text !== undefined && s.mainPath !== null) {
      if (s.workerPath === null) {
        if (!text.includes(WORKER_LOADER)) throw new Error('tfjs wasm worker script changed: cannot load its main module in Node');
        const body = text.replace(WORKER_LOADER, 'importScripts(globalThis.__masksubWasmMain);');
        s.workerPath = join(s.dir, 'tfjs-backend-wasm-threaded-simd.worker.cjs');
        writeFileSync(s.workerPath, workerPreamble(s.mainPath) + body);
      }
      return s.workerPath;
    }
    // Workers spawned after start-up (pool exhausted) come with a Blob we did not capture.
    if (s.workerPath !== null && obj instanceof NativeBlob && obj.type === 'application/javascript') return s.workerPath;
    return nativeCreateObjectURL(obj);
  };

  const nativeCpus = os.cpus;
  os.cpus = () => {
    const real = nativeCpus();
    return Array.from({ length: Math.max(real.length, 2 * threads) }, (_, i) => real[i % real.length]);
  };
  globalThis.Blob = CapturingBlob;
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
  return () => {
    globalThis.Blob = NativeBlob;
    os.cpus = nativeCpus;
  };
}

interface EmscriptenPThread {
  unusedWorkers?: { unref?: () => void }[];
  runningWorkers?: { unref?: () => void }[];
  getNewWorker?: () => { unref?: () => void };
}

/**
 * Emscripten's pthread pool is made of Node `worker_threads` that stay referenced, so a process
 * that used threaded wasm never exits on its own. Unreference the pool (and any worker it makes
 * later): the workers only serve the main thread and must not keep the process alive.
 */
export function unrefWasmWorkers(wasmModule: { PThread?: EmscriptenPThread }): void {
  const pt = wasmModule.PThread;
  if (!pt) return;
  for (const w of [...(pt.unusedWorkers ?? []), ...(pt.runningWorkers ?? [])]) w.unref?.();
  const getNewWorker = pt.getNewWorker?.bind(pt);
  if (getNewWorker && !(getNewWorker as { masksubUnref?: boolean }).masksubUnref) {
    const wrapped = () => {
      const w = getNewWorker();
      w.unref?.();
      return w;
    };
    (wrapped as { masksubUnref?: boolean }).masksubUnref = true;
    pt.getNewWorker = wrapped;
  }
}
