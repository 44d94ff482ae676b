/**
 * withMaskSub(model, options): the two-pass MaskSub training step, nothing architecture-specific.
 *
 * One step = main forward + backward on the clean batch, free that graph, sub forward + backward
 * on the dropped view toward stopgrad(main), add the gradients, one optimizer update. This is
 * what the official code does (two backward passes, one step), so peak memory stays near a
 * standard step's instead of doubling. The main gradient cannot depend on the sub pass: the sub
 * loss only sees a constant copy of the main logits.
 */
import type { DropKind, DropMask, DropOperator } from './contract/drop.js';
import { checkRatio, dropPathSub, dropoutSub } from './contract/drop.js';
import type { BceThresholdScope, LossKind, LossOptions, RelaxedLoss, Targets } from './contract/loss.js';
import { relaxedLoss } from './contract/loss.js';
import type { RatioScheduleSpec, WeightSchedule } from './contract/schedule.js';
import { weightSchedule } from './contract/schedule.js';
import { OptionError } from './errors.js';
import type { ForwardOptions, MaskSubModel, ModelInputs, SharedBranch } from './model.js';
import { Rng } from './rng.js';
import { addOwned } from './backend/kernels/add_into.js';
import { gradientsOnto } from './lean-gradients.js';
import { outsideTape } from './tape.js';
import { tf } from './tf.js';

/**
 * Training variants, the one list the library, the run schema and the CLI help read.
 * - two passes (main on the clean batch with the recipe loss, sub on a dropped view toward
 *   stopgrad(main)): masksub (the model's drop operator), dropsub (dropout), pathsub (drop-path);
 * - one pass on the dropped view with the recipe loss, no clean pass (the paper's "masking only"
 *   setting, Eq. 2 / Table A.5 "single model"): masking, dropout-only, droppath-only;
 * - none: standard training on the clean batch.
 */
export const VARIANTS = ['masksub', 'dropsub', 'pathsub', 'masking', 'dropout-only', 'droppath-only', 'none'] as const;
export type Variant = (typeof VARIANTS)[number];

/** Variants with a clean main pass and a sub pass toward it (loss weights (1/2, 1/2)). */
export function hasSubPass(variant: Variant): boolean {
  return variant === 'masksub' || variant === 'dropsub' || variant === 'pathsub';
}

/** Variants that train a single pass on the dropped view (no clean pass). */
export function isSinglePass(variant: Variant): boolean {
  return variant === 'masking' || variant === 'dropout-only' || variant === 'droppath-only';
}

/**
 * The main loss weight when none is given: 1/2 with a sub pass (the paper's (main + sub) / 2),
 * otherwise 1 (the plain recipe: a baseline must not train on half its loss).
 */
export function defaultMainWeight(variant: Variant): number {
  return hasSubPass(variant) ? 0.5 : 1;
}

/** The sub loss weight when none is given (ignored without a sub pass). */
export const DEFAULT_SUB_WEIGHT = 0.5;
/** The drop ratio when none is given: 50 % as in the paper's image recipes. */
export const DEFAULT_RATIO = 0.5;
/** Drop kinds whose paper ratio differs: BERT replaces 15 % of the tokens with [MASK]. */
export const DEFAULT_RATIO_BY_DROP: Readonly<Partial<Record<DropKind, number>>> = { 'token-masking': 0.15 };

/** The ratio a drop kind gets when none is given (one source for the library, schema and CLI). */
export function defaultRatio(drop: DropKind | undefined): number {
  return (drop && DEFAULT_RATIO_BY_DROP[drop]) ?? DEFAULT_RATIO;
}

/** Anything that applies a gradient map (checkpoint names -> internal-layout gradients). */
export interface GradientApplier {
  step(grads: Map<string, tf.Tensor>, lr: number): void;
}

