/**
 * Suspending tfjs' gradient tape.
 *
 * tfjs keeps one tape per outermost `gradients()` call: a nested call records onto it and its
 * saved tensors live until the outermost call ends (that is how higher-order gradients work).
 * MaskSub's shared branch needs the opposite: the branch's tape stays open across both passes,
 * while each pass takes its gradients on a tape of its own and releases its graph at once.
 * `outsideTape` runs a function as if no tape were open, then puts the open one back.
 *
 * This reads two fields of the engine's state (tfjs-core 4.x: `activeTape`, `gradientDepth`);
 * a tfjs without them is refused with an error rather than recorded onto silently. The same goes
 * for `opWithInputGradients`, which calls the engine's `runKernelFunc`.
 */
import { tf } from './tf.js';

interface TapeState {
  activeTape: unknown[] | null;
  gradientDepth: number;
}

function tapeState(): TapeState {
  const state = (tf.engine() as unknown as { state?: Partial<TapeState> }).state;
  if (!state || typeof state.gradientDepth !== 'number' || !('activeTape' in state)) {
    throw new Error(`outsideTape: this tfjs-core (${tf.version_core}) has no engine.state.activeTape / gradientDepth; masksub needs tfjs-core 4.x`);
  }
  return state as TapeState;
}

/** Runs `f` with the open gradient tape (if any) suspended: `f`'s ops are not recorded on it. */
export function outsideTape<T>(f: () => T): T {
  const state = tapeState();
  const { activeTape, gradientDepth } = state;
  state.activeTape = null;
  state.gradientDepth = 0;
  try {
    return f();
  } finally {
    state.activeTape = activeTape;
    state.gradientDepth = gradientDepth;
  }
}

/** Whether ops run now are recorded for a gradient (tfjs' isTapeOn: inside a gradients() forward). */
export function tapeRecording(): boolean {
  // (activeTape exists only once a tape has been opened: only the depth is asked for here.)
  const depth = (tf.engine() as unknown as { state?: { gradientDepth?: unknown } }).state?.gradientDepth;
  if (typeof depth !== 'number') throw new Error(`tapeRecording: this tfjs-core (${tf.version_core}) has no engine.state.gradientDepth; masksub needs tfjs-core 4.x`);
  return depth > 0;
}

/** The engine method behind tf.customGrad (runtime-public in tfjs-core 4.x, private in its d.ts). */
interface KernelFuncEngine {
  runKernelFunc(params: {
    forwardFunc: (backend: unknown, save: tf.GradSaveFunc) => tf.Tensor;
    backwardsFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => Record<string, () => tf.Tensor>;
    inputs: tf.NamedTensorMap;
  }): tf.Tensor;
}

/**
 * An op whose gradient is one thunk per input, as a registered kernel's is. tf.customGrad computes
 * every input's gradient as soon as the backward reaches the op; the walk then discards those it
 * was not asked for (an input that is data, such as an image's patches). Here the walk runs only
 * the thunks of inputs on a path from what it differentiates. `forward` runs as customGrad's does
 * (its ops are not recorded) and may `save` tensors for `backward`.
 */
export function opWithInputGradients<K extends string>(
  inputs: Record<K, tf.Tensor>,
  forward: (save: tf.GradSaveFunc) => tf.Tensor,
  backward: (dy: tf.Tensor, saved: tf.Tensor[]) => Record<K, () => tf.Tensor>,
): tf.Tensor {
  const engine = tf.engine() as unknown as Partial<KernelFuncEngine>;
  if (typeof engine.runKernelFunc !== 'function') {
    throw new Error(`opWithInputGradients: this tfjs-core (${tf.version_core}) has no engine.runKernelFunc; masksub needs tfjs-core 4.x`);
  }
  return engine.runKernelFunc({ inputs, forwardFunc: (_, save) => forward(save), backwardsFunc: backward });
}
