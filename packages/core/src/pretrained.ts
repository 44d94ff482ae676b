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
import type { HostTensor, TensorMap } from './io/types.js';
import { numel } from './io/types.js';
import { FileFormatError, OptionError, type MaskSubError } from './errors.js';
import { MAX_PARAMETERS, type ParamSpec, withParameterBudget } from './model.js';
import type { AdapterModel, ArchitectureAdapter, HFConfig } from './registry.js';
import { adapterForConfig } from './registry.js';
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
  /**
   * The HF model class to build (written to config `architectures`), for adapters that offer
   * several: e.g. 'CLIPForImageClassification' fine-tunes a CLIPModel checkpoint's vision tower
   * as a classifier (transformers' AutoModelForImageClassification does the same).
   */
  architecture?: string;
  /** Where notes go (dequantization, created parameters); default console.error. */
  log?: (message: string) => void;
}

export interface LoadedModel {
  model: AdapterModel;
  adapter: ArchitectureAdapter;
  config: HFConfig;
  format: WeightsFormat;
  /** The checkpoint folder the config and weights were resolved from (tokenizer, preprocessor files live here). */
  dir: string;
  weightsPath: string;
  /** Parameters the checkpoint lacked and the adapter created. */
  created: string[];
}

export async function loadPretrained(dirOrFile: string, options: LoadPretrainedOptions = {}): Promise<LoadedModel> {
  const log = options.log ?? ((m: string) => console.error(m));
  const found = discoverCheckpoint(dirOrFile, { weights: options.weights });
  let config = found.config as HFConfig;
  const adapter = adapterForConfig(config, join(found.dir, 'config.json'));
  if (options.architecture) config = withArchitecture(config, adapter, options.architecture, join(found.dir, 'config.json'));
  if (options.numLabels === undefined) checkLabelCount(config, join(found.dir, 'config.json'));
  const newHead = options.numLabels !== undefined && options.numLabels !== labelCount(config);
  if (newHead) {
    const { id2label: _i, label2id: _l, ...rest } = config;
    config = { ...rest, num_labels: options.numLabels, ...(typeof rest.num_classes === 'number' ? { num_classes: options.numLabels } : {}) };
    log(`${found.dir}: new ${options.numLabels}-class head (the checkpoint has ${labelCount(found.config as HFConfig)} classes)`);
  }
  const ignore = (name: string) => adapter.ignoredWeights?.(name, config) ?? false;
  const reinitialise = (name: string) => newHead && (adapter.headWeights?.(name) ?? false);
  const configPath = join(found.dir, 'config.json');
  checkLayerCounts(config, configPath);
  // The weights are read before the model is built, so the size the config implies can be
  // compared with what the file holds before anything is allocated.
  const aliases = adapter.aliases?.(config) ?? {};
  const { tensors: read, report } = readWeights(found, aliases);
  const tensors = applyAliases(read, aliases);
  let fileValues = 0;
  for (const t of tensors.values()) fileValues += numel(t.shape);
  // Room for what a checkpoint may lack: a new head, a mask token, unfolded batch norm.
  const limit = 2 * fileValues + 16_000_000;
  const model = withParameterBudget(
    {
      limit,
      refuse: (count, largest) =>
        new FileFormatError(
          configPath,
          `the config implies ${count.toExponential(2)} parameters (largest: '${largest.name}' [${largest.shape.join(',')}]${keysBehind(config, largest)}) but ${found.weightsPath} holds ${fileValues} values: refusing to allocate a model this far from its weights`,
        ),
    },
    () => adapter.build(config, { rng: new Rng(options.seed ?? 0), checkpointDir: found.dir }),
  );
  try {
    // Findings include dequantization of quantized exports and folded batch norm: say so.
    for (const finding of report.findings) log(`${found.weightsPath}: ${finding.message}`);
    checkLoadable(tensors, model.params.specs, found.weightsPath, reinitialise);
    const { created } = model.params.load(tensors, found.weightsPath, ignore, reinitialise);
    if (created.length) log(`${found.weightsPath}: created ${created.join(', ')} (not in the checkpoint)`);
    return { model, adapter, config, format: found.format, dir: found.dir, weightsPath: found.weightsPath, created };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/** A layer count above this is a typo, not a model (the deepest zoo models have about a hundred blocks). */
export const MAX_LAYERS = 1000;
const LAYER_KEY = /(^|_)(layers|depths|n_layer)$/;

/**
 * Refuse absurd layer counts before the adapter computes its ParamSpecs: a million layers would
 * exhaust memory on the spec objects alone, before the parameter budget could be checked.
 */
function checkLayerCounts(config: Record<string, unknown>, source: string, prefix = ''): void {
  for (const [key, value] of Object.entries(config)) {
    const path = `${prefix}${key}`;
    if (LAYER_KEY.test(key)) {
      const values = Array.isArray(value) ? value : [value];
      for (const v of values) {
        if (typeof v === 'number' && !(v <= MAX_LAYERS)) {
          throw new FileFormatError(source, `'${path}' is ${JSON.stringify(value)}: more than ${MAX_LAYERS} layers is not a plausible model (typo?)`);
        }
      }
    } else if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
      checkLayerCounts(value as Record<string, unknown>, source, `${path}.`);
    }
  }
}

/** ", from hidden_size=..." : the config keys whose values are dimensions of `spec`, to name the culprit. */
function keysBehind(config: Record<string, unknown>, spec: ParamSpec): string {
  const dims = new Set(spec.shape.filter((d) => d > 1));
  const found: string[] = [];
  const visit = (o: Record<string, unknown>, prefix: string) => {
    for (const [k, v] of Object.entries(o)) {
      if (typeof v === 'number' && dims.has(v)) found.push(`${prefix}${k}=${v}`);
      else if (typeof v === 'object' && v !== null && !Array.isArray(v)) visit(v as Record<string, unknown>, `${prefix}${k}.`);
    }
  };
  visit(config, '');
  return found.length ? `, from ${found.join(', ')}` : '';
}

const FLOAT_DTYPES = new Set<HostTensor['dtype']>(['float32', 'float16', 'bfloat16', 'float64']);

/**
 * Refuse what would load silently wrong: integer tensors for floating-point parameters (F32 bytes
 * labelled I32 would be cast value by value) and NaN/Inf values (fine-tuning from them only
 * spreads them; a quantized export with a NaN scale ends up here after dequantization too).
 * All offending tensors are named at once.
 */
function checkLoadable(tensors: TensorMap, specs: ReadonlyMap<string, ParamSpec>, source: string, skip: (name: string) => boolean): void {
  const problems: string[] = [];
  for (const [name, t] of tensors) {
    if (!specs.has(name) || skip(name)) continue;
    if (!FLOAT_DTYPES.has(t.dtype)) {
      problems.push(`  tensor '${name}': stored as ${t.dtype}, but the parameter is floating point (mislabelled dtype?)`);
      continue;
    }
    let bad = 0;
    const d = t.data as ArrayLike<number>;
    for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i])) bad++;
    if (bad > 0) problems.push(`  tensor '${name}': ${bad} of ${d.length} values are NaN or infinite`);
  }
  if (problems.length) throw new FileFormatError(source, `weights that cannot be fine-tuned:\n${problems.join('\n')}`);
}

