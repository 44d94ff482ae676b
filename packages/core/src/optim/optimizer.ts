/**
 * AdamW, SGD (momentum/nesterov) and LAMB over a `Map<string, tf.Variable>` of named
 * parameters, with the update rules of torch.optim.AdamW, torch.optim.SGD and timm's Lamb, so a
 * recipe's hyper-parameters mean the same thing here as in the papers' code.
 *
 * Why not tf.train.*: those have no decoupled weight decay, no per-parameter decay/lr-scale,
 * and their slot variables cannot be saved and restored by parameter name.
 */
import { tf } from '../tf.js';
import { OptionError, TensorMismatchError } from '../errors.js';
import { ADAMW_UPDATE, type AdamWUpdateAttrs } from '../backend/kernels/adamw.js';
import { SGD_UPDATE, type SgdUpdateAttrs } from '../backend/kernels/sgd.js';
import { LAMB_UPDATE, type LambUpdateAttrs } from '../backend/kernels/lamb.js';
import { globalGradNorm } from './clip.js';
import { resolveParamHypers, type ParamGroupRules, type ParamHyper } from './param-groups.js';

/** The optimizers masksub implements (the trainer's `optimizer.kind` takes the same list). */
export const OPTIMIZER_KINDS = ['adamw', 'sgd', 'lamb'] as const;
export type OptimizerKind = (typeof OPTIMIZER_KINDS)[number];

export interface OptimizerSpec {
  kind: OptimizerKind;
  /** Learning rate used when step() is called without one (normally the schedule supplies it). */
  lr?: number;
  /** Defaults: adamw 0.01 (torch), lamb 0.01 (timm), sgd 0. */
  weightDecay?: number;
  /** adamw/lamb. Default [0.9, 0.999]. */
  betas?: [number, number];
  /** adamw default 1e-8 (torch), lamb 1e-6 (timm). */
  eps?: number;
  /** sgd. Default 0.9 (timm's create_optimizer default). */
  momentum?: number;
  /** sgd. Default 0. */
  dampening?: number;
  /** sgd. Default false. */
  nesterov?: boolean;
  /** lamb: gradients are divided by max(globalNorm / maxGradNorm, 1) first. timm default 1.0; null = off. */
  maxGradNorm?: number | null;
  /** lamb: clip the trust ratio at 1 (LAMBC). Default false. */
  trustClip?: boolean;
  /** lamb: adapt (trust ratio) also parameters without weight decay. Default false (timm). */
  alwaysAdapt?: boolean;
}

/** JSON side of the optimizer state (what is not a tensor). */
export interface OptimizerScalars {
  /** Number of step() calls. */
  step: number;
  /** Updates each parameter has received (PyTorch keeps a step per parameter for bias correction). */
  paramSteps: Record<string, number>;
}

/** Everything needed to resume: slot tensors keyed `<slot>.<parameter name>`, plus scalars. */
export interface OptimizerState {
  kind: OptimizerKind;
  scalars: OptimizerScalars;
  tensors: Map<string, tf.Tensor>;
}

export interface Optimizer {
  readonly kind: OptimizerKind;
  /** Number of step() calls so far. */
  readonly stepCount: number;
  /** Weight decay and lr scale this parameter is updated with. */
  paramHyper(name: string): ParamHyper;
  /**
   * One update of every parameter that has a gradient (parameters without one are left alone,
   * as PyTorch does for `grad is None`). Gradients stay owned by the caller.
   */
  step(grads: ReadonlyMap<string, tf.Tensor>, lr?: number): void;
  /** A snapshot; the tensors are new handles the caller must dispose. */
  getState(): OptimizerState;
  /** Copies a snapshot in (the caller keeps ownership of its tensors). */
  setState(state: OptimizerState): void;
  /** Frees the slot variables. */
  dispose(): void;
}

