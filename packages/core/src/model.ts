/**
 * What an architecture adapter builds: a network as pure tfjs functions over named variables.
 * Variables are keyed by checkpoint names (HF hub names) but stored in the layout that is fast
 * in tfjs (e.g. Linear as [in, out]); `ParamSpec.layout` converts in both directions, so
 * loading, saving and gradient checks all speak PyTorch layouts.
 */
import { MaskSubError, TensorMismatchError } from './errors.js';
import type { HostTensor, TensorMap } from './io/types.js';
import { numel, toFloat32 } from './io/types.js';
import { permute } from './io/permute.js';
import type { LossOptions, RelaxedLoss } from './contract/loss.js';
import type { ParamGroups } from './optim/param-groups.js';
import type { DropPathRule } from './nn.js';
import type { Rng } from './rng.js';
import { tf } from './tf.js';

/** Named model inputs, as HF names them: pixel_values [B,C,H,W], input_ids, attention_mask, ... */
export type ModelInputs = Record<string, tf.Tensor>;

/** Per-pass instructions; the sub pass sets these from its drop operator. */
export interface ForwardOptions {
  /** Training mode (dropout, drop-path, batch-norm statistics). */
  training?: boolean;
  /** Token removal: kept patch indices [B, K] (int32), CLS excluded. */
  keepIndices?: tf.Tensor;
  /** Mask-token swap: [B, N] float, 1 = replace the patch token by the mask token. */
  maskedPositions?: tf.Tensor;
  /**
   * DropSub: dropout rate for this pass after the attention output projection and in the MLP
   * (see passDropoutRates); the attention probabilities keep the config's rate.
   */
  dropoutRate?: number;
  /** PathSub: stochastic-depth rate for this pass (overrides the config's). */
  dropPathRate?: number;
  /** How `dropPathRate` spreads over depth (default: the model's own rule); PathSub uses 'uniform'. */
  dropPathRule?: DropPathRule;
  /**
   * Batch norm in a training pass: 'train' = batch statistics (running statistics updated),
   * 'eval' = running statistics (frozen). Default: the model's own mode. Ignored without BN.
   */
  bnMode?: 'train' | 'eval';
  /** Seed for this pass's random noise. */
  seed?: number;
  /**
   * Seed shared by both passes of one training step, for noise the reference computes once for
   * both (CLIP's text tower: the sub-model sees the same text embeddings as the main model).
   */
  stepSeed?: number;
}

/**
 * How a checkpoint tensor maps onto a tfjs variable:
 * - identity: same shape and order;
 * - linear: PyTorch Linear [out, in] <-> [in, out] so the forward matmul needs no transpose;
 * - patch-linear: a conv with kernel == stride [D, C, p, p] <-> [C*p*p, D], applied as a matmul on patches;
 * - conv-hwio: PyTorch Conv2d [O, I, kh, kw] <-> tfjs [kh, kw, I, O].
 */
export type Layout = 'identity' | 'linear' | 'patch-linear' | 'conv-hwio';

export type Initializer = 'zeros' | 'ones' | { normal: number } | { truncNormal: number } | { uniform: number };

export interface ParamSpec {
  /** Checkpoint name (hub name). */
  name: string;
  /** Shape in the checkpoint (PyTorch layout). */
  shape: number[];
  layout: Layout;
  init: Initializer;
  /** Updated by the optimizer (false for batch-norm running statistics). */
  trainable?: boolean;
  /** May be absent from a checkpoint (created by the adapter, e.g. a mask token). */
  optional?: boolean;
}

export function internalShape(spec: Pick<ParamSpec, 'shape' | 'layout'>): number[] {
  const s = spec.shape;
  switch (spec.layout) {
    case 'identity':
      return [...s];
    case 'linear':
      return [s[1], s[0]];
    case 'patch-linear':
      return [s[1] * s[2] * s[3], s[0]];
    case 'conv-hwio':
      return [s[2], s[3], s[1], s[0]];
  }
}

/** Reorder `data` of shape `shape` by `perm` (the shared host-side permute of io/). */
function permuteData(data: Float32Array, shape: number[], perm: number[]): Float32Array {
  return permute({ name: '', dtype: 'float32', shape, data }, perm).data as Float32Array;
}