export interface MaskSubOptions {
  /** One of {@link VARIANTS}; masksub by default. */
  variant?: Variant;
  /** For 'masksub' and 'masking': which of the model's drop operators (default: the adapter's default). */
  drop?: DropKind | DropOperator;
  /** Drop ratio r (constant) or its schedule; 0.5 by default. */
  ratio?: number | RatioScheduleSpec;
  /** Loss weights; (1/2, 1/2) by default with a sub pass, main 1 otherwise ({@link defaultMainWeight}). */
  mainWeight?: number;
  subWeight?: number;
  /** Recipe loss: 'ce' (default), 'bce' (DeiT-III/RSB), 'contrastive' (CLIP), or a custom one. */
  loss?: LossKind | 'contrastive' | RelaxedLoss;
  labelSmoothing?: number;
  /** BCE target threshold and where it applies (see {@link LossOptions}); not with a custom loss object. */
  targetThreshold?: number;
  thresholdScope?: BceThresholdScope;
  /** Seed of the mask/noise stream. */
  seed?: number;
  /**
   * Batch norm of every training pass ('eval' freezes the running statistics; default: the
   * model's own mode, 'train' for ResNets as in the official step).
   */
  bnMode?: 'train' | 'eval';
  /**
   * Compute the model's {@link SharedBranch} (CLIP's text tower) once per step instead of in both
   * passes: the same gradients, less arithmetic. True by default; false runs forward() twice.
   */
  shareBranch?: boolean;
}

export interface Batch {
  inputs: ModelInputs;
  targets: Targets;
}

export interface StepResult {
  /** What is optimised: mainWeight * lossMain + subWeight * lossSub. */
  loss: number;
  /** The recipe's loss of the main pass (unweighted). */
  lossMain: number;
  /** The sub-model's loss toward stopgrad(main) (unweighted; 0 without a sub pass). */
  lossSub: number;
  /** The weights used at this step (the fixtures' loss_main / loss_sub are weight * loss). */
  weights: { main: number; sub: number };
  ratio: number;
}

export interface GradientResult extends StepResult {
  /** Summed gradients of both passes, internal layout, keyed by checkpoint name. Caller disposes. */
  grads: Map<string, tf.Tensor>;
  mainLogits: tf.Tensor;
  subLogits: tf.Tensor | null;
  mask: DropMask | null;
}

/** Drop operators an adapter offers for its models. */
export interface DropOperatorProvider {
  /** The operator used by the 'masksub' variant when none is named. */
  defaultDrop: DropKind;
  dropOperator(kind: DropKind): DropOperator;
}

export class MaskSubTrainer {
  readonly schedule: WeightSchedule;
  readonly loss: RelaxedLoss;
  readonly variant: Variant;
  readonly rng: Rng;
  private readonly drop: DropOperator | null;
  private readonly passOptions: ForwardOptions;
  private readonly branch: SharedBranch | undefined;

  constructor(
    readonly model: MaskSubModel,
    options: MaskSubOptions = {},
    provider?: DropOperatorProvider,
  ) {
    this.variant = options.variant ?? 'masksub';
    if (!(VARIANTS as readonly string[]).includes(this.variant)) {
      throw new OptionError('variant', `unknown variant '${this.variant}' (${VARIANTS.join(', ')})`);
    }
    // The drop operator first: a ratio left unset is the paper's for the operator in use.
    this.drop = this.resolveDrop(options.drop, provider);
    this.schedule = weightSchedule({
      ratio: options.ratio ?? defaultRatio(this.drop?.kind),
      mainWeight: options.mainWeight ?? defaultMainWeight(this.variant),
      subWeight: hasSubPass(this.variant) ? (options.subWeight ?? DEFAULT_SUB_WEIGHT) : 0,
    });
    const smoothing: LossOptions = { labelSmoothing: options.labelSmoothing, targetThreshold: options.targetThreshold, thresholdScope: options.thresholdScope };
    if (typeof options.loss === 'object' && options.targetThreshold !== undefined) {
      throw new OptionError('targetThreshold', 'applies to the built-in BCE loss; a custom loss object binarises its own targets');
    }
    if (typeof options.loss === 'object') this.loss = options.loss;
    else if (options.loss !== undefined) this.loss = relaxedLoss(options.loss, smoothing);
    else this.loss = model.recipeLoss?.(smoothing) ?? relaxedLoss('ce', smoothing);
    // A recipe loss that ignored the threshold (regression, contrastive) must not run as if it applied.
    if (options.targetThreshold !== undefined && this.loss.kind !== 'bce') {
      throw new OptionError('targetThreshold', `binarises BCE targets but the loss is ${this.loss.kind}`);
    }
    this.rng = new Rng(options.seed ?? 0);
    this.passOptions = options.bnMode ? { bnMode: options.bnMode } : {};
    this.branch = options.shareBranch === false ? undefined : model.sharedBranch;
  }