interface ResolvedSpec {
  kind: OptimizerKind;
  lr: number | undefined;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  momentum: number;
  dampening: number;
  nesterov: boolean;
  maxGradNorm: number | null;
  trustClip: boolean;
  alwaysAdapt: boolean;
}

function resolveSpec(spec: OptimizerSpec): ResolvedSpec {
  const kind = spec.kind;
  if (!OPTIMIZER_KINDS.includes(kind)) {
    throw new OptionError('optimizer', `unknown kind ${JSON.stringify(kind)} (${OPTIMIZER_KINDS.join(', ')})`);
  }
  const [beta1, beta2] = spec.betas ?? [0.9, 0.999];
  const r: ResolvedSpec = {
    kind,
    lr: spec.lr,
    weightDecay: spec.weightDecay ?? (kind === 'sgd' ? 0 : 0.01),
    beta1,
    beta2,
    eps: spec.eps ?? (kind === 'lamb' ? 1e-6 : 1e-8),
    momentum: spec.momentum ?? 0.9,
    dampening: spec.dampening ?? 0,
    nesterov: spec.nesterov ?? false,
    maxGradNorm: spec.maxGradNorm === undefined ? 1.0 : spec.maxGradNorm,
    trustClip: spec.trustClip ?? false,
    alwaysAdapt: spec.alwaysAdapt ?? false,
  };
  const inRange = (option: string, v: number, lo: number, hi: number, hiOpen: boolean) => {
    if (!(Number.isFinite(v) && v >= lo && (hiOpen ? v < hi : v <= hi))) {
      throw new OptionError(option, `must be in [${lo}, ${hi}${hiOpen ? ')' : ']'}, got ${v}`);
    }
  };
  if (r.lr !== undefined) inRange('lr', r.lr, 0, Infinity, true);
  inRange('weightDecay', r.weightDecay, 0, Infinity, true);
  inRange('betas[0]', r.beta1, 0, 1, true);
  inRange('betas[1]', r.beta2, 0, 1, true);
  inRange('eps', r.eps, 0, Infinity, true);
  inRange('momentum', r.momentum, 0, Infinity, true);
  inRange('dampening', r.dampening, 0, 1, false);
  if (r.nesterov && (r.momentum <= 0 || r.dampening !== 0)) {
    // Same restriction as torch.optim.SGD.
    throw new OptionError('nesterov', 'requires momentum > 0 and dampening 0');
  }
  if (r.maxGradNorm !== null) inRange('maxGradNorm', r.maxGradNorm, Number.MIN_VALUE, Infinity, true);
  return r;
}

/** Slot tensors each kind keeps per parameter (names as in PyTorch's optimizer state). */
function slotNames(s: ResolvedSpec): string[] {
  if (s.kind === 'sgd') return s.momentum > 0 ? ['momentum_buffer'] : [];
  return ['exp_avg', 'exp_avg_sq'];
}

function stateKey(slot: string, param: string): string {
  return `${slot}.${param}`;
}

class NamedParamOptimizer implements Optimizer {
  readonly kind: OptimizerKind;
  private readonly spec: ResolvedSpec;
  private readonly hypers: Map<string, ParamHyper>;
  private readonly slots = new Map<string, tf.Variable>();
  private readonly paramSteps = new Map<string, number>();
  private steps = 0;
  private disposed = false;

  constructor(
    spec: OptimizerSpec,
    private readonly params: ReadonlyMap<string, tf.Variable>,
    rules: ParamGroupRules,
  ) {
    this.spec = resolveSpec(spec);
    this.kind = this.spec.kind;
    this.hypers = resolveParamHypers(params, this.spec.weightDecay, rules);
    for (const [name, p] of params) {
      if (p.dtype !== 'float32') {
        throw new OptionError('params', `parameter '${name}' is ${p.dtype}; only float32 parameters can be optimized`);
      }
      this.paramSteps.set(name, 0);
      // Zeros up front: PyTorch creates them lazily, but the values are the same and eager
      // creation keeps getState() complete before the first step.
      for (const slot of slotNames(this.spec)) {
        const zeros = tf.zerosLike(p);
        this.slots.set(stateKey(slot, name), tf.variable(zeros, false));
        zeros.dispose(); // the variable holds its own reference to the data
      }
    }
  }