/** Checkpoint layout -> internal layout (host arrays, no tfjs). */
export function toInternal(spec: Pick<ParamSpec, 'shape' | 'layout'>, data: Float32Array): Float32Array {
  const s = spec.shape;
  switch (spec.layout) {
    case 'identity':
      return data;
    case 'linear':
      return permuteData(data, s, [1, 0]);
    case 'patch-linear':
      return permuteData(data, [s[0], s[1] * s[2] * s[3]], [1, 0]);
    case 'conv-hwio':
      return permuteData(data, s, [2, 3, 1, 0]);
  }
}

/** Internal layout -> checkpoint layout. */
export function toCheckpoint(spec: Pick<ParamSpec, 'shape' | 'layout'>, data: Float32Array): Float32Array {
  const s = spec.shape;
  switch (spec.layout) {
    case 'identity':
      return data;
    case 'linear':
      return permuteData(data, [s[1], s[0]], [1, 0]);
    case 'patch-linear':
      return permuteData(data, [s[1] * s[2] * s[3], s[0]], [1, 0]);
    case 'conv-hwio':
      return permuteData(data, [s[2], s[3], s[1], s[0]], [3, 2, 0, 1]);
  }
}

function initialValues(spec: ParamSpec, rng: Rng): Float32Array {
  const n = numel(spec.shape);
  const out = new Float32Array(n);
  const init = spec.init;
  if (init === 'zeros') return out;
  if (init === 'ones') return out.fill(1);
  if ('uniform' in init) {
    for (let i = 0; i < n; i++) out[i] = (rng.next() * 2 - 1) * init.uniform;
    return out;
  }
  const std = 'normal' in init ? init.normal : init.truncNormal;
  for (let i = 0; i < n; i++) {
    let v = rng.normal();
    if ('truncNormal' in init) while (Math.abs(v) > 2) v = rng.normal();
    out[i] = v * std;
  }
  return out;
}

let modelCounter = 0;

/**
 * Float32 parameters one model may hold at most: the wasm backend's heap is 4 GiB, so a config
 * that implies more (a typo'd `hidden_size: 1e9`) is refused before anything is allocated instead
 * of growing until the process is killed.
 */
export const MAX_PARAMETERS = 2 ** 30;

/** What a ParameterStore about to be created may allocate, and how to explain a refusal. */
export interface ParameterBudget {
  limit: number;
  /** The error for `count` parameters over the limit (`largest`: the biggest spec, to name the key at fault). */
  refuse(count: number, largest: ParamSpec): MaskSubError;
}

let activeBudget: ParameterBudget | undefined;

/**
 * Run `build` (synchronous, as ArchitectureAdapter.build is) with a budget every ParameterStore it
 * creates is checked against before allocating: adapters compute their ParamSpecs (shapes only)
 * first, so the check needs nothing from the adapter.
 */
export function withParameterBudget<T>(budget: ParameterBudget, build: () => T): T {
  const previous = activeBudget;
  activeBudget = budget;
  try {
    return build();
  } finally {
    activeBudget = previous;
  }
}

function checkBudget(specs: readonly ParamSpec[]): void {
  let count = 0;
  let largest: ParamSpec | undefined;
  for (const spec of specs) {
    const n = numel(spec.shape);
    count += n;
    if (!largest || n > numel(largest.shape)) largest = spec;
  }
  const budget = activeBudget ?? {
    limit: MAX_PARAMETERS,
    refuse: (c: number, big: ParamSpec) =>
      new MaskSubError(`the model would have ${c.toExponential(2)} parameters (largest: '${big.name}' [${big.shape.join(',')}]), more than the ${MAX_PARAMETERS} float32 values a 4 GiB wasm heap holds`),
  };
  if (largest && (count > Math.min(budget.limit, MAX_PARAMETERS) || !Number.isSafeInteger(count))) throw budget.refuse(count, largest);
}

/** The variables of one model instance, keyed by checkpoint name. */
export class ParameterStore {
  private specMap: Map<string, ParamSpec>;
  readonly variables = new Map<string, tf.Variable>();
  private readonly prefix = `m${modelCounter++}`;

  /** Create variables for `specs`, initialised from `rng`. */
  constructor(specs: ParamSpec[], rng: Rng | null) {
    this.specMap = new Map(specs.map((s) => [s.name, s]));
    if (!rng) return;
    checkBudget(specs);
    for (const spec of specs) this.createVariable(spec, toInternal(spec, initialValues(spec, rng)));
  }

