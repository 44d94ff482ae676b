/**
 * Model EMA with timm ModelEmaV2 semantics (DeiT-III, FT-CLIP): a shadow copy of every model
 * tensor, parameters and buffers alike (batch-norm running statistics), started from the model
 * as it is when training begins and moved after every optimizer update:
 * ema = decay * ema + (1 - decay) * w.
 */
import { OptionError, tf } from '@masksub/core';
import { restoreVariables } from './checkpoint/checkpoint.js';

export class ModelEma {
  /** The EMA tensors by checkpoint name (what checkpoints store). */
  readonly tensors = new Map<string, tf.Variable>();

  constructor(
    readonly decay: number,
    private readonly live: ReadonlyMap<string, tf.Variable>,
  ) {
    if (!(decay > 0 && decay < 1)) throw new OptionError('train.ema_decay', `must be in (0, 1), got ${decay}`);
    for (const [name, v] of live) this.tensors.set(name, tf.variable(v, false));
  }

  /** One EMA step toward the live weights (after an optimizer update). */
  update(): void {
    const d = this.decay;
    for (const [name, e] of this.tensors) {
      const w = this.live.get(name)!;
      tf.tidy(() => e.assign(w.dtype === 'float32' ? tf.add(tf.mul(e, d), tf.mul(w, 1 - d)) : w));
    }
  }

  /** Takes the EMA tensors of a checkpoint (bit for bit). */
  restore(tensors: ReadonlyMap<string, tf.Tensor>, source: string): void {
    restoreVariables(this.tensors, tensors, `${source} (model EMA)`);
  }

  /**
   * Runs `f` with the EMA weights in the model's variables (to evaluate or save the EMA model),
   * then puts the live weights back untouched. `f` must only read the model.
   */
  async swapIn<T>(f: () => Promise<T> | T): Promise<T> {
    // The clones keep the live buffers alive while the variables point at the EMA's.
    const saved = new Map([...this.live].map(([name, v]) => [name, tf.clone(v)]));
    for (const [name, v] of this.live) v.assign(this.tensors.get(name)!);
    try {
      return await f();
    } finally {
      for (const [name, v] of this.live) v.assign(saved.get(name)!);
      tf.dispose([...saved.values()]);
    }
  }

  dispose(): void {
    tf.dispose([...this.tensors.values()]);
    this.tensors.clear();
  }
}

/** An evaluation's metrics under the `ema_` prefix (metrics.jsonl keys of the EMA model). */
export function emaMetrics(metrics: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(metrics).map(([k, v]) => [`ema_${k}`, v]));
}