/** `config` set to build `architecture`; an error naming the classes the adapter offers when it is not one. */
export function withArchitecture(config: HFConfig, adapter: ArchitectureAdapter, architecture: string, source: string): HFConfig {
  const offered = adapter.architectures ?? (Array.isArray(config.architectures) ? (config.architectures as string[]) : []);
  if (!offered.includes(architecture)) {
    throw new OptionError('architecture', `${source}: the ${adapter.name} adapter builds ${offered.length ? offered.join(', ') : 'only the class its config names'}, not '${architecture}'`);
  }
  return { ...config, architectures: [architecture] };
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

/** A classifier with no classes (`num_labels: 0`, an empty id2label) is a broken config, said up front. */
function checkLabelCount(config: HFConfig, source: string): void {
  const n = labelCount(config);
  if (n !== undefined && !(Number.isInteger(n) && n >= 1)) {
    const key = typeof config.num_labels === 'number' ? 'num_labels' : typeof config.num_classes === 'number' ? 'num_classes' : 'id2label';
    throw new FileFormatError(source, `'${key}' gives ${n} classes: a classification head needs at least one (or pass --set num_labels=N to fine-tune to N classes)`);
  }
}

/** Classes of a checkpoint's head: HF's num_labels / id2label, or num_classes (timm, CIFAR zoos). */
function labelCount(config: HFConfig): number | undefined {
  if (typeof config.num_labels === 'number') return config.num_labels;
  if (typeof config.num_classes === 'number') return config.num_classes;
  const id2label = config.id2label as Record<string, string> | undefined;
  return id2label ? Object.keys(id2label).length : undefined;
}

/** A randomly initialised model from a config.json file or object (training from scratch). */
export function buildFromConfig(
  configOrPath: string | HFConfig,
  seed = 0,
  options: Pick<LoadPretrainedOptions, 'architecture'> = {},
): { model: AdapterModel; adapter: ArchitectureAdapter; config: HFConfig } {
  let config: HFConfig;
  let source = 'config';
  if (typeof configOrPath === 'string') {
    source = configOrPath.endsWith('.json') ? configOrPath : join(configOrPath, 'config.json');
    config = readConfig(source) as HFConfig;
  } else {
    config = configOrPath;
  }
  const adapter = adapterForConfig(config, source);
  checkLayerCounts(config, source);
  checkLabelCount(config, source);
  const budget = {
    limit: MAX_PARAMETERS,
    refuse: (count: number, largest: ParamSpec): MaskSubError =>
      new FileFormatError(
        source,
        `the config implies ${count.toExponential(2)} parameters (largest: '${largest.name}' [${largest.shape.join(',')}]${keysBehind(config, largest)}), more than the ${MAX_PARAMETERS} float32 values a 4 GiB wasm heap holds`,
      ),
  };
  if (options.architecture) config = withArchitecture(config, adapter, options.architecture, source);
  return { model: withParameterBudget(budget, () => adapter.build(config, { rng: new Rng(seed) })), adapter, config };
}

/** Write the model as an HF folder: config.json + model.safetensors (hub names, PyTorch layouts), atomically. */
export function saveModel(model: AdapterModel, dir: string, extraConfig: Record<string, unknown> = {}): void {
  mkdirSync(dir, { recursive: true });
  writeSafetensors(join(dir, 'model.safetensors'), model.params.export(), { format: 'pt' });
  const config = { ...model.config, ...extraConfig };
  writeFileAtomic(join(dir, 'config.json'), new TextEncoder().encode(`${JSON.stringify(config, null, 2)}\n`));
}