  /** A new variable for `spec` holding `values` (internal layout), the one place variables are made. */
  private createVariable(spec: ParamSpec, values: Float32Array): void {
    const init = tf.tensor(values, internalShape(spec));
    // tfjs variable names are global: prefix them so two models can live side by side.
    this.variables.set(spec.name, tf.variable(init, spec.trainable ?? true, `${this.prefix}/${spec.name}`));
    // The variable shares init's data: left alive, init would keep the initial values in memory
    // after the first update (or a checkpoint load) replaced the variable's own: one whole copy
    // of the model's parameters for the rest of the run.
    init.dispose();
  }

  /** The parameters this model has, by checkpoint name. */
  get specs(): ReadonlyMap<string, ParamSpec> {
    return this.specMap;
  }

  /**
   * Change the parameter set in place, for models whose structure depends on the checkpoint (e.g.
   * a ResNet whose exporter folded batch norm into the convolutions): parameters that leave are
   * disposed; new ones are created from `value` (checkpoint layout) or zeros; ones that stay keep
   * their variable and are reassigned only when `value` gives them a value.
   */
  replaceSpecs(specs: ParamSpec[], value: (name: string) => Float32Array | undefined = () => undefined): void {
    const next = new Map(specs.map((spec) => [spec.name, spec]));
    for (const [name, v] of this.variables) {
      if (next.has(name)) continue;
      v.dispose();
      this.variables.delete(name);
    }
    for (const spec of specs) {
      const data = value(spec.name);
      const existing = this.variables.get(spec.name);
      if (existing && !data) continue;
      const values = data ? toInternal(spec, data) : new Float32Array(numel(internalShape(spec)));
      if (!existing) {
        this.createVariable(spec, values);
        continue;
      }
      const init = tf.tensor(values, internalShape(spec));
      existing.assign(init);
      init.dispose(); // the variable holds its own reference to the data
    }
    this.specMap = next;
  }

  /** A store over variables that already exist (e.g. a tf.LayersModel's weights). */
  static wrap(specs: ParamSpec[], variables: Map<string, tf.Variable>): ParameterStore {
    const store = new ParameterStore(specs, null);
    for (const spec of specs) {
      const v = variables.get(spec.name);
      if (!v) throw new Error(`no variable for parameter '${spec.name}'`);
      store.variables.set(spec.name, v);
    }
    return store;
  }

  /** The variable for a checkpoint name (throws naming it when absent: a programming error in an adapter). */
  get(name: string): tf.Variable {
    const v = this.variables.get(name);
    if (!v) throw new Error(`model has no parameter '${name}'`);
    return v;
  }

  has(name: string): boolean {
    return this.variables.has(name);
  }

  /** Trainable variables keyed by checkpoint name. */
  trainable(): Map<string, tf.Variable> {
    return new Map([...this.variables].filter(([name]) => this.specs.get(name)?.trainable ?? true));
  }

  /**
   * Assign checkpoint tensors (PyTorch layouts). Every mismatch is collected and reported at once:
   * missing required tensors, tensors that cannot be placed, and wrong shapes. Tensors listed in
   * `ignore` (e.g. a pooler the classifier does not use) are skipped silently.
   */
  load(
    tensors: TensorMap,
    source: string,
    ignore: (name: string) => boolean = () => false,
    /** Parameters to keep freshly initialised even when the file has them (a new head). */
    reinitialise: (name: string) => boolean = () => false,
  ): { loaded: string[]; created: string[] } {
    const missing: string[] = [];
    const created: string[] = [];
    const wrongShape: { name: string; expected: number[]; found: number[] }[] = [];
    const loaded: string[] = [];
    for (const [name, spec] of this.specs) {
      const t = reinitialise(name) ? undefined : tensors.get(name);
      if (!t) {
        if (spec.optional || reinitialise(name)) created.push(name);
        else missing.push(name);
        continue;
      }
      if (t.shape.length !== spec.shape.length || t.shape.some((d, i) => d !== spec.shape[i])) {
        wrongShape.push({ name, expected: spec.shape, found: t.shape });
      }
    }
    const unexpected = [...tensors.keys()].filter((n) => !this.specs.has(n) && !ignore(n) && !reinitialise(n));
    if (missing.length || unexpected.length || wrongShape.length) {
      throw new TensorMismatchError(source, missing, unexpected, wrongShape);
    }
    for (const [name, spec] of this.specs) {
      const t = reinitialise(name) ? undefined : tensors.get(name);
      if (!t) continue;
      const value = tf.tensor(toInternal(spec, toFloat32(t)), internalShape(spec));
      this.get(name).assign(value);
      value.dispose();
      loaded.push(name);
    }
    return { loaded, created };
  }

