/**
 * Atomic training checkpoints:
 *
 *   <runDir>/checkpoints/step-<N>/model.safetensors      model tensors (exact float32 bits)
 *                                 optimizer.safetensors  optimizer slot tensors (if any)
 *                                 state.json             manifest: step, epoch, sizes + sha256 of the
 *                                                        tensor files and their tensor names,
 *                                                        optimizer scalars, RNG states, data-loader
 *                                                        position, config
 *   <runDir>/checkpoints/latest                          "step-<N>" (for people and scripts)
 *
 * A checkpoint is written into `.tmp-<step>-<pid>`, every file and the folder are fsynced, and
 * only then is the folder renamed to `step-<N>` (rename is atomic), so a `step-*` folder is
 * always complete. A crash leaves at worst a stale temp folder (ignored, removed later) or a
 * `latest` pointer one checkpoint behind: the loader therefore trusts the folders, picking the
 * one saved last (a save sequence number in the manifest, so a run resumed from an older step
 * supersedes the abandoned newer ones), not the pointer.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { closeSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { FileFormatError, type HostTensor, MaskSubError, type OptimizerKind, type OptimizerScalars, type OptimizerState, OptionError, readSafetensors, type RngState, streamSafetensors, type TensorMap, TensorMismatchError, tf } from '@masksub/core';
import { fsyncDir, processAlive, replaceFileAtomic, writeFileSynced, writeStreamSynced } from './durable-fs.js';

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** What a training loop saves. tf.Variable is a tf.Tensor, so model variables go in as they are. */
export interface CheckpointState {
  step: number;
  epoch: number;
  model: ReadonlyMap<string, tf.Tensor>;
  /** The model EMA's tensors (same names as `model`), when the run keeps one. */
  ema?: ReadonlyMap<string, tf.Tensor>;
  optimizer?: OptimizerState;
  /** Named RNG streams (`Rng.getState()`), e.g. { data: ..., mask: ... }. */
  rng?: Record<string, RngState>;
  /** Where the data loader is (epoch order, offset...), as JSON. */
  dataLoader?: JsonValue;
  config?: JsonValue;
}

/** A loaded checkpoint; its tensors are new and owned by the caller (see {@link disposeCheckpoint}). */
export interface LoadedCheckpoint {
  dir: string;
  step: number;
  epoch: number;
  model: Map<string, tf.Tensor>;
  /** The model EMA's tensors; null when the run kept none. */
  ema: Map<string, tf.Tensor> | null;
  optimizer: OptimizerState | null;
  rng: Record<string, RngState>;
  dataLoader: JsonValue | null;
  config: JsonValue | null;
}

export interface SaveOptions {
  /** Keep only the K most recently saved checkpoints (default: keep all). */
  keepLast?: number;
  /**
   * Refuse to save model tensors holding NaN or Inf (a diverged run): resuming from such a
   * checkpoint only diverges again, and as the newest it would hide the last good one.
   */
  requireFinite?: boolean;
}

export interface LoadLatestOptions {
  /** Where notes on skipped checkpoints go (default: stderr). */
  log?: (message: string) => void;
}

const FORMAT = 'masksub-checkpoint';
const VERSION = 1;
const MANIFEST = 'state.json';
const MODEL_FILE = 'model.safetensors';
const OPTIMIZER_FILE = 'optimizer.safetensors';
const EMA_FILE = 'ema.safetensors';
const LATEST = 'latest';
const STEP_DIR = /^step-(\d+)$/;
/** Temp/trash entries carry the writer's pid so only abandoned ones are removed. */
const STALE_ENTRY = /^\.(?:tmp-\d+|trash-step-\d+|latest\.tmp)-(\d+)(?:-\d+)?$/;

interface FileEntry {
  bytes: number;
  sha256: string;
  tensors: string[];
}

interface Manifest {
  format: typeof FORMAT;
  version: number;
  /** Increases with every save into this folder; the newest complete checkpoint has the largest. */
  sequence: number;
  step: number;
  epoch: number;
  files: Record<string, FileEntry>;
  optimizer: { kind: OptimizerKind; scalars: OptimizerScalars } | null;
  rng: Record<string, RngState>;
  dataLoader: JsonValue | null;
  config: JsonValue | null;
}

/** Temp folders this process is writing right now (never cleaned from under itself). */
const activeTemps = new Set<string>();

