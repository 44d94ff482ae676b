/**
 * Picks the fastest TensorFlow.js backend available in this Node process:
 *   tensorflow (tfjs-node-gpu, then tfjs-node; optional peers) -> wasm (SIMD) -> cpu.
 * `MASKSUB_BACKEND=wasm|cpu|tensorflow` forces one; `prefer` moves one to the front.
 *
 * wasm starts tfjs' single-threaded SIMD build when the native addon is loaded (the addon's pool
 * runs the heavy kernels on every core), else the threaded build with one XNNPACK thread per CPU
 * (made to work under Node by wasm_threads.ts); MASKSUB_WASM_THREADS or `wasmThreads` overrides
 * either way. Before wasm is used, masksub's wasm kernels (missing training kernels and the fast matmul)
 * are registered. The choice is logged once per distinct selection; repeated calls are cheap.
 */
import os from 'node:os';
import { OptionError } from '../errors.js';
import { tf } from '../tf.js';
import { nativeGemm, nativeGemmStatus } from './native.js';
import { registerWasmKernels, type WasmKernelRegistration } from './wasm_kernels.js';
import { enableThreadedWasmInNode, unrefWasmWorkers } from './wasm_threads.js';

/** Backends in order of preference (one list for the schema, the CLI help and initBackend). */
export const BACKEND_NAMES = ['tensorflow', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];
export const BACKEND_ENV = 'MASKSUB_BACKEND';
/** XNNPACK threads for wasm (1 = the single-threaded SIMD build). */
export const WASM_THREADS_ENV = 'MASKSUB_WASM_THREADS';
/** tfjs' threaded build pre-creates 8 pthread workers and caps its pool there. */
const MAX_WASM_THREADS = 8;

export interface BackendInfo {
  /** masksub's name for the backend (also tfjs' backend name). */
  name: BackendName;
  /** What was loaded, e.g. "@tensorflow/tfjs-node" or "wasm simd, 1 thread". */
  detail: string;
  /** Why this backend: forced by env, preferred, or first available. */
  reason: string;
  /** Kernels masksub registered on wasm (null for other backends). */
  wasmKernels: WasmKernelRegistration | null;
}

export interface InitBackendOptions {
  prefer?: BackendName;
  /**
   * XNNPACK threads for wasm (MASKSUB_WASM_THREADS overrides; default: 1 with the native addon,
   * else the CPU count, max 8).
   * Only the first wasm start counts: the module's thread pool cannot be resized later.
   */
  wasmThreads?: number;
  log?: (msg: string) => void;
}

interface TryContext {
  /** An explicit XNNPACK thread count (validated), or undefined for `defaultWasmThreads`. */
  wasmThreads: number | undefined;
}

/** Whether the wasm module has been started (its thread count is fixed from then on). */
let wasmStarted = false;

/** Outcome of trying one backend: its detail when it works, why not otherwise. */
type Attempt = { ok: true; detail: string; wasmKernels: WasmKernelRegistration | null } | { ok: false; why: string };

/**
 * Imports a package that may be absent. The specifier is a variable so neither TypeScript nor a
 * bundler tries to resolve it: tfjs-node(-gpu) are optional peers and are not installed here.
 */
async function importOptional(specifier: string): Promise<unknown> {
  return import(specifier);
}

async function tryTensorflow(_ctx: TryContext): Promise<Attempt> {
  const reasons: string[] = [];
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      await importOptional(pkg);
    } catch (e) {
      // Absent is the normal case (optional peers); anything else is worth the whole message.
      const absent = (e as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && String((e as Error).message).includes(`'${pkg}'`);
      reasons.push(`${pkg} ${absent ? 'not installed' : `failed to load: ${firstLine(e)}`}`);
      continue;
    }
    if (tf.findBackend('tensorflow') == null) {
      // It registered on its own copy of tfjs-core, which masksub's tensors never reach.
      reasons.push(`${pkg} loaded but registered on another @tensorflow/tfjs-core instance (versions must match 4.22)`);
      continue;
    }
    if (await tf.setBackend('tensorflow')) return { ok: true, detail: pkg, wasmKernels: null };
    reasons.push(`${pkg}: backend failed to initialise`);
  }
  return { ok: false, why: reasons.join('; ') };
}