  get stepCount(): number {
    return this.steps;
  }

  paramHyper(name: string): ParamHyper {
    const h = this.hypers.get(name);
    if (!h) throw new OptionError('param', `'${name}' is not optimized by this optimizer`);
    return h;
  }

  step(grads: ReadonlyMap<string, tf.Tensor>, lr: number | undefined = this.spec.lr): void {
    this.checkAlive();
    if (lr === undefined || !(Number.isFinite(lr) && lr >= 0)) {
      throw new OptionError('lr', `step() needs a finite learning rate >= 0 (from the call or the spec), got ${lr}`);
    }
    this.checkGrads(grads);
    // LAMB's global clipping divisor is computed once over all gradients (timm), on device.
    const clipDivisor =
      this.kind === 'lamb' && this.spec.maxGradNorm !== null ? this.lambClipDivisor(grads, this.spec.maxGradNorm) : null;
    try {
      for (const [name, grad] of grads) {
        const t = this.paramSteps.get(name)! + 1;
        this.paramSteps.set(name, t);
        const h = this.hypers.get(name)!;
        const lrEff = lr * h.lrScale;
        const param = this.params.get(name)!;
        tf.tidy(() => {
          const g = grad.dtype === 'float32' ? grad : tf.cast(grad, 'float32');
          if (this.kind === 'adamw') this.adamw(name, param, g, t, lrEff, h.weightDecay);
          else if (this.kind === 'sgd') this.sgd(name, param, g, t, lrEff, h.weightDecay);
          else this.lamb(name, param, g, clipDivisor, t, lrEff, h.weightDecay);
        });
      }
    } finally {
      clipDivisor?.dispose();
    }
    this.steps++;
  }