  private resolveDrop(drop: MaskSubOptions['drop'], provider?: DropOperatorProvider): DropOperator | null {
    switch (this.variant) {
      case 'none':
        return null;
      case 'dropsub':
      case 'dropout-only':
        return dropoutSub();
      case 'pathsub':
      case 'droppath-only':
        return dropPathSub();
      case 'masksub':
      case 'masking':
        if (drop && typeof drop === 'object') return drop;
        if (!provider) throw new OptionError('drop', `the ${this.model.architecture} model offers no drop operators; pass one`);
        return provider.dropOperator(drop ?? provider.defaultDrop);
    }
  }

  /**
   * Losses and summed gradients of both passes for one batch. `mask` replays a fixed drop (for
   * parity checks against reference masks); otherwise one is drawn at the scheduled ratio.
   */
  computeGradients(batch: Batch, step = 0, mask?: DropMask): GradientResult {
    const vars = this.model.params.trainable();
    const varList = [...vars.values()];
    const { main: wMain, sub: wSub } = this.schedule.weights(step);
    const ratio = this.schedule.ratio(step);
    checkRatio(ratio);

    // Each pass draws fresh noise for the model's own dropout / drop-path: a fixed seed would
    // repeat the same masks every step. Seeds come from the trainer's RNG, so a resumed run
    // (whose checkpoint holds that RNG's state) draws the same ones.
    const mainSeed = this.rng.nextUint32();
    const subSeed = this.rng.nextUint32();
    if (isSinglePass(this.variant)) return this.singlePass(batch, wMain, ratio, mainSeed, mask);
    const mainOptions: ForwardOptions = { ...this.passOptions, training: true, seed: mainSeed, stepSeed: mainSeed };

    const branch = this.drop && wSub !== 0 ? this.branch : undefined;
    const ctx: PassContext = { batch, vars, varList, wMain, wSub, ratio, mainOptions, subSeed, mask, branch };
    if (!branch) return this.bothPasses(ctx, null).result;

    // With a sub pass, the model's shared branch (SharedBranch) runs once, on a tape of its own
    // that stays open across both passes: each pass differentiates with respect to its output,
    // and one backward of the branch with the summed output gradient gives its parameters'
    // gradients of both losses. The passes run with that tape suspended, so their graphs are
    // still released one after the other (only the branch's activations wait).
    let passes: PassesResult | null = null;
    const back = tf.engine().gradients(
      () => {
        const shared = branch.encode(batch.inputs, mainOptions);
        const done = outsideTape(() => keepPasses(this.bothPasses(ctx, shared)));
        passes = done;
        // d/dshared of sum(shared * dy) is dy: the backward of the branch with the summed gradient.
        return done.branchGrad ? tf.sum(tf.mul(shared, done.branchGrad)) : tf.scalar(0);
      },
      varList,
      undefined,
      true,
    );
    back.value.dispose();
    if (!passes) throw new Error('the MaskSub passes did not run');
    const { result, branchGrad } = passes as PassesResult;
    branchGrad?.dispose();
    addGrads(result.grads, vars, back.grads);
    return result;
  }