/**
 * XNNPACK threads for wasm when neither MASKSUB_WASM_THREADS nor `wasmThreads` says: one when the
 * native addon is loaded, else one per CPU (at most 8). With the addon, the products, fused
 * activations, norms and optimizer updates run on its own pool, which already uses every core;
 * what stays on XNNPACK is small element-wise work between those kernels, and a second pool
 * sized to the same cores made it slower (most likely each such op woke threads that then waited
 * for cores the addon's workers held; not traced). `pnpm bench --arch swin,clip` alternated with
 * MASKSUB_WASM_THREADS=2 (docs/perf.md, 2026-12-08): Swin's and CLIP's steps 5-15 % faster on one
 * thread; the ViT's, ResNet-20's and BERT's were no slower.
 */
function defaultWasmThreads(): number {
  return nativeGemm() !== null ? 1 : Math.min(os.availableParallelism(), MAX_WASM_THREADS);
}

/**
 * The XNNPACK thread count asked for, env before option, validated; undefined when neither says
 * (wasm then takes `defaultWasmThreads` when it starts, so other backends never load the addon).
 */
function resolveWasmThreads(option: number | undefined): number | undefined {
  const env = process.env[WASM_THREADS_ENV]?.trim();
  const source = env ? WASM_THREADS_ENV : 'wasmThreads';
  const value = env ? Number(env) : option;
  if (value === undefined) return undefined;
  if (!Number.isInteger(value) || value < 1 || value > MAX_WASM_THREADS) {
    throw new OptionError(source, `must be an integer from 1 to ${MAX_WASM_THREADS}, got '${env ?? option}'`);
  }
  return value;
}

async function tryWasm(ctx: TryContext): Promise<Attempt> {
  let wasm: typeof import('@tensorflow/tfjs-backend-wasm');
  try {
    wasm = await import('@tensorflow/tfjs-backend-wasm');
  } catch (e) {
    return { ok: false, why: `@tensorflow/tfjs-backend-wasm: ${firstLine(e)}` };
  }
  // Registered before the backend is first used (and before setBackend runs kernel setups).
  const wasmKernels = registerWasmKernels();
  let threadNote = '';
  if (!wasmStarted) {
    // The thread count is fixed when the wasm module starts; later requests cannot change it.
    const startThreads = ctx.wasmThreads ?? defaultWasmThreads();
    if (startThreads > 1) {
      wasm.setThreadsCount(startThreads);
      const restore = enableThreadedWasmInNode(startThreads);
      let ok = false;
      try {
        ok = await tf.setBackend('wasm');
      } finally {
        restore();
      }
      if (!ok) {
        // Fall back to the single-threaded SIMD build rather than losing wasm altogether.
        tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
        threadNote = ' (threaded build failed to start)';
      }
    }
    wasmStarted = true;
  }
  if (!(await tf.setBackend('wasm'))) return { ok: false, why: 'the wasm backend failed to initialise' };
  unrefWasmWorkers((tf.backend() as unknown as { wasm: Parameters<typeof unrefWasmWorkers>[0] }).wasm);
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  const threads = wasm.getThreadsCount();
  // Which engine runs the float32 matmuls (kernels/batch_mat_mul.ts routes them).
  const gemm = nativeGemm() !== null ? 'native gemm' : `XNNPACK gemm (native: ${nativeGemmStatus().reason})`;
  const detail = `wasm ${simd ? 'simd' : 'scalar'}, ${threads} thread${threads === 1 ? '' : 's'}${threadNote}, ${gemm}`;
  return { ok: true, detail, wasmKernels };
}

async function tryCpu(_ctx: TryContext): Promise<Attempt> {
  if (await tf.setBackend('cpu')) return { ok: true, detail: 'cpu (pure JS)', wasmKernels: null };
  return { ok: false, why: 'the cpu backend failed to initialise' };
}

const TRY: Record<BackendName, (ctx: TryContext) => Promise<Attempt>> = { tensorflow: tryTensorflow, wasm: tryWasm, cpu: tryCpu };

function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0];
}

function isBackendName(v: string): v is BackendName {
  return (BACKEND_NAMES as readonly string[]).includes(v);
}

/** Which backends can be loaded here (used in error messages; tries each without keeping it). */
async function availableBackends(ctx: TryContext): Promise<BackendName[]> {
  const previous = tf.getBackend();
  const out: BackendName[] = [];
  for (const name of BACKEND_NAMES) if ((await TRY[name](ctx)).ok) out.push(name);
  if (previous) await tf.setBackend(previous);
  return out;
}

