/**
 * The fused AdamW kernel (wasm) against the optimizer's op form on the cpu backend: several steps
 * with and without weight decay, parameters of several shapes, slots and parameters compared.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../rng.js';
import { tf } from '../../tf.js';
import { createOptimizer } from '../../optim/optimizer.js';
import { initBackend } from '../select.js';
import { ADAMW_UPDATE } from './adamw.js';
import { peakAllocationDuring } from '../wasm_heap.js';

beforeAll(async () => {
  delete process.env.MASKSUB_BACKEND;
  await initBackend({ prefer: 'wasm', log: () => {} });
});

const SHAPES: Record<string, number[]> = {
  'blocks.0.weight': [13, 7],
  'blocks.0.bias': [7],
  'head.weight': [5, 3, 2],
  cls_token: [1, 1, 6],
};

function values(rng: Rng, n: number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal() * scale);
}

/** Runs 4 AdamW steps on `backend`; returns every parameter and slot after the last one. */
async function train(backend: string): Promise<Map<string, Float32Array>> {
  await tf.setBackend(backend);
  const before = tf.memory().numTensors;
  const rng = new Rng(42);
  const params = new Map<string, tf.Variable>();
  for (const [name, shape] of Object.entries(SHAPES)) {
    const init = tf.tensor(values(rng, shape.reduce((a, b) => a * b, 1)), shape);
    params.set(name, tf.variable(init, true, `${backend}.${name}`));
    init.dispose();
  }
  const opt = createOptimizer({ kind: 'adamw', weightDecay: 0.05, betas: [0.9, 0.95], eps: 1e-6 }, params, {});
  for (let step = 0; step < 4; step++) {
    const grads = new Map<string, tf.Tensor>();
    for (const [name, p] of params) grads.set(name, tf.tensor(values(rng, p.size, 0.1 * (step + 1)), p.shape));
    opt.step(grads, 1e-2 * (step + 1));
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

describe('fused AdamW update on wasm', () => {
  it('is registered and used by the optimizer on wasm', async () => {
    expect(tf.getKernel(ADAMW_UPDATE, 'wasm')).toBeDefined();
    await tf.setBackend('wasm');
    const p = tf.variable(tf.ones([3]));
    const opt = createOptimizer({ kind: 'adamw' }, new Map([['w', p]]), {});
    const g = tf.ones([3]);
    const prof = await tf.profile(() => opt.step(new Map([['w', g]]), 0.1));
    expect(prof.kernels.map((k) => k.name)).toEqual([ADAMW_UPDATE]);
    tf.dispose([p, g]);
    opt.dispose();
  });

  it('matches the op form on cpu over several steps (parameters and both slots)', async () => {
    const cpu = await train('cpu');
    const wasm = await train('wasm');
    expect([...wasm.keys()].sort()).toEqual([...cpu.keys()].sort());
    for (const [key, want] of cpu) {
      const got = wasm.get(key)!;
      let maxDiff = 0;
      let scale = 0;
      for (let i = 0; i < want.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(got[i] - want[i]));
        scale = Math.max(scale, Math.abs(want[i]));
      }
      expect(maxDiff, `${key}: max diff ${maxDiff} vs scale ${scale}`).toBeLessThanOrEqual(1e-6 * Math.max(scale, 1e-3));
    }
  });

  it('updates the optimizer\'s variables in place, and a block another tensor shares keeps its values', async () => {
    await tf.setBackend('wasm');
    const init = tf.tensor([1, 2, 3, 4]);
    const p = tf.variable(init);
    init.dispose();
    const opt = createOptimizer({ kind: 'adamw', weightDecay: 0 }, new Map([['w', p]]), {});
    const g = tf.tensor([0.5, -0.5, 1, -1]);
    const dataId = p.dataId;
    const bytes = tf.memory().numBytes;
    // No block allocated: p, m and v are rewritten where they are.
    expect(peakAllocationDuring(() => opt.step(new Map([['w', g]]), 0.1))).toBe(0);
    expect(p.dataId).toBe(dataId);
    expect(tf.memory().numBytes).toBe(bytes);
    const after = Array.from(p.dataSync());
    expect(after).not.toEqual([1, 2, 3, 4]);
    // An EMA-style copy shares p's data: the update must not write through it.
    const copy = tf.variable(p, false);
    opt.step(new Map([['w', g]]), 0.1);
    expect(Array.from(copy.dataSync())).toEqual(after);
    expect(p.dataId).not.toBe(copy.dataId);
    expect(Array.from(p.dataSync())).not.toEqual(after);
    tf.dispose([p, g, copy]);
    opt.dispose();
  });
});