  /**
   * The main pass, then the sub pass, each forward and backward with its graph released before
   * the next; with `shared` (the shared branch's output), both read it and also return the
   * summed gradient with respect to it.
   */
  private bothPasses(ctx: PassContext, shared: tf.Tensor | null): PassesResult {
    const { batch, vars, varList, wMain, wSub, ratio, mainOptions, branch } = ctx;
    const forward = (inputs: ModelInputs, options: ForwardOptions, branchOutput: tf.Tensor | null): tf.Tensor =>
      branch && branchOutput ? branch.forwardWith(inputs, branchOutput, options) : this.model.forward(inputs, options);

    // Main pass: its graph is released when the gradients return; only the logits survive.
    let mainLogits: tf.Tensor | null = null;
    const main = passGradients(
      () => {
        const logits = forward(batch.inputs, mainOptions, shared);
        mainLogits = tf.keep(logits);
        return tf.mul(this.loss.main(logits, batch.targets), wMain) as tf.Scalar;
      },
      varList,
      shared,
    );
    const lossMain = wMain === 0 ? 0 : main.value.dataSync()[0] / wMain;
    main.value.dispose();
    if (!mainLogits) throw new Error('main forward produced no logits');
    const mainOut: tf.Tensor = mainLogits;

    if (!this.drop || wSub === 0) {
      const grads = new Map<string, tf.Tensor>();
      addGrads(grads, vars, main.grads);
      const result = { loss: wMain * lossMain, lossMain, lossSub: 0, weights: { main: wMain, sub: wSub }, ratio, grads, mainLogits: mainOut, subLogits: null, mask: null };
      return { result, branchGrad: main.wrtGrad };
    }

    // Sub pass toward a constant teacher: no path back into the main pass.
    const theMask = ctx.mask ?? this.drop.sample(batch.inputs, ratio, this.rng);
    const view = this.drop.apply(batch.inputs, theMask);
    const teacher = this.loss.teacher(mainOut);
    const subOptions: ForwardOptions = { ...this.passOptions, seed: ctx.subSeed, ...view.forward, stepSeed: mainOptions.stepSeed, training: true };
    // A view that changed an input of the branch (a custom drop operator) runs the whole forward.
    const subShared = branch && shared && branch.inputs.every((k) => view.inputs[k] === batch.inputs[k]) ? shared : null;
    let subLogits: tf.Tensor | null = null;
    const sub = passGradients(
      () => {
        const logits = forward(view.inputs, subOptions, subShared);
        subLogits = tf.keep(logits);
        return tf.mul(this.loss.sub(logits, teacher), wSub) as tf.Scalar;
      },
      varList,
      subShared,
      // Each sub-pass gradient is added onto the main pass's as soon as it is complete: one set
      // of parameter gradients at the end of the step, not two (the sums are the same).
      main.grads,
    );
    const lossSub = sub.value.dataSync()[0] / wSub;
    sub.value.dispose();
    teacher.dispose();
    disposeView(batch.inputs, view.inputs, view.forward);
    const grads = new Map<string, tf.Tensor>();
    addGrads(grads, vars, sub.grads);
    const result = { loss: wMain * lossMain + wSub * lossSub, lossMain, lossSub, weights: { main: wMain, sub: wSub }, ratio, grads, mainLogits: mainOut, subLogits, mask: theMask };
    return { result, branchGrad: sumOwned(main.wrtGrad, sub.wrtGrad) };
  }

  /**
   * The "masking only" setting: the model sees only the dropped view and learns the recipe's
   * targets directly. Reported as the main loss (there is no sub-model); the mask is returned.
   */
  private singlePass(batch: Batch, weight: number, ratio: number, seed: number, mask?: DropMask): GradientResult {
    if (!this.drop) throw new Error(`variant ${this.variant} has no drop operator`);
    const vars = this.model.params.trainable();
    const theMask = mask ?? this.drop.sample(batch.inputs, ratio, this.rng);
    const view = this.drop.apply(batch.inputs, theMask);
    let out: tf.Tensor | null = null;
    const res = passGradients(
      () => {
        const logits = this.model.forward(view.inputs, { ...this.passOptions, seed, ...view.forward, stepSeed: seed, training: true });
        out = tf.keep(logits);
        return tf.mul(this.loss.main(logits, batch.targets), weight) as tf.Scalar;
      },
      [...vars.values()],
      null,
    );
    const lossMain = weight === 0 ? 0 : res.value.dataSync()[0] / weight;
    res.value.dispose();
    disposeView(batch.inputs, view.inputs, view.forward);
    if (!out) throw new Error('forward produced no logits');
    const grads = new Map<string, tf.Tensor>();
    addGrads(grads, vars, res.grads);
    return { loss: weight * lossMain, lossMain, lossSub: 0, weights: { main: weight, sub: 0 }, ratio, grads, mainLogits: out, subLogits: null, mask: theMask };
  }