  /** All variables as checkpoint tensors (PyTorch layouts). */
  export(): TensorMap {
    const out: TensorMap = new Map();
    for (const [name, spec] of this.specs) {
      const data = toCheckpoint(spec, this.get(name).dataSync() as Float32Array);
      out.set(name, { name, dtype: 'float32', shape: [...spec.shape], data: Float32Array.from(data) } satisfies HostTensor);
    }
    return out;
  }

  /** A gradient (internal layout) as a checkpoint-layout host tensor, for checks against PyTorch. */
  gradientToCheckpoint(name: string, grad: tf.Tensor): HostTensor {
    const spec = this.specs.get(name);
    if (!spec) throw new Error(`model has no parameter '${name}'`);
    return { name, dtype: 'float32', shape: [...spec.shape], data: toCheckpoint(spec, grad.dataSync() as Float32Array) };
  }

  /** Elements of every variable, buffers such as batch-norm running statistics included. */
  count(): number {
    let n = 0;
    for (const spec of this.specs.values()) n += numel(spec.shape);
    return n;
  }

  /**
   * Elements of the trainable variables only: what PyTorch's `sum(p.numel() for p in
   * m.parameters())` counts (buffers excluded), and what optimizer state and gradients scale with.
   */
  countTrainable(): number {
    let n = 0;
    for (const spec of this.specs.values()) if (spec.trainable ?? true) n += numel(spec.shape);
    return n;
  }

  dispose(): void {
    for (const v of this.variables.values()) v.dispose();
    this.variables.clear();
  }
}

/**
 * A part of a network that both passes of a MaskSub step compute identically: it reads only inputs
 * the drop operators leave alone and ignores the sub pass's instructions (CLIP's text tower, which
 * the reference embeds once per step). withMaskSub then runs it once per step on a tape of its own,
 * each pass differentiates with respect to its output, and one backward of the part with the
 * summed output gradient replaces the second pass's forward and backward. The gradients are the
 * same sum (up to float rounding) as running forward() twice; the part's activations are held
 * across both passes (the passes' own graphs are still released one after the other).
 */
export interface SharedBranch {
  /** The input keys the part reads (a sub-pass view that changes one of them runs forward() instead). */
  readonly inputs: readonly string[];
  /** The part's output for the batch (e.g. [B, D] text embeddings), from the main pass's options. */
  encode(inputs: ModelInputs, options: ForwardOptions): tf.Tensor;
  /** What forward() returns, from the rest of the network and the part's output `shared`. */
  forwardWith(inputs: ModelInputs, shared: tf.Tensor, options: ForwardOptions): tf.Tensor;
}

/** A trainable network as masksub sees it. */
export interface MaskSubModel {
  /** The adapter's name (e.g. 'vit'). */
  readonly architecture: string;
  /** The HF config it was built from (config.json contents). */
  readonly config: Readonly<Record<string, unknown>>;
  readonly params: ParameterStore;
  /** Number of output classes (or embedding size for contrastive models). */
  readonly numClasses: number;
  /** Logits [B, classes] (or for contrastive models the [B, B] similarity matrix). */
  forward(inputs: ModelInputs, options?: ForwardOptions): tf.Tensor;
  /**
   * The loss this model's head implies, used when withMaskSub is given no `loss`: e.g. MSE for a
   * regression head (HF problem_type), the contrastive loss for CLIP. Absent: cross-entropy.
   */
  recipeLoss?(options: LossOptions): RelaxedLoss;
  /** The part both passes compute identically, when the model has one (see {@link SharedBranch}). */
  readonly sharedBranch?: SharedBranch;
  /**
   * How the parameters group for the optimizer: layer ids for layer-wise lr decay and the
   * parameters without weight decay (timm's `group_matcher` / `no_weight_decay`). Absent: timm's
   * generic no-decay rule, and layer decay is refused.
   */
  paramGroups?(): ParamGroups;
  dispose(): void;
}
