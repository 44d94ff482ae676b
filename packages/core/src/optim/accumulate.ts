/**
 * Gradient accumulation: an update over accumSteps micro-batches sums their gradients and
 * averages them, as one batch of accumSteps times the size (the official MAE/Swin accum_iter
 * loops). Shared by the trainer (train.accum_steps) and the bench, so both do the same arithmetic.
 */
import { tf } from '../tf.js';
import { addOwned } from '../backend/kernels/add_into.js';

/** a + b per parameter (both maps' tensors are consumed; a parameter in only one keeps its gradient). */
export function addGradients(a: Map<string, tf.Tensor>, b: Map<string, tf.Tensor>): Map<string, tf.Tensor> {
  for (const [name, g] of b) {
    const prev = a.get(name);
    if (prev) {
      a.set(name, addOwned(prev, g));
      tf.dispose([prev, g]);
    } else a.set(name, g);
  }
  return a;
}

/** Every gradient times `factor` (the inputs are consumed). */
export function scaleGradients(grads: Map<string, tf.Tensor>, factor: number): Map<string, tf.Tensor> {
  const out = new Map<string, tf.Tensor>();
  for (const [name, g] of grads) {
    out.set(name, tf.mul(g, factor));
    g.dispose();
  }
  return out;
}