export function checkpointsDir(runDir: string): string {
  return join(runDir, 'checkpoints');
}

/**
 * Saves atomically into `<runDir>/checkpoints/step-<step>` and returns that folder. Reads tensor
 * values (does not dispose them). Saving the same step again replaces it.
 */
export async function saveCheckpoint(runDir: string, state: CheckpointState, options: SaveOptions = {}): Promise<string> {
  validateSaveInput(state, options);
  if (options.requireFinite) await checkFinite(state.model, state.step);
  if (options.requireFinite && state.ema) await checkFinite(state.ema, state.step);
  try {
    return await saveCheckpointUnchecked(runDir, state, options);
  } catch (e) {
    // File-system failures (ENOSPC, EACCES, EROFS...) as a message: the previous checkpoints are untouched.
    const code = (e as NodeJS.ErrnoException).code;
    if (e instanceof MaskSubError || typeof code !== 'string') throw e;
    throw new FileFormatError(
      checkpointsDir(runDir),
      `cannot write the checkpoint of step ${state.step} (${code}: ${(e as Error).message.replace(/^[A-Z]+: /, '')}); the previous checkpoints are intact`,
    );
  }
}

async function checkFinite(model: ReadonlyMap<string, tf.Tensor>, step: number): Promise<void> {
  const bad: string[] = [];
  for (const [name, t] of model) {
    if (t.dtype !== 'float32' || t.isDisposed) continue;
    const d = (await t.data()) as Float32Array;
    let n = 0;
    for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i])) n++;
    if (n > 0) bad.push(`'${name}' (${n} of ${d.length})`);
  }
  if (bad.length) {
    throw new MaskSubError(
      `the weights diverged at step ${step}: NaN or Inf in ${bad.slice(0, 5).join(', ')}${bad.length > 5 ? ` and ${bad.length - 5} more` : ''}; not written as a checkpoint (the last good one stays the latest; lower the learning rate)`,
    );
  }
}

async function saveCheckpointUnchecked(runDir: string, state: CheckpointState, options: SaveOptions): Promise<string> {
  const root = checkpointsDir(runDir);
  await mkdir(root, { recursive: true });
  await fsyncDir(runDir);
  await removeStaleEntries(root);

  const existing = await listComplete(root);
  const sequence = existing.reduce((m, c) => Math.max(m, c.manifest.sequence), 0) + 1;
  const name = `step-${state.step}`;
  const tmp = join(root, `.tmp-${state.step}-${process.pid}`);
  activeTemps.add(tmp);
  try {
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp);
    const files: Record<string, FileEntry> = {};
    files[MODEL_FILE] = await writeTensorFile(join(tmp, MODEL_FILE), state.model, 'model');
    if (state.ema) files[EMA_FILE] = await writeTensorFile(join(tmp, EMA_FILE), state.ema, 'ema');
    if (state.optimizer && state.optimizer.tensors.size > 0) {
      files[OPTIMIZER_FILE] = await writeTensorFile(join(tmp, OPTIMIZER_FILE), state.optimizer.tensors, 'optimizer');
    }
    const manifest: Manifest = {
      format: FORMAT,
      version: VERSION,
      sequence,
      step: state.step,
      epoch: state.epoch,
      files,
      optimizer: state.optimizer ? { kind: state.optimizer.kind, scalars: state.optimizer.scalars } : null,
      rng: state.rng ?? {},
      dataLoader: state.dataLoader ?? null,
      config: state.config ?? null,
    };
    await writeFileSynced(join(tmp, MANIFEST), JSON.stringify(manifest, null, 1));
    await fsyncDir(tmp);

    const final = join(root, name);
    // rename() cannot replace a non-empty folder: move an old save of the same step aside first.
    // A crash in between loses only that duplicate; older checkpoints stay complete.
    let trash: string | null = null;
    if (await exists(final)) {
      trash = join(root, `.trash-${name}-${process.pid}-${Date.now()}`);
      await rename(final, trash);
    }
    await rename(tmp, final);
    await fsyncDir(root);
    if (trash) await rm(trash, { recursive: true, force: true });

    await replaceFileAtomic(root, LATEST, `.latest.tmp-${process.pid}`, `${name}\n`);
    if (options.keepLast !== undefined) await prune(root, options.keepLast, final);
    return final;
  } finally {
    activeTemps.delete(tmp);
    await rm(tmp, { recursive: true, force: true });
  }
}

