/**
 * A Hugging Face model folder (config.json + weights in one of the zoo's formats): find the
 * weights, read them under checkpoint names, whatever the format.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { FileFormatError, OptionError } from '../errors.js';
import type { AliasTable, Finding, OnnxReport } from './onnx.js';
import { readOnnxWeights } from './onnx.js';
import { folderFile, requiredFolderFile, resolveInsideFolder } from './contained-path.js';
import { readPth, type PthReadResult } from './pth.js';
import { readSafetensors } from './safetensors.js';
import type { TensorMap } from './types.js';

export type WeightsFormat = 'safetensors' | 'onnx' | 'onnx-quantized' | 'pth';

/** config.json as parsed; models validate the fields they need. */
export type HfConfig = Record<string, unknown>;

export interface CheckpointLocation {
  dir: string;
  config: HfConfig;
  /** The weights file, or the `model.safetensors.index.json` of a sharded checkpoint. */
  weightsPath: string;
  format: WeightsFormat;
}

export interface DiscoverOptions {
  /** An explicit weights file (absolute, relative to the working directory, or to the folder). */
  weights?: string;
}

/** Where weights are looked for, in order of preference. */
export const WEIGHT_CANDIDATES: readonly { file: string; format: WeightsFormat }[] = [
  { file: 'model.safetensors', format: 'safetensors' },
  { file: 'model.safetensors.index.json', format: 'safetensors' },
  { file: 'onnx/model.onnx', format: 'onnx' },
  { file: 'model.onnx', format: 'onnx' },
  { file: 'onnx/model_quantized.onnx', format: 'onnx-quantized' },
  { file: 'model_quantized.onnx', format: 'onnx-quantized' },
  // PyTorch pickles (read by the restricted VM of ./pth.ts): HF's name, timm's, then any lone *.pth
  { file: 'pytorch_model.bin', format: 'pth' },
  { file: 'pytorch_model.pth', format: 'pth' },
  { file: '*.pth', format: 'pth' },
];

/** Locate config.json and the weights of a model folder (or of a weights file inside one). */
export function discoverCheckpoint(dirOrFile: string, opts: DiscoverOptions = {}): CheckpointLocation {
  const { dir, weightsPath, format } = locateWeights(dirOrFile, opts);
  return { dir, config: readConfig(requiredFolderFile(dir, 'config.json')), weightsPath, format };
}

/** Like discoverCheckpoint, without requiring config.json (for inspecting a bare weights file). */
export function locateWeights(dirOrFile: string, opts: DiscoverOptions = {}): Omit<CheckpointLocation, 'config'> {
  const target = resolve(dirOrFile);
  if (!existsSync(target)) throw new FileFormatError(target, 'no such file or folder');
  let dir = target;
  let explicit = opts.weights;
  if (!statSync(target).isDirectory()) {
    dir = dirname(target);
    if (basename(target) !== 'config.json') {
      if (explicit !== undefined) {
        throw new OptionError('weights', `given both a weights file '${target}' and --weights '${explicit}'`);
      }
      explicit = target;
    }
  }
  // A weights file under `<model>/onnx/` belongs to the model folder above it.
  if (basename(dir) === 'onnx' && !existsSync(join(dir, 'config.json')) && existsSync(join(dirname(dir), 'config.json'))) {
    dir = dirname(dir);
  }

  if (explicit !== undefined) {
    const candidates = isAbsolute(explicit) ? [explicit] : [resolve(explicit), join(dir, explicit)];
    const found = candidates.find((c) => existsSync(c) && statSync(c).isFile());
    if (!found) throw new OptionError('weights', `no weights file at ${candidates.join(' or ')}`);
    return { dir, weightsPath: found, format: formatOfFile(found) };
  }
  // Found by name, so untrusted: a symlink must not lead out of the folder (contained-path.ts).
  for (const c of WEIGHT_CANDIDATES) {
    const p = c.file.startsWith('*') ? lonePth(dir) : folderFile(dir, c.file);
    if (p !== undefined) return { dir, weightsPath: p, format: c.format };
  }
  throw new FileFormatError(dir, `no weights found; looked for ${WEIGHT_CANDIDATES.map((c) => c.file).join(', ')}`);
}

/** The one `*.pth` / `*.pt` file of a folder (several: ambiguous, the user names one with --weights). */
function lonePth(dir: string): string | undefined {
  const found = readdirSync(dir).filter((f) => /\.(pth|pt)$/i.test(f));
  if (found.length > 1) throw new OptionError('weights', `${dir} holds several PyTorch checkpoints (${found.join(', ')}); name one`);
  return found.length === 1 ? folderFile(dir, found[0] as string) : undefined;
}

/** The format a weights file name announces. */
export function formatOfFile(path: string): WeightsFormat {
  const name = basename(path).toLowerCase();
  if (name.endsWith('.safetensors') || name.endsWith('.safetensors.index.json')) return 'safetensors';
  if (name.endsWith('.onnx')) return /quantized|int8|uint8|(^|[_-])q[48]([_.-]|$)/.test(name) ? 'onnx-quantized' : 'onnx';
  if (/\.(pth|pt|bin|ckpt)$/.test(name)) return 'pth';
  throw new OptionError('weights', `${path}: unknown weights format (expected .safetensors, .safetensors.index.json, .onnx, or a PyTorch .pth/.pt/.bin)`);
}

