/**
 * checkpoint folder -> model: `loadPretrained(dir)` finds config.json and the weights file
 * (safetensors, ONNX or quantized ONNX, or an explicit `weights` path), dispatches on
 * `model_type` to the registered adapter, and maps the tensors onto the adapter's names.
 * `saveModel(model, dir)` writes the HF folder back (config.json + model.safetensors, hub names,
 * PyTorch layouts), loadable by masksub and by transformers/timm.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { discoverCheckpoint, readConfig, readWeights, type WeightsFormat } from './io/hf-folder.js';
import { writeFileAtomic, writeSafetensors } from './io/safetensors.js';
import type { TensorMap } from './io/types.js';
import type { AdapterModel, ArchitectureAdapter, HFConfig } from './registry.js';
import { adapterFor } from './registry.js';
import { Rng } from './rng.js';

export interface LoadPretrainedOptions {
  /** An explicit weights file (safetensors or ONNX) instead of the one found in the folder. */
  weights?: string;
  /** Seed for parameters the checkpoint lacks (e.g. a mask token). */
  seed?: number;
  /**
   * Fine-tune to this many classes: when it differs from the checkpoint's, the head is built anew
   * (randomly initialised) and the checkpoint's head tensors are skipped.
   */
  numLabels?: number;
  /** Where notes go (dequantization, created parameters); default console.error. */
  log?: (message: string) => void;
}

export interface LoadedModel {
  model: AdapterModel;
  adapter: ArchitectureAdapter;
  config: HFConfig;
  format: WeightsFormat;
  weightsPath: string;
  /** Parameters the checkpoint lacked and the adapter created. */
  created: string[];
}

export async function loadPretrained(dirOrFile: string, options: LoadPretrainedOptions = {}): Promise<LoadedModel> {
  const log = options.log ?? ((m: string) => console.error(m));
  const found = discoverCheckpoint(dirOrFile, { weights: options.weights });
  let config = found.config as HFConfig;
  const adapter = adapterFor(config.model_type, join(found.dir, 'config.json'));
  const newHead = options.numLabels !== undefined && options.numLabels !== labelCount(config);
  if (newHead) {
    const { id2label: _i, label2id: _l, ...rest } = config;
    config = { ...rest, num_labels: options.numLabels, ...(typeof rest.num_classes === 'number' ? { num_classes: options.numLabels } : {}) };
    log(`${found.dir}: new ${options.numLabels}-class head (the checkpoint has ${labelCount(found.config as HFConfig)} classes)`);
  }
  const ignore = (name: string) => adapter.ignoredWeights?.(name) ?? false;
  const reinitialise = (name: string) => newHead && (adapter.headWeights?.(name) ?? false);
  const model = adapter.build(config, { rng: new Rng(options.seed ?? 0), checkpointDir: found.dir });
  try {
    const aliases = adapter.aliases?.(config) ?? {};
    const { tensors: read, report } = readWeights(found, aliases);
    const tensors = applyAliases(read, aliases);
    // Findings include dequantization of quantized exports and folded batch norm: say so.
    for (const finding of report.findings) log(`${found.weightsPath}: ${finding.message}`);
    const { created } = model.params.load(tensors, found.weightsPath, ignore, reinitialise);
    if (created.length) log(`${found.weightsPath}: created ${created.join(', ')} (not in the checkpoint)`);
    return { model, adapter, config, format: found.format, weightsPath: found.weightsPath, created };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/** Rename tensors stored under an alias to the hub name (ONNX names are resolved by the reader already). */
function applyAliases(tensors: TensorMap, aliases: Readonly<Record<string, string>>): TensorMap {
  if (![...tensors.keys()].some((k) => k in aliases)) return tensors;
  const out: TensorMap = new Map();
  for (const [name, t] of tensors) {
    const hub = aliases[name] ?? name;
    out.set(hub, { ...t, name: hub });
  }
  return out;
}

/** Classes of a checkpoint's head: HF's num_labels / id2label, or num_classes (timm, CIFAR zoos). */
function labelCount(config: HFConfig): number | undefined {
  if (typeof config.num_labels === 'number') return config.num_labels;
  if (typeof config.num_classes === 'number') return config.num_classes;
  const id2label = config.id2label as Record<string, string> | undefined;
  return id2label ? Object.keys(id2label).length : undefined;
}

/** A randomly initialised model from a config.json file or object (training from scratch). */
export function buildFromConfig(configOrPath: string | HFConfig, seed = 0): { model: AdapterModel; adapter: ArchitectureAdapter; config: HFConfig } {
  let config: HFConfig;
  let source = 'config';
  if (typeof configOrPath === 'string') {
    source = configOrPath.endsWith('.json') ? configOrPath : join(configOrPath, 'config.json');
    config = readConfig(source) as HFConfig;
  } else {
    config = configOrPath;
  }
  const adapter = adapterFor(config.model_type, source);
  return { model: adapter.build(config, { rng: new Rng(seed) }), adapter, config };
}

/** Write the model as an HF folder: config.json + model.safetensors (hub names, PyTorch layouts), atomically. */
export function saveModel(model: AdapterModel, dir: string, extraConfig: Record<string, unknown> = {}): void {
  mkdirSync(dir, { recursive: true });
  writeSafetensors(join(dir, 'model.safetensors'), model.params.export(), { format: 'pt' });
  const config = { ...model.config, ...extraConfig };
  writeFileAtomic(join(dir, 'config.json'), new TextEncoder().encode(`${JSON.stringify(config, null, 2)}\n`));
}
