/** Global-norm gradient clipping with torch.nn.utils.clip_grad_norm_ semantics. */
import { tf } from '../tf.js';
import { OptionError } from '../errors.js';

export interface ClippedGrads {
  /** New tensors (the caller disposes them); the input gradients are left untouched. */
  grads: Map<string, tf.Tensor>;
  /** The global L2 norm before clipping (a number for logging; NaN/Infinity if a gradient is). */
  norm: number;
}

/** L2 norm over all gradients together, as a scalar tensor (no host sync). */
export function globalGradNorm(grads: ReadonlyMap<string, tf.Tensor>): tf.Scalar {
  return tf.tidy(() => {
    let sumSq: tf.Tensor = tf.scalar(0);
    for (const g of grads.values()) sumSq = tf.add(sumSq, tf.sum(tf.square(tf.cast(g, 'float32'))));
    return tf.sqrt(sumSq) as tf.Scalar;
  });
}

/** {@link globalGradNorm} read back as a number (one host sync). */
export function globalGradNormValue(grads: ReadonlyMap<string, tf.Tensor>): number {
  const normTensor = globalGradNorm(grads);
  const norm = normTensor.dataSync()[0];
  normTensor.dispose();
  return norm;
}

/**
 * Scales all gradients by min(1, maxNorm / (norm + 1e-6)) like PyTorch, so the update direction
 * is kept and only its length is bounded. Non-finite norms propagate (as PyTorch does without
 * error_if_nonfinite) so the caller can see and skip the step. `knownNorm` is the norm when the
 * caller has already computed it (saves a second pass and host sync).
 */
export function clipGradNorm(grads: ReadonlyMap<string, tf.Tensor>, maxNorm: number, knownNorm?: number): ClippedGrads {
  if (!(maxNorm > 0)) throw new OptionError('clipGrad', `max norm must be > 0, got ${maxNorm}`);
  const norm = knownNorm ?? globalGradNormValue(grads);
  const coef = Math.min(1, maxNorm / (norm + 1e-6));
  const out = new Map<string, tf.Tensor>();
  for (const [name, g] of grads) {
    // tf.clone shares the buffer (no copy) yet gives the caller its own handle to dispose.
    out.set(name, coef >= 1 ? tf.clone(g) : tf.tidy(() => tf.mul(g, coef)));
  }
  return { grads: out, norm };
}
