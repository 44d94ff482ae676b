/**
 * checkpoint folder -> model: `loadPretrained(dir)` finds config.json and the weights file
 * (safetensors, ONNX or quantized ONNX, or an explicit `weights` path), dispatches on
 * `model_type` to the registered adapter, and maps the tensors onto the adapter's names.
 * `saveModel(model, dir)` writes the HF folder back (config.json + model.safetensors, hub names,
 * PyTorch layouts), loadable by masksub and by transformers/timm.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { type CheckpointLocation, discoverCheckpoint, locateWeights, readConfig, readWeights, renameByAliases, type ReadWeightsResult, type WeightsFormat } from './io/hf-folder.js';
import { requiredFolderFile } from './io/contained-path.js';
import { writePth } from './io/pth-write.js';
import { writeFileAtomic, writeSafetensors } from './io/safetensors.js';
import type { HostTensor, TensorMap } from './io/types.js';
import { numel, toFloat32 } from './io/types.js';
import { FileFormatError, OptionError, type MaskSubError } from './errors.js';
import { MAX_PARAMETERS, type ParamSpec, withParameterBudget } from './model.js';
import type { AdapterModel, ArchitectureAdapter, HFConfig } from './registry.js';
import { adapterForConfig, adapterForTimm } from './registry.js';
import { Rng } from './rng.js';
import { buildWithOverrides, type ConfigOverrides, mergeConfig } from './config-overrides.js';

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
  /**
   * A timm architecture name (e.g. 'resnet50', 'deit3_base_patch16_224') for a checkpoint with
   * no config.json beside it (a lone `.pth`): it picks the adapter, the sizes come from the
   * adapter's table for that name, the class count from the head's shape in the file.
   */
  arch?: string;
  /**
   * The tokenizer folder the run encodes its texts with (e.g. a run's data.tokenizer): an adapter
   * reads what it needs from it (BERT: the [MASK]/[CLS]/[SEP]/[PAD] ids) when the checkpoint
   * folder has no tokenizer files of its own.
   */
  tokenizerDir?: string;
  /** Where notes go (dequantization, created parameters); default console.error. */
  log?: (message: string) => void;
  /**
   * config.json keys overridden before the model is built (see {@link buildWithOverrides}); the
   * saved folder's config.json shows them. Errors name them `<configOverridesName>.<key>`.
   */
  configOverrides?: ConfigOverrides;
  /** The name errors give the overrides (default 'configOverrides'; the trainer says 'model_config'). */
  configOverridesName?: string;
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
  /** The layout the weights came in: pass it to saveModel to write them back the same way. */
  layout: SaveLayout;
}

/**
 * How saveModel writes the weights. 'safetensors' (default): `model.safetensors` under the
 * model's checkpoint names (HF or timm). 'pth': a PyTorch zip checkpoint `file`, the state dict
 * nested under `wrapIn` (e.g. ['model'] for the official DeiT release), each tensor under the
 * name it had in the source file (`fileNames`: checkpoint name -> file name, e.g. DeiT-III's
 * `gamma_1`, torchvision's `layer1.0.conv1`), `prefix` (DataParallel's `module.`) restored, and
 * the `carried` tensors the model did not use (BN's `num_batches_tracked`) written back as read,
 * and the parameters the file lacked (`notInSource`) left out.
 */
export type SaveLayout =
  | { kind: 'safetensors' }
  | {
      kind: 'pth';
      file: string;
      wrapIn: readonly string[];
      prefix?: string;
      fileNames: ReadonlyMap<string, string>;
      carried: TensorMap;
      /** Parameters the source file lacked (a created mask token): the source architecture has no place for them. */
      notInSource: readonly string[];
    };

export interface SaveModelOptions {
  /** Default { kind: 'safetensors' }; a LoadedModel's `layout` writes the source layout back. */
  layout?: SaveLayout;
}