  /** torch.optim.AdamW: decay p *= 1 - lr*wd first, then the bias-corrected Adam step. */
  private adamw(name: string, p: tf.Variable, g: tf.Tensor, t: number, lr: number, wd: number): void {
    const { beta1, beta2, eps } = this.spec;
    const m = this.slot('exp_avg', name);
    const v = this.slot('exp_avg_sq', name);
    const bc1 = 1 - Math.pow(beta1, t);
    const bc2 = 1 - Math.pow(beta2, t);
    if (hasFusedUpdate(ADAMW_UPDATE)) {
      // One kernel instead of ~14 (see backend/kernels/adamw.ts); same formula.
      const attrs: AdamWUpdateAttrs = { beta1, beta2, eps, lr, weightDecay: wd, biasCorrection1: bc1, biasCorrection2: bc2 };
      const [pOut, mOut, vOut] = tf.engine().runKernel(ADAMW_UPDATE, { param: p, grad: g, m, v }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
      m.assign(mOut);
      v.assign(vOut);
      p.assign(pOut);
      return;
    }
    const mNew = tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1));
    const vNew = tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2));
    const denom = tf.add(tf.div(tf.sqrt(vNew), Math.sqrt(bc2)), eps);
    const decayed = wd !== 0 ? tf.mul(p, 1 - lr * wd) : p;
    const pNew = tf.sub(decayed, tf.mul(tf.div(mNew, denom), lr / bc1));
    m.assign(mNew);
    v.assign(vNew);
    p.assign(pNew);
  }

  /** torch.optim.SGD: coupled decay (g += wd*p), buffer = g on the first step, optional nesterov. */
  private sgd(name: string, p: tf.Variable, g: tf.Tensor, t: number, lr: number, wd: number): void {
    const { momentum, dampening, nesterov } = this.spec;
    if (hasFusedUpdate(SGD_UPDATE)) {
      // One kernel instead of 4-7, p and the buffer rewritten in place (backend/kernels/sgd.ts); same formula.
      const attrs: SgdUpdateAttrs = { lr, weightDecay: wd, momentum, dampening, nesterov, firstStep: t === 1 };
      const buf = momentum > 0 ? this.slot('momentum_buffer', name) : undefined;
      const inputs: tf.NamedTensorMap = buf ? { param: p, grad: g, buf } : { param: p, grad: g };
      const [pOut, bufOut] = tf.engine().runKernel(SGD_UPDATE, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
      if (buf) buf.assign(bufOut);
      p.assign(pOut);
      return;
    }
    let d = wd !== 0 ? tf.add(g, tf.mul(p, wd)) : g;
    if (momentum > 0) {
      const buf = this.slot('momentum_buffer', name);
      const bufNew = t === 1 ? d : tf.add(tf.mul(buf, momentum), tf.mul(d, 1 - dampening));
      buf.assign(bufNew);
      d = nesterov ? tf.add(d, tf.mul(bufNew, momentum)) : bufNew;
    }
    p.assign(tf.sub(p, tf.mul(d, lr)));
  }

  /**
   * timm's Lamb: Adam direction (bias corrected, grad averaging), plus wd*p, scaled by the trust
   * ratio ||p|| / ||update|| (1 where either norm is 0) for parameters with weight decay.
   */
  private lamb(name: string, p: tf.Variable, grad: tf.Tensor, clipDivisor: tf.Scalar | null, t: number, lr: number, wd: number): void {
    const { beta1, beta2, eps, trustClip, alwaysAdapt } = this.spec;
    const m = this.slot('exp_avg', name);
    const v = this.slot('exp_avg_sq', name);
    const bc1 = 1 - Math.pow(beta1, t);
    const bc2 = 1 - Math.pow(beta2, t);
    if (hasFusedUpdate(LAMB_UPDATE)) {
      // One kernel of two passes instead of ~20, p, m and v rewritten in place (backend/kernels/lamb.ts); same formula.
      const attrs: LambUpdateAttrs = { beta1, beta2, eps, lr, weightDecay: wd, biasCorrection1: bc1, biasCorrection2: bc2, adapt: wd !== 0 || alwaysAdapt, trustClip };
      const inputs: tf.NamedTensorMap = clipDivisor ? { param: p, grad, m, v, clip: clipDivisor } : { param: p, grad, m, v };
      const [pOut, mOut, vOut] = tf.engine().runKernel(LAMB_UPDATE, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
      m.assign(mOut);
      v.assign(vOut);
      p.assign(pOut);
      return;
    }
    const g = clipDivisor ? tf.div(grad, clipDivisor) : grad;
    const mNew = tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1));
    const vNew = tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2));
    const denom = tf.add(tf.div(tf.sqrt(vNew), Math.sqrt(bc2)), eps);
    let update = tf.div(tf.div(mNew, bc1), denom);
    if (wd !== 0) update = tf.add(update, tf.mul(p, wd));
    if (wd !== 0 || alwaysAdapt) {
      const wNorm = tf.sqrt(tf.sum(tf.square(p)));
      const uNorm = tf.sqrt(tf.sum(tf.square(update)));
      const one = tf.onesLike(wNorm);
      // 0/0 in the branch not taken is harmless: where() only selects.
      let ratio = tf.where(tf.greater(wNorm, 0), tf.where(tf.greater(uNorm, 0), tf.div(wNorm, uNorm), one), one);
      if (trustClip) ratio = tf.minimum(ratio, one);
      update = tf.mul(update, ratio);
    }
    m.assign(mNew);
    v.assign(vNew);
    p.assign(tf.sub(p, tf.mul(update, lr)));
  }

  private lambClipDivisor(grads: ReadonlyMap<string, tf.Tensor>, maxGradNorm: number): tf.Scalar {
    return tf.tidy(() => {
      const norm = globalGradNorm(grads);
      return tf.maximum(tf.div(norm, maxGradNorm), 1) as tf.Scalar;
    });
  }

  private slot(slot: string, name: string): tf.Variable {
    return this.slots.get(stateKey(slot, name))!;
  }

  private checkGrads(grads: ReadonlyMap<string, tf.Tensor>): void {
    const unexpected: string[] = [];
    const wrongShape: { name: string; expected: number[]; found: number[] }[] = [];
    for (const [name, g] of grads) {
      const p = this.params.get(name);
      if (!p) unexpected.push(name);
      else if (!sameShape(p.shape, g.shape)) wrongShape.push({ name, expected: p.shape, found: g.shape });
    }
    if (unexpected.length || wrongShape.length) {
      throw new TensorMismatchError('optimizer.step gradients', [], unexpected, wrongShape);
    }
  }

  getState(): OptimizerState {
    this.checkAlive();
    const tensors = new Map<string, tf.Tensor>();
    for (const [key, v] of this.slots) tensors.set(key, tf.clone(v));
    return {
      kind: this.kind,
      scalars: { step: this.steps, paramSteps: Object.fromEntries(this.paramSteps) },
      tensors,
    };
  }

  setState(state: OptimizerState): void {
    this.checkAlive();
    if (state.kind !== this.kind) {
      throw new OptionError('optimizer', `the saved state is for '${state.kind}' but this optimizer is '${this.kind}'`);
    }
    const source = `optimizer state (${this.kind})`;
    const missing: string[] = [];
    const unexpected: string[] = [];
    const wrongShape: { name: string; expected: number[]; found: number[] }[] = [];
    for (const [key, v] of this.slots) {
      const t = state.tensors.get(key);
      if (!t) missing.push(key);
      else if (!sameShape(v.shape, t.shape)) wrongShape.push({ name: key, expected: v.shape, found: t.shape });
    }
    for (const key of state.tensors.keys()) if (!this.slots.has(key)) unexpected.push(key);
    const steps = state.scalars.paramSteps ?? {};
    for (const name of this.params.keys()) if (!Number.isInteger(steps[name])) missing.push(`paramSteps.${name}`);
    for (const name of Object.keys(steps)) if (!this.params.has(name)) unexpected.push(`paramSteps.${name}`);
    if (missing.length || unexpected.length || wrongShape.length) {
      throw new TensorMismatchError(source, missing, unexpected, wrongShape);
    }
    if (!Number.isInteger(state.scalars.step) || state.scalars.step < 0) {
      throw new OptionError('optimizer state step', `must be a non-negative integer, got ${state.scalars.step}`);
    }
    for (const [key, v] of this.slots) {
      const t = state.tensors.get(key)!;
      tf.tidy(() => v.assign(t.dtype === 'float32' ? t : tf.cast(t, 'float32')));
    }
    for (const name of this.params.keys()) this.paramSteps.set(name, steps[name]);
    this.steps = state.scalars.step;
  }

  dispose(): void {
    if (this.disposed) return;
    for (const v of this.slots.values()) v.dispose();
    this.slots.clear();
    this.disposed = true;
  }

  private checkAlive(): void {
    if (this.disposed) throw new Error('optimizer used after dispose()');
  }
}

/** The fused update kernels exist on wasm only (registered with masksub's wasm kernels). */
function hasFusedUpdate(kernel: typeof ADAMW_UPDATE | typeof SGD_UPDATE | typeof LAMB_UPDATE): boolean {
  return tf.getBackend() === 'wasm' && tf.getKernel(kernel, 'wasm') != null;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * An optimizer over named parameters. `rules` decides per-parameter weight decay (default: none
 * on norms, biases, tokens, 1-D params) and layer-wise lr decay (default: none).
 */
export function createOptimizer(
  spec: OptimizerSpec,
  params: ReadonlyMap<string, tf.Variable>,
  rules: ParamGroupRules = {},
): Optimizer {
  return new NamedParamOptimizer(spec, params, rules);
}
