/**
 * tfjs' `Engine.gradients` (tfjs-core 4.22, engine.ts and tape.ts) with one change: memory.
 *
 * tfjs walks the tape backward and keeps every intermediate gradient (the dy of each op) and
 * every tensor the forward saved for the backward until the whole backward has run: a ViT step
 * at batch 64 then holds all forward activations plus all activation gradients at once (the
 * step's heap peak, measured by `pnpm bench:memory`: 925 MiB, of which 512 MiB gradients that
 * were dead long before). Here, once an op's gradient has been computed, the gradients of its
 * outputs and the tensors it saved are released at once (gradients only when no other entry of
 * the map holds the same tensor: an op whose gradient returns dy itself passes it on). The
 * arithmetic, the order of the ops and the results are tfjs' own.
 *
 * Reshape saves nothing: tfjs' Reshape gradient keeps its input alive from the forward to the
 * backward only to read its shape, which holds every reshaped tensor (in the ViT, each linear
 * layer's output: q, k, v, proj, fc2; a fifth of the step's peak); the walk takes the shape from
 * the tape node's input instead.
 *
 * Higher-order gradients (gradientDepth > 0: a gradient computed inside another gradient) keep
 * tfjs' behaviour: the outer tape still needs the saved tensors.
 */
import * as tf from '@tensorflow/tfjs';

/**
 * How the walk adds a gradient onto a partial sum it owns and frees right after: `tf.add` until
 * the wasm kernels register, which install backend/kernels/add_into.ts' in-place sum (set here
 * rather than imported: the backend's modules import tf.ts, which installs this walk).
 */
let addOwned: (sum: tf.Tensor, addend: tf.Tensor) => tf.Tensor = (sum, addend) => tf.add(sum, addend);

/** Installs the sum the walk uses for partial sums it owns (see {@link addOwned}). */
export function setOwnedSum(sum: (sum: tf.Tensor, addend: tf.Tensor) => tf.Tensor): void {
  addOwned = sum;
}

interface TapeNode {
  id: number;
  kernelName: string;
  outputs: tf.Tensor[];
  inputs: Record<string, tf.Tensor>;
  gradient?: (dys: (tf.Tensor | null)[]) => Record<string, () => tf.Tensor>;
  saved?: tf.Tensor[];
}

/** The members of tfjs' Engine that `gradients` uses (runtime-public, private in its d.ts). */
interface EngineInternals {
  state: { activeTape: TapeNode[] | null; gradientDepth: number };
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T;
  startTape(): void;
  endTape(): void;
  tidy<T extends tf.TensorContainer>(name: string, fn: () => T): T;
  gradients: GradientsFn;
  leanGradientsInstalled?: boolean;
  /** tfjs' own method, kept so tests can compare the two. */
  tfjsGradients?: GradientsFn;
}

type GradientsFn = (f: () => tf.Tensor, xs: tf.Tensor[], dy?: tf.Tensor, allowNoGradients?: boolean) => { value: tf.Tensor; grads: tf.Tensor[] };

/** tfjs' getFilteredNodesXToY: the tape nodes on a path from some x to y, inputs pruned to those from x. */
function filteredNodesXToY(tape: TapeNode[], xs: tf.Tensor[], y: tf.Tensor): TapeNode[] {
  const tensorsFromX: Record<number, boolean> = {};
  const nodesFromX: Record<number, boolean> = {};
  for (const x of xs) tensorsFromX[x.id] = true;
  for (const node of tape) {
    for (const inputName in node.inputs) {
      if (tensorsFromX[node.inputs[inputName].id]) {
        for (const output of node.outputs) tensorsFromX[output.id] = true;
        nodesFromX[node.id] = true;
        break;
      }
    }
  }
  const tensorsLeadToY: Record<number, boolean> = { [y.id]: true };
  const nodesToY: Record<number, boolean> = {};
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i];
    if (node.outputs.some((o) => tensorsLeadToY[o.id])) {
      for (const inputName in node.inputs) {
        tensorsLeadToY[node.inputs[inputName].id] = true;
        nodesToY[node.id] = true;
      }
    }
  }
  const filtered: TapeNode[] = [];
  for (const node of tape) {
    if (!(nodesFromX[node.id] && nodesToY[node.id])) continue;
    const prunedInputs: Record<string, tf.Tensor> = {};
    for (const inputName in node.inputs) {
      const input = node.inputs[inputName];
      if (tensorsFromX[input.id]) prunedInputs[inputName] = input;
    }
    filtered.push({ ...node, inputs: prunedInputs, outputs: node.outputs });
  }
  return filtered;
}

/** Tensor id -> its accumulated gradient, counting how many entries hold each gradient tensor. */
class GradientMap {
  private readonly byId = new Map<number, tf.Tensor>();
  private readonly holders = new Map<tf.Tensor, number>();

  constructor(private readonly keepAlive: ReadonlySet<tf.Tensor>) {}

  get(id: number): tf.Tensor | undefined {
    return this.byId.get(id);
  }