  /** One training step: both passes, one optimizer update. */
  step(batch: Batch, optimizer: GradientApplier, lr: number, step = 0): StepResult {
    const r = this.computeGradients(batch, step);
    optimizer.step(r.grads, lr);
    for (const g of r.grads.values()) g.dispose();
    r.mainLogits.dispose();
    r.subLogits?.dispose();
    return { loss: r.loss, lossMain: r.lossMain, lossSub: r.lossSub, weights: r.weights, ratio: r.ratio };
  }
}

/** What both passes of one step share (computeGradients hands it to bothPasses). */
interface PassContext {
  batch: Batch;
  vars: Map<string, tf.Variable>;
  varList: tf.Variable[];
  wMain: number;
  wSub: number;
  ratio: number;
  mainOptions: ForwardOptions;
  subSeed: number;
  mask: DropMask | undefined;
  branch: SharedBranch | undefined;
}

interface PassesResult {
  result: GradientResult;
  /** The summed gradient of both losses with respect to the shared branch's output (null without one). */
  branchGrad: tf.Tensor | null;
}

/** Marks every tensor a step returns as kept, so the enclosing tape's scope does not dispose them. */
function keepPasses(p: PassesResult): PassesResult {
  for (const g of p.result.grads.values()) tf.keep(g);
  tf.keep(p.result.mainLogits);
  if (p.result.subLogits) tf.keep(p.result.subLogits);
  if (p.branchGrad) tf.keep(p.branchGrad);
  return p;
}

/**
 * One pass's loss and gradients (tf.variableGrads' checks: a scalar loss that some variable
 * reaches), by variable position; with `wrt`, also the gradient with respect to that tensor
 * (a shared branch's output), or null when the loss does not depend on it. With `onto` (an
 * earlier pass's gradients, by the same positions, consumed), each variable's gradient is
 * returned added onto its earlier one (lean-gradients' gradientsOnto).
 */
function passGradients(
  f: () => tf.Scalar,
  vars: tf.Variable[],
  wrt: tf.Tensor | null,
  onto?: readonly (tf.Tensor | null)[],
): { value: tf.Scalar; grads: (tf.Tensor | null)[]; wrtGrad: tf.Tensor | null } {
  const xs = wrt ? [...vars, wrt] : vars;
  const { value, grads, reached } = gradientsOnto(f, xs, xs.map((_, i) => onto?.[i] ?? null));
  if (!reached) {
    throw new Error('Cannot find a connection between any variable and the result of the loss function: the forward pass must use the model\'s parameters');
  }
  if (value.rank !== 0) throw new Error(`a pass's loss must be a scalar, got rank ${value.rank}`);
  return { value: value as tf.Scalar, grads: grads.slice(0, vars.length), wrtGrad: wrt ? (grads[vars.length] ?? null) : null };
}

/** Adds each variable's gradient (by position in `vars`; owned from here on) into `into`, keyed by checkpoint name. */
function addGrads(into: Map<string, tf.Tensor>, vars: Map<string, tf.Variable>, byPosition: readonly (tf.Tensor | null | undefined)[]): void {
  let i = 0;
  for (const name of vars.keys()) {
    const g = byPosition[i++];
    if (!g) continue;
    const prev = into.get(name);
    if (prev) {
      into.set(name, addOwned(prev, g));
      prev.dispose();
      g.dispose();
    } else {
      into.set(name, g);
    }
  }
}

/** a + b, either of which may be absent; the inputs are disposed. */
function sumOwned(a: tf.Tensor | null, b: tf.Tensor | null): tf.Tensor | null {
  if (!a || !b) return a ?? b;
  const sum = addOwned(a, b);
  a.dispose();
  b.dispose();
  return sum;
}

function disposeView(original: ModelInputs, inputs: ModelInputs, forward: ForwardOptions): void {
  for (const [k, t] of Object.entries(inputs)) if (original[k] !== t) t.dispose();
  forward.keepIndices?.dispose();
  forward.maskedPositions?.dispose();
}

/**
 * Wrap a model for MaskSub training. The drop operator comes from the model's adapter (registered
 * in the registry) unless one is passed in `options.drop`.
 */
export function withMaskSub(model: MaskSubModel & Partial<DropOperatorProvider>, options: MaskSubOptions = {}): MaskSubTrainer {
  const provider = model.dropOperator && model.defaultDrop ? (model as DropOperatorProvider) : undefined;
  return new MaskSubTrainer(model, options, provider);
}