export async function loadPretrained(dirOrFile: string, options: LoadPretrainedOptions = {}): Promise<LoadedModel> {
  const log = options.log ?? ((m: string) => console.error(m));
  const byArch = options.arch !== undefined ? configFromArch(dirOrFile, options.arch, options.weights, log) : undefined;
  const found = byArch?.found ?? discoverCheckpoint(dirOrFile, { weights: options.weights });
  let config = found.config as HFConfig;
  // where the config came from, for errors: the folder's config.json, or the --arch name
  const configPath = byArch ? `--arch ${options.arch}` : join(found.dir, 'config.json');
  const adapter = byArch?.adapter ?? adapterForConfig(config, configPath);
  if (options.architecture) config = withArchitecture(config, adapter, options.architecture, configPath);
  if (options.numLabels === undefined) checkLabelCount(config, configPath);
  const newHead = options.numLabels !== undefined && options.numLabels !== labelCount(config);
  if (newHead) {
    const { id2label: _i, label2id: _l, ...rest } = config;
    config = { ...rest, num_labels: options.numLabels, ...(typeof rest.num_classes === 'number' ? { num_classes: options.numLabels } : {}) };
    const before = labelCount(found.config as HFConfig);
    log(`${found.dir}: new ${options.numLabels}-class head (${before === undefined ? 'the checkpoint has no classification head' : `the checkpoint has ${before} classes`})`);
  }
  let beforeOverrides = config;
  if (options.configOverrides) config = mergeConfig(config, options.configOverrides);
  const ignore = (name: string) => adapter.ignoredWeights?.(name, config) ?? false;
  const reinitialise = (name: string) => newHead && (adapter.headWeights?.(name) ?? false);
  checkLayerCounts(config, configPath);
  // The weights are read before the model is built, so the size the config implies can be
  // compared with what the file holds before anything is allocated.
  const aliases = adapter.aliases?.(config) ?? {};
  const { tensors: read, report } = byArch?.read ?? readWeights(found, aliases);
  const renamed = renameByAliases(read, aliases, found.weightsPath);
  const tensors = adapter.transformWeights ? adapter.transformWeights(renamed.tensors, config, found.weightsPath) : renamed.tensors;
  const fileNames = new Map([...report.fileNames, ...renamed.fileNames]);
  if (adapter.configForWeights) {
    // What the file's names say about the config (e.g. MAE's pooled head) holds for the model
    // that is built, which is built from the config before the run's overrides.
    const names = new Set(tensors.keys());
    config = adapter.configForWeights(config, names);
    beforeOverrides = adapter.configForWeights(beforeOverrides, names);
  }
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
    () => buildWithOverrides(beforeOverrides, options.configOverrides, (c) => adapter.build(c, { rng: new Rng(options.seed ?? 0), checkpointDir: found.dir, tokenizerDir: options.tokenizerDir }), options.configOverridesName, adapter.name),
  );
  try {
    // Findings include dequantization of quantized exports and folded batch norm: say so.
    for (const finding of report.findings) log(`${found.weightsPath}: ${finding.message}`);
    checkLoadable(tensors, model.params.specs, found.weightsPath, reinitialise);
    const { created } = model.params.load(tensors, found.weightsPath, ignore, reinitialise);
    if (created.length) log(`${found.weightsPath}: created ${created.join(', ')} (not in the checkpoint)`);
    // a transformed file (split tensors) has no one-to-one way back: saved as safetensors
    const layout: SaveLayout =
      found.format === 'pth' && tensors === renamed.tensors
        ? {
            kind: 'pth',
            file: basename(found.weightsPath),
            wrapIn: report.pth?.path ?? [],
            ...(report.pth?.strippedPrefix ? { prefix: report.pth.strippedPrefix } : {}),
            fileNames,
            carried: new Map([...tensors].filter(([name]) => !model.params.specs.has(name) && ignore(name))),
            // A head re-created for other labels keeps its place (the file had it, at another shape).
            notInSource: created.filter((name) => !tensors.has(name)),
          }
        : { kind: 'safetensors' };
    return { model, adapter, config, format: found.format, dir: found.dir, weightsPath: found.weightsPath, created, layout };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/**
 * `--arch <name>` for a checkpoint without config.json: the timm config that name stands for
 * (`architecture`, `num_classes` from the head's shape in the file, the input size the name
 * ends with), and the adapter serving it. The tensors are read once, under their file names
 * (the caller applies the adapter's aliases).
 */
function configFromArch(
  dirOrFile: string,
  archWithTag: string,
  weights: string | undefined,
  log: (message: string) => void,
): { found: CheckpointLocation; adapter: ArchitectureAdapter; read: ReadWeightsResult } {
  // timm's pretrained tags ('resnet50.a1_in1k') name weights, not architectures
  const arch = archWithTag.split('.')[0] as string;
  const located = locateWeights(dirOrFile, { weights });
  const configPath = join(located.dir, 'config.json');
  if (existsSync(configPath)) {
    throw new OptionError('arch', `${configPath} exists and names the architecture; --arch is for a checkpoint without a config.json (remove one of them)`);
  }
  let adapter: ArchitectureAdapter;
  try {
    adapter = adapterForTimm(arch, '--arch');
  } catch (e) {
    throw new OptionError('arch', e instanceof Error ? e.message : String(e));
  }
  const read = readWeights(located);
  const head = [...read.tensors.values()].find((t) => t.shape.length === 2 && t.name.endsWith('.weight') && (adapter.headWeights?.(t.name) ?? false));
  if (!head) throw new FileFormatError(located.weightsPath, `--arch ${arch}: no classification head weight found (the class count is read from its shape)`);
  const numClasses = head.shape[0] as number;
  const config: HFConfig = { architecture: arch, num_classes: numClasses, pretrained_cfg: { input_size: [3, ...timmInputSize(arch)] } };
  log(`${located.weightsPath}: --arch ${arch}: sizes from the architecture table, ${numClasses} classes from '${head.name}'; preprocessing takes timm's defaults (no pretrained_cfg)`);
  return { found: { ...located, config }, adapter, read };
}

/** The input size a timm name ends with (`..._224`, `..._384`), else timm's default 224. */
export function timmInputSize(arch: string): [number, number] {
  const m = /_(\d{2,4})$/.exec(arch);
  const size = m ? Number(m[1]) : 224;
  return [size, size];
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

/** A classifier with no classes (`num_labels: 0`, an empty id2label) is a broken config, said up front. */
function checkLabelCount(config: HFConfig, source: string): void {
  for (const key of ['num_labels', 'num_classes'] as const) {
    const v = config[key];
    if (v !== undefined && v !== null && typeof v !== 'number') {
      throw new FileFormatError(source, `'${key}' is ${JSON.stringify(v)}: a class count must be a positive integer`);
    }
  }
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
  options: Pick<LoadPretrainedOptions, 'architecture' | 'tokenizerDir' | 'configOverrides' | 'configOverridesName'> = {},
): { model: AdapterModel; adapter: ArchitectureAdapter; config: HFConfig } {
  let config: HFConfig;
  let source = 'config';
  if (typeof configOrPath === 'string') {
    source = configOrPath.endsWith('.json') ? configOrPath : requiredFolderFile(configOrPath, 'config.json');
    config = readConfig(source) as HFConfig;
  } else {
    config = configOrPath;
  }
  const adapter = adapterForConfig(config, source);
  let beforeOverrides = config;
  if (options.configOverrides) config = mergeConfig(config, options.configOverrides);
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
  let base = beforeOverrides;
  if (options.architecture) {
    base = withArchitecture(base, adapter, options.architecture, source);
    config = withArchitecture(config, adapter, options.architecture, source);
  }
  const build = (c: HFConfig) => adapter.build(c, { rng: new Rng(seed), tokenizerDir: options.tokenizerDir });
  return { model: withParameterBudget(budget, () => buildWithOverrides(base, options.configOverrides, build, options.configOverridesName, adapter.name)), adapter, config };
}

/**
 * Write the model as a folder: config.json + model.safetensors (hub names, PyTorch layouts), or
 * in the `.pth` layout it was loaded from (options.layout), atomically.
 */
export function saveModel(model: AdapterModel, dir: string, extraConfig: Record<string, unknown> = {}, options: SaveModelOptions = {}): void {
  mkdirSync(dir, { recursive: true });
  const layout = options.layout ?? { kind: 'safetensors' };
  if (layout.kind === 'pth') {
    const out: TensorMap = new Map();
    const put = (hubName: string, t: HostTensor) => {
      const name = `${layout.prefix ?? ''}${layout.fileNames.get(hubName) ?? hubName}`;
      const data = t.dtype === 'float32' || t.dtype === 'int64' ? t : { ...t, dtype: 'float32' as const, data: toFloat32(t) };
      out.set(name, { ...data, name });
    };
    for (const [name, t] of model.params.export()) if (!layout.notInSource.includes(name)) put(name, t);
    for (const [name, t] of layout.carried) put(name, t);
    writePth(join(dir, layout.file), out, { wrapIn: layout.wrapIn });
  } else {
    writeSafetensors(join(dir, 'model.safetensors'), model.params.export(), { format: 'pt' });
  }
  const config = { ...model.config, ...extraConfig };
  writeFileAtomic(join(dir, 'config.json'), new TextEncoder().encode(`${JSON.stringify(config, null, 2)}\n`));
}