  set(id: number, t: tf.Tensor): void {
    const prev = this.byId.get(id);
    this.byId.set(id, t);
    this.holders.set(t, (this.holders.get(t) ?? 0) + 1);
    if (prev !== undefined) this.unhold(prev);
  }

  /** Drops the entry of `id` (its op has consumed it); the tensor is freed when nothing else holds it. */
  release(id: number): void {
    const t = this.byId.get(id);
    if (t === undefined) return;
    this.byId.delete(id);
    this.unhold(t);
  }

  /** Whether exactly one entry holds `t` and the caller does not keep it (setting that entry frees it). */
  holdsAlone(t: tf.Tensor): boolean {
    return this.holders.get(t) === 1 && !this.keepAlive.has(t);
  }

  /** Frees a tensor no entry holds (a partial gradient once it has been summed in). */
  disposeIfUnheld(t: tf.Tensor): void {
    if (!this.holders.has(t) && !this.keepAlive.has(t)) t.dispose();
  }

  private unhold(t: tf.Tensor): void {
    const n = (this.holders.get(t) ?? 1) - 1;
    if (n > 0) {
      this.holders.set(t, n);
      return;
    }
    this.holders.delete(t);
    if (!this.keepAlive.has(t)) t.dispose();
  }
}

function accumulate(grads: GradientMap, x: tf.Tensor, dx: tf.Tensor): void {
  const current = grads.get(x.id);
  if (current === undefined) {
    grads.set(x.id, dx);
  } else {
    // A partial sum only this entry holds is freed by the set below: the sum may take its block.
    grads.set(x.id, grads.holdsAlone(current) ? addOwned(current, dx) : tf.add(current, dx));
    grads.disposeIfUnheld(dx);
  }
}

/**
 * Gradients the walk adds its own onto (gradientsOnto): each x's prior gradient waits until the
 * walk has visited the last tape node that reads x, then is added to x's finished gradient, so a
 * prior gradient and its partial sum never both stay alive longer than that one add.
 */
class PriorGradients {
  private readonly pending = new Map<number, { prior: tf.Tensor; uses: number }>();

  constructor(xs: readonly tf.Tensor[], priors: readonly (tf.Tensor | null)[], tape: readonly TapeNode[]) {
    xs.forEach((x, i) => {
      const prior = priors[i];
      if (prior) this.pending.set(x.id, { prior, uses: 0 });
    });
    for (const node of tape) for (const name in node.inputs) this.count(node.inputs[name].id, 1);
  }

  /** After the walk has run `node`'s gradient: adds the prior of every input now finished. */
  visited(node: TapeNode, grads: GradientMap): void {
    for (const name in node.inputs) {
      const id = node.inputs[name].id;
      if (this.count(id, -1) !== 0) continue;
      const { prior } = this.pending.get(id)!;
      this.pending.delete(id);
      const own = grads.get(id);
      // prior + own, in that order: the sum a caller would have taken after the walk, bit for bit.
      grads.set(id, own === undefined ? prior : addOwned(prior, own));
      if (own !== undefined) prior.dispose();
    }
  }

  /** The prior of an x no tape node reads (its gradient is the prior alone), else undefined. */
  unread(id: number): tf.Tensor | undefined {
    return this.pending.get(id)?.prior;
  }

  private count(id: number, by: number): number | undefined {
    const entry = this.pending.get(id);
    if (entry === undefined) return undefined;
    entry.uses += by;
    return entry.uses;
  }
}

function backpropagate(
  grads: GradientMap,
  tape: TapeNode[],
  xIds: ReadonlySet<number>,
  tidy: (f: () => tf.Tensor) => tf.Tensor,
  releaseSaved: boolean,
  priors: PriorGradients | null,
): void {
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i];
    const dys = node.outputs.map((o) => grads.get(o.id) ?? null);
    if (node.gradient == null) throw new Error(`Cannot compute gradient: gradient function not found for ${node.kernelName}.`);
    if (node.kernelName === tf.Reshape) {
      // The gradient of a reshape is dy in the input's shape (the input itself was not saved).
      const x = node.inputs.x;
      if (x !== undefined && dys[0] !== null) accumulate(grads, x, tidy(() => tf.reshape(dys[0]!, x.shape)));
      for (const o of node.outputs) if (!xIds.has(o.id)) grads.release(o.id);
      priors?.visited(node, grads);
      continue;
    }
    const inputGradients = node.gradient(dys);
    for (const inputName in node.inputs) {
      if (!(inputName in inputGradients)) {
        throw new Error(`Cannot backprop through input ${inputName}. Available gradients found: ${Object.keys(inputGradients)}.`);
      }
      const dx = tidy(() => inputGradients[inputName]());
      if (dx.dtype !== 'float32') {
        throw new Error(`Error in gradient for op ${node.kernelName}. The gradient of input ${inputName} must have 'float32' dtype, but has '${dx.dtype}'`);
      }
      const x = node.inputs[inputName];
      if (!tf.util.arraysEqual(dx.shape, x.shape)) {
        throw new Error(
          `Error in gradient for op ${node.kernelName}. The gradient of input '${inputName}' has shape '${dx.shape}', which does not match the shape of the input '${x.shape}'`,
        );
      }
      accumulate(grads, x, dx);
    }
    // This op's outputs have no consumer left on the tape (it is walked in reverse order).
    // (An output that is also one of xs keeps its gradient: it is returned.)
    for (const o of node.outputs) if (!xIds.has(o.id)) grads.release(o.id);
    if (releaseSaved) for (const t of node.saved ?? []) t.dispose();
    priors?.visited(node, grads);
  }
}

