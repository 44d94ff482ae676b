/**
 * What the fused optimizer-update kernels' tests share (adamw.test.ts, sgd.test.ts): a few
 * updates of an optimizer on one backend, and the check that an update rewrites the variables
 * in place but leaves a block another tensor shares alone.
 */
import { expect } from 'vitest';
import { Rng } from '../../rng.js';
import { tf } from '../../tf.js';
import { createOptimizer, type OptimizerSpec } from '../../optim/optimizer.js';
import { peakAllocationDuring } from '../wasm_heap.js';
import { expectClose } from './compare.js';

function values(rng: Rng, n: number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal() * scale);
}

/**
 * Four updates of `spec` on `backend` over parameters of `shapes` (timm's default decay groups),
 * gradients and learning rate growing with the step; every parameter and slot after the last one.
 */
export async function afterFourUpdates(
  backend: string,
  spec: OptimizerSpec,
  shapes: Record<string, number[]>,
  opts: { seed: number; lr: number },
): Promise<Map<string, Float32Array>> {
  await tf.setBackend(backend);
  const before = tf.memory().numTensors;
  const rng = new Rng(opts.seed);
  const params = new Map<string, tf.Variable>();
  for (const [name, shape] of Object.entries(shapes)) {
    const init = tf.tensor(values(rng, shape.reduce((a, b) => a * b, 1)), shape);
    params.set(name, tf.variable(init, true, `${backend}.${name}`));
    init.dispose();
  }
  const opt = createOptimizer(spec, params, {});
  for (let step = 0; step < 4; step++) {
    const grads = new Map<string, tf.Tensor>();
    for (const [name, p] of params) grads.set(name, tf.tensor(values(rng, p.size, 0.1 * (step + 1)), p.shape));
    opt.step(grads, opts.lr * (step + 1));
    tf.dispose([...grads.values()]);
  }
  const out = new Map<string, Float32Array>();
  for (const [name, p] of params) out.set(name, Float32Array.from(p.dataSync()));
  const state = opt.getState();
  for (const [key, t] of state.tensors) out.set(key, Float32Array.from(t.dataSync()));
  tf.dispose([...state.tensors.values()]);
  opt.dispose();
  for (const p of params.values()) p.dispose();
  expect(tf.memory().numTensors, `tensor leak on ${backend}`).toBe(before);
  return out;
}

/** The same keys, and every array of `got` within 1e-6 of `want`'s largest magnitude (floored at 1e-3). */
export function expectSameState(got: Map<string, Float32Array>, want: Map<string, Float32Array>): void {
  const keys = [...want.keys()].sort();
  expect([...got.keys()].sort()).toEqual(keys);
  for (const key of keys) expectClose([got.get(key)!], [want.get(key)!], 1e-6, key, 1e-3);
}

/**
 * On wasm: an update of `spec` allocates nothing and keeps the parameter's block; once an
 * EMA-style copy shares that block, the next update writes a new one and the copy keeps its values.
 */
export async function expectUpdatesInPlace(spec: OptimizerSpec): Promise<void> {
  await tf.setBackend('wasm');
  const init = tf.tensor([1, 2, 3, 4]);
  const p = tf.variable(init);
  init.dispose();
  const opt = createOptimizer(spec, new Map([['w', p]]), {});
  const g = tf.tensor([0.5, -0.5, 1, -1]);
  const dataId = p.dataId;
  const bytes = tf.memory().numBytes;
  expect(peakAllocationDuring(() => opt.step(new Map([['w', g]]), 0.1))).toBe(0);
  expect(p.dataId).toBe(dataId);
  expect(tf.memory().numBytes).toBe(bytes);
  const after = Array.from(p.dataSync());
  expect(after).not.toEqual([1, 2, 3, 4]);
  const copy = tf.variable(p, false);
  opt.step(new Map([['w', g]]), 0.1);
  expect(Array.from(copy.dataSync())).toEqual(after);
  expect(p.dataId).not.toBe(copy.dataId);
  expect(Array.from(p.dataSync())).not.toEqual(after);
  tf.dispose([p, g, copy]);
  opt.dispose();
}

/** On wasm: the kernel is registered and is the only kernel of an update of `spec`. */
export async function expectOnlyKernel(kernel: string, spec: OptimizerSpec): Promise<void> {
  expect(tf.getKernel(kernel, 'wasm')).toBeDefined();
  await tf.setBackend('wasm');
  const p = tf.variable(tf.ones([3]));
  const opt = createOptimizer(spec, new Map([['w', p]]), {});
  const g = tf.ones([3]);
  const prof = await tf.profile(() => opt.step(new Map([['w', g]]), 0.1));
  expect(prof.kernels.map((k) => k.name)).toEqual([kernel]);
  tf.dispose([p, g]);
  opt.dispose();
}
