/**
 * The adapter registry: each architecture package registers one adapter (the HF `model_type`s
 * it serves, how to build a model from config.json, its weight names, its drop operators) in a
 * tsyringe container; `loadPretrained(dir)` reads config.json and dispatches.
 */
import 'reflect-metadata';
import { container, type DependencyContainer } from 'tsyringe';
import { MaskSubError } from './errors.js';
import type { MaskSubModel } from './model.js';
import type { DropOperatorProvider } from './masksub.js';
import type { Rng } from './rng.js';
import type { TensorMap } from './io/types.js';

export type HFConfig = Record<string, unknown> & { model_type?: string };

export type AdapterModel = MaskSubModel & DropOperatorProvider;

export interface BuildOptions {
  /** Initialises parameters the checkpoint lacks (and every one when training from scratch). */
  rng?: Rng;
  /**
   * The checkpoint folder, when building for one: an adapter may read what config.json does not
   * carry but the folder does (e.g. a tokenizer's special-token ids).
   */
  checkpointDir?: string;
  /** The tokenizer folder the run's texts are encoded with, read when the checkpoint folder has no tokenizer files. */
  tokenizerDir?: string;
}

export interface ArchitectureAdapter {
  /** Short name, e.g. 'vit'. */
  readonly name: string;
  /** HF `model_type` values it serves. */
  readonly modelTypes: readonly string[];
  /**
   * The HF model classes (config `architectures[0]`) it can build from these configs, when more
   * than one (e.g. CLIPModel and CLIPForImageClassification); `build` reads the config's choice.
   */
  readonly architectures?: readonly string[];
  /**
   * timm architecture names it serves (`config.json` `architecture` of a timm hub folder), as
   * glob patterns such as 'vit_*'; `build` then receives the timm config as it is.
   */
  readonly timmArchitectures?: readonly string[];
  /** Build a randomly initialised model from a config.json object (validates the fields it reads). */
  build(config: HFConfig, options?: BuildOptions): AdapterModel;
  /**
   * Checkpoint names that may appear in a file but that this model does not use (e.g. a pooler
   * with a classification head); they are skipped rather than reported as unexpected. `config`
   * is the one the model is built from (e.g. a classifier built from a CLIPModel checkpoint skips
   * the text tower).
   */
  ignoredWeights?(name: string, config: HFConfig): boolean;
  /** The classification head's tensors: re-initialised when fine-tuning to a different label count. */
  headWeights?(name: string): boolean;
  /**
   * Alternative names -> hub names for this config (e.g. the transformers-5 module layout
   * `vit.layers.0.attention.q_proj.weight`), applied to every weights file that uses them.
   */
  aliases?(config: HFConfig): Readonly<Record<string, string>>;
  /**
   * The config completed from the tensor names the weights file holds (checkpoint names, after
   * aliases), where the config leaves the layout open (e.g. MAE's pooled head: `fc_norm.*` and
   * no final `norm.*`). Called before `build`; the result is the model's config.
   */
  configForWeights?(config: HFConfig, names: ReadonlySet<string>): HFConfig;
  /**
   * Tensors that need more than a rename to become checkpoint tensors (e.g. timm Swin's fused
   * qkv split into query, key and value), after the aliases; `source` names the file in errors.
   */
  transformWeights?(tensors: TensorMap, config: HFConfig, source: string): TensorMap;
}

export const ADAPTER_TOKEN = Symbol.for('masksub.ArchitectureAdapter');

/** The container adapters are registered in; every function takes another (e.g. a child container) for isolation. */
export const adapterContainer: DependencyContainer = container;

/** Register an adapter (idempotent per name: registering the same name again is ignored). */
export function registerAdapter(adapter: ArchitectureAdapter, c: DependencyContainer = adapterContainer): void {
  if (listAdapters(c).some((a) => a.name === adapter.name)) return;
  c.register<ArchitectureAdapter>(ADAPTER_TOKEN, { useValue: adapter });
}

export function listAdapters(c: DependencyContainer = adapterContainer): ArchitectureAdapter[] {
  return c.isRegistered(ADAPTER_TOKEN, true) ? c.resolveAll<ArchitectureAdapter>(ADAPTER_TOKEN) : [];
}

export function adapterFor(modelType: string | undefined, source: string, c: DependencyContainer = adapterContainer): ArchitectureAdapter {
  const adapters = listAdapters(c);
  const found = adapters.find((a) => modelType !== undefined && a.modelTypes.includes(modelType));
  if (!found) {
    const known = adapters.flatMap((a) => a.modelTypes.map((t) => `${t} (${a.name})`));
    throw new MaskSubError(
      `${source}: no adapter for model_type '${modelType ?? '(missing)'}'. Registered: ${known.length ? known.join(', ') : 'none — import an architecture package such as @masksub/vit'}`,
    );
  }
  return found;
}

/** A timm hub config.json: `architecture` plus `model_args` / `pretrained_cfg`, and no HF `model_type`. */
export function isTimmConfig(config: HFConfig): boolean {
  return config.model_type === undefined && typeof config.architecture === 'string' && ('model_args' in config || 'pretrained_cfg' in config);
}

function globMatch(pattern: string, name: string): boolean {
  const re = new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
  return re.test(name);
}

/** The adapter serving a timm architecture name; an error naming it and listing what is served. */
export function adapterForTimm(architecture: string, source: string, c: DependencyContainer = adapterContainer): ArchitectureAdapter {
  const adapters = listAdapters(c);
  const found = adapters.find((a) => (a.timmArchitectures ?? []).some((p) => globMatch(p, architecture)));
  if (!found) {
    const served = adapters.flatMap((a) => (a.timmArchitectures ?? []).map((p) => `${p} (${a.name})`));
    throw new MaskSubError(`${source}: no adapter serves timm architecture '${architecture}'. Served: ${served.length ? served.join(', ') : 'none — import an architecture package such as @masksub/vit'}`);
  }
  return found;
}

/** Dispatch a config.json: HF `model_type`, or timm `architecture`. */
export function adapterForConfig(config: HFConfig, source: string, c: DependencyContainer = adapterContainer): ArchitectureAdapter {
  return isTimmConfig(config) ? adapterForTimm(config.architecture as string, source, c) : adapterFor(config.model_type, source, c);
}