export function readConfig(path: string): HfConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new FileFormatError(path, 'config.json is missing (a Hugging Face model folder needs one)');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new FileFormatError(path, `config.json is not valid JSON (${(e as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new FileFormatError(path, 'config.json is not a JSON object');
  }
  return parsed as HfConfig;
}

/** What reading the weights found out: the ONNX resolution report when the source was ONNX. */
export interface WeightsReport {
  source: string;
  format: WeightsFormat;
  /** Shard files read (sharded safetensors), else the one weights file. */
  files: string[];
  findings: Finding[];
  onnx?: OnnxReport;
  /** A `.pth`: where its state dict sat and the prefix removed (to write it back the same way). */
  pth?: Pick<PthReadResult, 'path' | 'strippedPrefix' | 'skipped'>;
  /** Tensors renamed through the alias table: checkpoint (hub) name -> the name in the file. */
  fileNames: Map<string, string>;
}

export interface ReadWeightsResult {
  tensors: TensorMap;
  report: WeightsReport;
}

/** Read the weights of a located checkpoint under checkpoint names, dispatching by format. */
export function readWeights(found: Pick<CheckpointLocation, 'weightsPath' | 'format'>, aliases?: AliasTable): ReadWeightsResult {
  const { weightsPath, format } = found;
  if (format === 'onnx' || format === 'onnx-quantized') {
    const { tensors, report } = readOnnxWeights(weightsPath, { aliases });
    return { tensors, report: { source: weightsPath, format, files: [weightsPath], findings: report.findings, onnx: report, fileNames: new Map() } };
  }
  const findings: Finding[] = [];
  let read: { tensors: TensorMap; files: string[] };
  let pthLayout: WeightsReport['pth'];
  if (format === 'pth') {
    const pth = readPth(weightsPath);
    if (pth.path.length || pth.strippedPrefix) {
      const where = pth.path.length ? `under '${pth.path.join('.')}'` : 'at the top level';
      const prefix = pth.strippedPrefix ? `, prefix '${pth.strippedPrefix}' removed` : '';
      findings.push({ kind: 'nested-state-dict', message: `state dict found ${where}${prefix}; not read: ${pth.skipped.join(', ') || 'nothing'}`, tensors: [] });
    }
    read = { tensors: pth.tensors, files: [weightsPath] };
    pthLayout = { path: pth.path, strippedPrefix: pth.strippedPrefix, skipped: pth.skipped };
  } else {
    read = weightsPath.endsWith('.index.json') ? readShardedSafetensors(weightsPath) : { tensors: readSafetensors(weightsPath), files: [weightsPath] };
  }
  const { tensors, files } = read;
  const renamed = aliases ? renameByAliases(tensors, aliases, weightsPath) : { tensors, aliased: [], fileNames: new Map<string, string>() };
  if (renamed.aliased.length > 0) {
    findings.push({ kind: 'aliased', message: `${renamed.aliased.length} tensor name(s) were mapped to checkpoint names through the alias table`, tensors: renamed.aliased });
  }
  return { tensors: renamed.tensors, report: { source: weightsPath, format, files, findings, fileNames: renamed.fileNames, ...(pthLayout ? { pth: pthLayout } : {}) } };
}

/** `model.safetensors.index.json` {weight_map: {tensor: shard file}}: every listed tensor must be in its shard. */
export function readShardedSafetensors(indexPath: string): { tensors: TensorMap; files: string[] } {
  let index: unknown;
  try {
    index = JSON.parse(readFileSync(indexPath, 'utf8'));
  } catch (e) {
    throw new FileFormatError(indexPath, `cannot read the shard index (${(e as Error).message})`);
  }
  const weightMap = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    throw new FileFormatError(indexPath, "shard index has no 'weight_map' object");
  }
  const entries = Object.entries(weightMap as Record<string, unknown>);
  for (const [name, shard] of entries) {
    if (typeof shard !== 'string' || shard === '' || isAbsolute(shard)) {
      throw new FileFormatError(indexPath, `tensor '${name}': shard ${JSON.stringify(shard)} is not a relative file name`);
    }
  }
  const shards = [...new Set(entries.map(([, s]) => s as string))];
  const dir = dirname(indexPath);
  const tensors: TensorMap = new Map();
  const files: string[] = [];
  for (const shard of shards) {
    const holder = entries.find(([, s]) => s === shard)![0];
    // Shards must be regular files inside the index's folder (symlinks resolved first).
    const path = resolveInsideFolder(dir, shard, indexPath, `tensor '${holder}': shard`);
    const part = readSafetensors(path);
    files.push(path);
    for (const [name, t] of part) {
      if (tensors.has(name)) throw new FileFormatError(path, `tensor '${name}' is also in another shard`);
      tensors.set(name, t);
    }
  }
  for (const [name, shard] of entries) {
    if (!tensors.has(name)) {
      throw new FileFormatError(join(dir, shard as string), `tensor '${name}' is listed in ${basename(indexPath)} but missing from this shard`);
    }
  }
  return { tensors, files };
}

/** Tensors under their checkpoint (hub) names; `fileNames` maps each renamed one back to its name in the file. */
export function renameByAliases(tensors: TensorMap, aliases: AliasTable, source: string): { tensors: TensorMap; aliased: string[]; fileNames: Map<string, string> } {
  const lookup = (n: string): string | undefined => (aliases instanceof Map ? aliases.get(n) : (aliases as Record<string, string>)[n]);
  const out: TensorMap = new Map();
  const aliased: string[] = [];
  const fileNames = new Map<string, string>();
  for (const [name, t] of tensors) {
    const hub = lookup(name) ?? name;
    if (hub !== name) {
      aliased.push(`${name} -> ${hub}`);
      fileNames.set(hub, name);
    }
    if (out.has(hub)) throw new FileFormatError(source, `two tensors map to '${hub}' through the alias table`);
    out.set(hub, hub === name ? t : { ...t, name: hub });
  }
  return { tensors: out, aliased, fileNames };
}