function validateSaveInput(state: CheckpointState, options: SaveOptions): void {
  if (!Number.isSafeInteger(state.step) || state.step < 0) throw new OptionError('step', `must be a non-negative integer, got ${state.step}`);
  if (!Number.isFinite(state.epoch) || state.epoch < 0) throw new OptionError('epoch', `must be a number >= 0, got ${state.epoch}`);
  if (options.keepLast !== undefined && !(Number.isInteger(options.keepLast) && options.keepLast >= 1)) {
    throw new OptionError('keepLast', `must be an integer >= 1, got ${options.keepLast}`);
  }
  for (const [name, s] of Object.entries(state.rng ?? {})) checkRngState(s, `rng.${name}`, (m) => new OptionError(`rng.${name}`, m));
}

async function writeTensorFile(path: string, tensors: ReadonlyMap<string, tf.Tensor>, what: string): Promise<FileEntry> {
  const host: TensorMap = new Map();
  for (const [name, t] of tensors) {
    if (t.isDisposed) throw new OptionError(what, `tensor '${name}' is disposed`);
    const dtype = t.dtype;
    if (dtype !== 'float32' && dtype !== 'int32' && dtype !== 'bool') {
      throw new OptionError(what, `tensor '${name}' has dtype ${dtype}; checkpoints hold float32, int32 and bool`);
    }
    const data = (await t.data()) as Float32Array | Int32Array | Uint8Array;
    host.set(name, { name, dtype, shape: [...t.shape], data } satisfies HostTensor);
  }
  // streamed and hashed piece by piece: a model over 2 GiB never sits in one buffer
  const hash = createHash('sha256');
  const bytes = await writeStreamSynced(path, (write) =>
    streamSafetensors(host, { format: 'pt', masksub: what }, path, (piece) => {
      hash.update(piece);
      write(piece);
    }),
  );
  return { bytes, sha256: hash.digest('hex'), tensors: [...host.keys()].sort() };
}