/** The lean walk: tfjs' Engine.gradients, releasing as it goes; with `priors`, adding onto them. */
function leanGradients(
  e: EngineInternals,
  f: () => tf.Tensor,
  xs: tf.Tensor[],
  dy: tf.Tensor | undefined,
  allowNoGradients: boolean,
  priors: readonly (tf.Tensor | null)[] | null,
): { value: tf.Tensor; grads: tf.Tensor[]; reached: boolean } {
  tf.util.assert(xs.length > 0, () => 'gradients() received an empty list of xs.');
  if (dy != null && dy.dtype !== 'float32') throw new Error(`dy must have 'float32' dtype, but has '${dy.dtype}'`);
  const y = e.scopedRun(
    () => e.startTape(),
    () => e.endTape(),
    () => e.tidy('forward', f),
  );
  tf.util.assert(y instanceof tf.Tensor, () => 'The result y returned by f() must be a tensor.');
  const filteredTape = filteredNodesXToY(e.state.activeTape!, xs, y);
  if (!allowNoGradients && filteredTape.length === 0 && xs.length > 0) {
    throw new Error('Cannot compute gradient of y=f(x) with respect to x. Make sure that the f you passed encloses all operations that lead from x to y.');
  }
  return e.tidy('backward', () => {
    // The caller's dy stays the caller's; the gradient tensors of xs are what we return.
    const grads = new GradientMap(new Set(dy != null ? [dy] : []));
    grads.set(y.id, dy ?? tf.ones(y.shape));
    const outermost = e.state.gradientDepth === 0;
    const pending = priors?.some((p) => p !== null) ? new PriorGradients(xs, priors, filteredTape) : null;
    backpropagate(grads, filteredTape, new Set(xs.map((x) => x.id)), (g) => e.tidy('gradient', g), outermost, pending);
    const result = xs.map((x) => grads.get(x.id) ?? pending?.unread(x.id)) as tf.Tensor[];
    if (outermost) {
      for (const node of e.state.activeTape!) for (const t of node.saved ?? []) t.dispose();
      e.state.activeTape = null;
    }
    // (With priors the result holds them even where the tape reached nothing: `reached` says whether it did.)
    return { value: y, grads: result, reached: filteredTape.length > 0 };
  }) as { value: tf.Tensor; grads: tf.Tensor[]; reached: boolean };
}

/**
 * The gradients of `f` with respect to `xs`, each added onto `priors[i]` (null: nothing to add)
 * as soon as the walk has finished xs[i]'s own: `prior + own`, the sum a caller would take after
 * the walk, with the same result, without both sets of gradients alive at the end of the walk.
 * MaskSub's sub pass adds onto the main pass's gradients this way (one set of parameter
 * gradients held at the end of a step instead of two). The priors are consumed; `grads[i]` is
 * the prior itself where the tape never reads xs[i], and `reached` says whether it read any x.
 * With every prior null it is the engine's gradients (allowing no gradients) plus `reached`.
 */
export function gradientsOnto(
  f: () => tf.Tensor,
  xs: tf.Tensor[],
  priors: readonly (tf.Tensor | null)[],
): { value: tf.Tensor; grads: tf.Tensor[]; reached: boolean } {
  if (priors.length !== xs.length) throw new Error(`gradientsOnto: ${priors.length} priors for ${xs.length} xs`);
  const e = tf.engine() as unknown as EngineInternals;
  if (!e.leanGradientsInstalled) throw new Error('gradientsOnto needs the lean gradients installed on the engine (core/src/tf.ts)');
  return leanGradients(e, f, xs, undefined, true, priors);
}

/** Replaces the engine's `gradients` (used by tf.grad(s), tf.valueAndGrad(s), tf.variableGrads) with the lean one. Idempotent. */
export function installLeanGradients(engine: object = tf.engine()): void {
  const e = engine as unknown as EngineInternals;
  if (e.leanGradientsInstalled) return;
  e.leanGradientsInstalled = true;
  e.tfjsGradients = e.gradients;
  tf.registerGradient({
    kernelName: tf.Reshape,
    inputsToSave: [],
    gradFunc: () => {
      throw new Error("Reshape's gradient is computed inside masksub's gradient walk (core/src/lean-gradients.ts); tfjs' own Engine.gradients cannot run it");
    },
  });
  e.gradients = function gradients(f, xs, dy, allowNoGradients = false) {
    const { value, grads } = leanGradients(e, f, xs, dy, allowNoGradients, null);
    return { value, grads };
  };
}