const selections = new Map<string, Promise<BackendInfo>>();
const logged = new Set<string>();

async function select(
  forced: string | undefined,
  prefer: BackendName | undefined,
  ctx: TryContext,
  log: (msg: string) => void,
): Promise<BackendInfo> {
  if (forced !== undefined) {
    if (!isBackendName(forced)) {
      throw new OptionError(
        BACKEND_ENV,
        `unknown backend '${forced}'; use one of ${BACKEND_NAMES.join(', ')} (available here: ${(await availableBackends(ctx)).join(', ')})`,
      );
    }
    const attempt = await TRY[forced](ctx);
    if (!attempt.ok) {
      throw new OptionError(
        BACKEND_ENV,
        `backend '${forced}' is not available (${attempt.why}); available here: ${(await availableBackends(ctx)).join(', ')}`,
      );
    }
    return report({ name: forced, detail: attempt.detail, reason: `forced by ${BACKEND_ENV}`, wasmKernels: attempt.wasmKernels }, log);
  }
  const order = prefer ? [prefer, ...BACKEND_NAMES.filter((n) => n !== prefer)] : [...BACKEND_NAMES];
  const skipped: string[] = [];
  for (const name of order) {
    const attempt = await TRY[name](ctx);
    if (attempt.ok) {
      const reason = name === prefer ? 'preferred' : skipped.length ? `first available (skipped ${skipped.join('; ')})` : 'first available';
      return report({ name, detail: attempt.detail, reason, wasmKernels: attempt.wasmKernels }, log);
    }
    skipped.push(`${name}: ${attempt.why}`);
  }
  throw new Error(`no TensorFlow.js backend could be initialised: ${skipped.join('; ')}`);
}

function report(info: BackendInfo, log: (msg: string) => void): BackendInfo {
  const line = `backend: ${info.name} (${info.detail}; ${info.reason})`;
  if (!logged.has(line)) {
    logged.add(line);
    log(line);
  }
  return info;
}

/**
 * Switches to one named backend (loading it and, for wasm, registering masksub's kernels), with
 * no fallback: an OptionError naming `option` when it cannot be loaded. For benches and tools
 * that must measure a specific backend regardless of MASKSUB_BACKEND.
 */
export async function activateBackend(name: BackendName, option = 'backend', wasmThreads?: number): Promise<BackendInfo> {
  if (!isBackendName(name)) {
    throw new OptionError(option, `unknown backend '${String(name)}'; use one of ${BACKEND_NAMES.join(', ')}`);
  }
  const attempt = await TRY[name]({ wasmThreads: resolveWasmThreads(wasmThreads) });
  if (!attempt.ok) throw new OptionError(option, `backend '${name}' is not available (${attempt.why})`);
  return { name, detail: attempt.detail, reason: 'requested', wasmKernels: attempt.wasmKernels };
}

/**
 * Selects and initialises the backend (see the file comment for the order). Idempotent: the same
 * request (env + prefer) returns the same result without re-initialising; a different request
 * switches backend. Throws OptionError when MASKSUB_BACKEND names an unknown or unavailable one.
 */
export async function initBackend(opts: InitBackendOptions = {}): Promise<BackendInfo> {
  const forced = process.env[BACKEND_ENV]?.trim() || undefined;
  const prefer = opts.prefer;
  if (prefer !== undefined && !isBackendName(prefer)) {
    throw new OptionError('prefer', `unknown backend '${String(prefer)}'; use one of ${BACKEND_NAMES.join(', ')}`);
  }
  const log = opts.log ?? ((msg: string) => console.error(`[masksub] ${msg}`));
  const ctx: TryContext = { wasmThreads: resolveWasmThreads(opts.wasmThreads) };
  const key = `${forced ?? ''}|${prefer ?? ''}`;
  let pending = selections.get(key);
  if (pending === undefined) {
    pending = select(forced, prefer, ctx, log);
    selections.set(key, pending);
    pending.catch(() => selections.delete(key));
  }
  const info = await pending;
  // Another request may have switched backend since; come back to this one.
  if (tf.getBackend() !== info.name) await tf.setBackend(info.name);
  return info;
}