/** size and sha256 of a file, read in 64 MiB slices (files over 2 GiB included). */
function hashFile(path: string): { size: number; sha256: string } {
  const fd = openSync(path, 'r');
  try {
    const hash = createHash('sha256');
    const buf = Buffer.allocUnsafe(64 * 2 ** 20);
    let size = 0;
    for (let n = readSync(fd, buf, 0, buf.length, size); n > 0; n = readSync(fd, buf, 0, buf.length, size)) {
      hash.update(buf.subarray(0, n));
      size += n;
    }
    return { size, sha256: hash.digest('hex') };
  } finally {
    closeSync(fd);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Removes temp/trash entries whose writer is gone (crashed or finished without cleaning up). */
async function removeStaleEntries(root: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(root);
  } catch {
    return;
  }
  for (const e of entries) {
    const m = STALE_ENTRY.exec(e);
    if (!m) continue;
    const pid = Number(m[1]);
    const path = join(root, e);
    const ours = pid === process.pid;
    if ((ours && !activeTemps.has(path)) || (!ours && !processAlive(pid))) {
      await rm(path, { recursive: true, force: true }).catch(() => undefined);
    }
  }
}

interface CompleteCheckpoint {
  dir: string;
  manifest: Manifest;
}

/** `step-*` folders whose manifest parses and whose files are all there with their sizes. */
async function listComplete(root: string, incomplete: { dir: string; reason: string }[] = []): Promise<CompleteCheckpoint[]> {
  let entries: string[];
  try {
    entries = await readdir(root);
  } catch {
    return [];
  }
  const out: CompleteCheckpoint[] = [];
  for (const e of entries) {
    if (!STEP_DIR.test(e)) continue;
    const dir = join(root, e);
    try {
      const manifest = await readManifest(dir);
      for (const [file, entry] of Object.entries(manifest.files)) {
        const size = (await stat(join(dir, file)).catch(() => null))?.size;
        if (size !== entry.bytes) throw new Error(`${file} has ${size ?? 'no'} bytes, the manifest says ${entry.bytes} (truncated?)`);
      }
      out.push({ dir, manifest });
    } catch (err) {
      // Not complete: only possible through outside interference (folders appear by rename).
      incomplete.push({ dir, reason: (err as Error).message });
    }
  }
  return out.sort((a, b) => b.manifest.sequence - a.manifest.sequence || b.manifest.step - a.manifest.step);
}

async function prune(root: string, keepLast: number, justWritten: string): Promise<void> {
  const all = await listComplete(root);
  for (const c of all.slice(keepLast)) {
    if (c.dir === justWritten) continue;
    // Rename first so a crash mid-delete cannot leave a half `step-*` folder behind.
    const trash = join(root, `.trash-${c.dir.split(/[\\/]/).pop()}-${process.pid}-${Date.now()}`);
    await rename(c.dir, trash);
    await rm(trash, { recursive: true, force: true });
  }
  await fsyncDir(root);
}

/**
 * The folder of the most recently saved complete checkpoint in `<runDir>/checkpoints`, or null.
 * Abandoned temp folders are removed on the way.
 */
export async function latestCheckpoint(runDir: string): Promise<string | null> {
  const root = checkpointsDir(runDir);
  await removeStaleEntries(root);
  const all = await listComplete(root);
  return all.length ? all[0].dir : null;
}

/**
 * Loads the newest checkpoint of a run that is complete and whose files match their checksums, or
 * null when there is none. Newer ones that are incomplete or corrupt (a flipped byte, a truncated
 * file) are skipped, each logged with the reason, and the previous one is used: a damaged latest
 * checkpoint costs the steps since the one before, not the run.
 */
export async function loadLatestCheckpoint(runDir: string, options: LoadLatestOptions = {}): Promise<LoadedCheckpoint | null> {
  const log = options.log ?? ((m: string) => process.stderr.write(`${m}\n`));
  const root = checkpointsDir(runDir);
  await removeStaleEntries(root);
  const incomplete: { dir: string; reason: string }[] = [];
  const all = await listComplete(root, incomplete);
  const newest = all[0]?.manifest.sequence ?? -1;
  for (const i of incomplete) log(`skipped checkpoint ${i.dir}: ${i.reason}`);
  for (const c of all) {
    try {
      const loaded = await loadCheckpoint(c.dir);
      if (c.manifest.sequence !== newest) log(`resuming from the older checkpoint ${c.dir} (step ${c.manifest.step})`);
      return loaded;
    } catch (e) {
      if (!(e instanceof MaskSubError)) throw e;
      log(`skipped checkpoint ${c.dir}: ${e.message}`);
    }
  }
  return null;
}

async function readManifest(dir: string): Promise<Manifest> {
  const path = join(dir, MANIFEST);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new FileFormatError(path, `cannot read the checkpoint manifest (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); ${dir} is not a complete checkpoint`);
  }
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch (e) {
    throw new FileFormatError(path, `is not valid JSON (${(e as Error).message})`);
  }
  const bad = (msg: string): never => {
    throw new FileFormatError(path, msg);
  };
  if (typeof m !== 'object' || m === null) bad('is not a JSON object');
  const o = m as Partial<Manifest>;
  if (o.format !== FORMAT) bad(`format is ${JSON.stringify(o.format)}, expected '${FORMAT}'`);
  if (o.version !== VERSION) bad(`version ${o.version} is not supported (expected ${VERSION})`);
  for (const k of ['sequence', 'step', 'epoch'] as const) if (typeof o[k] !== 'number') bad(`'${k}' is missing or not a number`);
  if (typeof o.files !== 'object' || o.files === null || !(MODEL_FILE in o.files)) bad(`'files' does not list ${MODEL_FILE}`);
  for (const [f, e] of Object.entries(o.files!)) {
    if (typeof e?.bytes !== 'number' || typeof e.sha256 !== 'string' || !Array.isArray(e.tensors)) bad(`files.${f} is malformed`);
  }
  if (typeof o.rng !== 'object' || o.rng === null) bad(`'rng' is not an object`);
  for (const [name, s] of Object.entries(o.rng!)) checkRngState(s, `rng.${name}`, (msg) => new FileFormatError(path, msg));
  return o as Manifest;
}

function checkRngState(s: unknown, what: string, error: (msg: string) => Error): void {
  if (!Array.isArray(s) || s.length !== 4 || !s.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffffffff)) {
    throw error(`${what} must be four unsigned 32-bit integers, got ${JSON.stringify(s)}`);
  }
}

/** Reads one tensor file, checking it against the manifest: size, checksum, tensor names. */
async function readTensorFile(dir: string, file: string, entry: FileEntry): Promise<Map<string, tf.Tensor>> {
  const path = join(dir, file);
  let onDisk: { size: number; sha256: string };
  try {
    onDisk = hashFile(path);
  } catch (e) {
    throw new FileFormatError(path, `missing or unreadable (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); the checkpoint is incomplete`);
  }
  if (onDisk.size !== entry.bytes) throw new FileFormatError(path, `has ${onDisk.size} bytes, the manifest says ${entry.bytes} (truncated or replaced)`);
  if (onDisk.sha256 !== entry.sha256) throw new FileFormatError(path, 'sha256 does not match the manifest: the file is corrupt');
  // read by offset (a checkpoint over 2 GiB loads); the hash above covered these bytes
  const host = readSafetensors(path);
  const missing = entry.tensors.filter((n) => !host.has(n));
  const unexpected = [...host.keys()].filter((n) => !entry.tensors.includes(n));
  if (missing.length || unexpected.length) {
    throw new FileFormatError(path, `tensors differ from the manifest${missing.length ? `; missing: ${missing.join(', ')}` : ''}${unexpected.length ? `; unexpected: ${unexpected.join(', ')}` : ''}`);
  }
  const out = new Map<string, tf.Tensor>();
  for (const [name, t] of host) {
    if (t.dtype !== 'float32' && t.dtype !== 'int32' && t.dtype !== 'bool') {
      out.forEach((x) => x.dispose());
      throw new FileFormatError(path, `tensor '${name}' has dtype ${t.dtype}; checkpoints hold float32, int32 and bool`);
    }
    // The Float32Array from the file goes in as is: the bits are restored exactly.
    out.set(name, tf.tensor(t.data as Float32Array | Int32Array | Uint8Array, t.shape, t.dtype));
  }
  return out;
}

/** Loads and validates one checkpoint folder (`.../checkpoints/step-<N>`). */
export async function loadCheckpoint(dir: string): Promise<LoadedCheckpoint> {
  const manifest = await readManifest(dir);
  const model = await readTensorFile(dir, MODEL_FILE, manifest.files[MODEL_FILE]);
  let optimizer: OptimizerState | null = null;
  let ema: Map<string, tf.Tensor> | null = null;
  try {
    const emaEntry = manifest.files[EMA_FILE];
    if (emaEntry) ema = await readTensorFile(dir, EMA_FILE, emaEntry);
    if (manifest.optimizer) {
      const entry = manifest.files[OPTIMIZER_FILE];
      const tensors = entry ? await readTensorFile(dir, OPTIMIZER_FILE, entry) : new Map<string, tf.Tensor>();
      optimizer = { kind: manifest.optimizer.kind, scalars: manifest.optimizer.scalars, tensors };
    }
  } catch (e) {
    model.forEach((t) => t.dispose());
    ema?.forEach((t) => t.dispose());
    throw e;
  }
  return {
    dir,
    step: manifest.step,
    epoch: manifest.epoch,
    model,
    ema,
    optimizer,
    rng: manifest.rng,
    dataLoader: manifest.dataLoader,
    config: manifest.config,
  };
}

/** Frees the tensors of a loaded checkpoint. */
export function disposeCheckpoint(c: LoadedCheckpoint): void {
  c.model.forEach((t) => t.dispose());
  c.ema?.forEach((t) => t.dispose());
  c.optimizer?.tensors.forEach((t) => t.dispose());
}

/**
 * Copies loaded tensors into the model's variables, after checking that every variable has a
 * tensor of its shape (all problems listed at once). `source` names the checkpoint in errors.
 */
export function restoreVariables(target: ReadonlyMap<string, tf.Variable>, tensors: ReadonlyMap<string, tf.Tensor>, source: string): void {
  const missing: string[] = [];
  const wrongShape: { name: string; expected: number[]; found: number[] }[] = [];
  for (const [name, v] of target) {
    const t = tensors.get(name);
    if (!t) missing.push(name);
    else if (t.shape.length !== v.shape.length || t.shape.some((d, i) => d !== v.shape[i])) wrongShape.push({ name, expected: v.shape, found: t.shape });
  }
  const unexpected = [...tensors.keys()].filter((n) => !target.has(n));
  if (missing.length || unexpected.length || wrongShape.length) throw new TensorMismatchError(source, missing, unexpected, wrongShape);
  for (const [name, v] of target) {
    const t = tensors.get(name)!;
    tf.tidy(() => v.assign(t.dtype === v.dtype ? t : tf.cast(t, v.dtype)));
  }
}
