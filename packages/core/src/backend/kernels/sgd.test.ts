/**
 * The fused SGD kernel (wasm) against the optimizer's op form on the cpu backend: several steps
 * of plain, momentum, dampened and Nesterov SGD with and without weight decay, parameters of
 * several shapes, the momentum buffer compared too; and the update in place.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../rng.js';
import { tf } from '../../tf.js';
import { createOptimizer, type OptimizerSpec } from '../../optim/optimizer.js';
import { initBackend } from '../select.js';
import { SGD_UPDATE } from './sgd.js';
import { peakAllocationDuring } from '../wasm_heap.js';

beforeAll(async () => {
  delete process.env.MASKSUB_BACKEND;
  await initBackend({ prefer: 'wasm', log: () => {} });
});

const SHAPES: Record<string, number[]> = {
  'layer1.0.conv1.weight': [4, 3, 3, 3],
  'layer1.0.bn1.bias': [4],
  'fc.weight': [10, 4],
};

function values(rng: Rng, n: number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal() * scale);
}

/** Runs 4 SGD steps with `spec` on `backend`; returns every parameter and slot after the last one. */
async function train(backend: string, spec: OptimizerSpec): Promise<Map<string, Float32Array>> {
  await tf.setBackend(backend);
  const before = tf.memory().numTensors;
  const rng = new Rng(7);
  const params = new Map<string, tf.Variable>();
  for (const [name, shape] of Object.entries(SHAPES)) {
    const init = tf.tensor(values(rng, shape.reduce((a, b) => a * b, 1)), shape);
    params.set(name, tf.variable(init, true, `${backend}.${name}`));
    init.dispose();
  }
  // timm's default grouping: the conv and fc weights decay, the 1-D bias does not.
  const opt = createOptimizer(spec, params, {});
  for (let step = 0; step < 4; step++) {
    const grads = new Map<string, tf.Tensor>();
    for (const [name, p] of params) grads.set(name, tf.tensor(values(rng, p.size, 0.1 * (step + 1)), p.shape));
    opt.step(grads, 0.05 * (step + 1));
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

const SPECS: Record<string, OptimizerSpec> = {
  'plain, no momentum': { kind: 'sgd', momentum: 0, weightDecay: 1e-4 },
  'momentum 0.9 with weight decay': { kind: 'sgd', momentum: 0.9, weightDecay: 5e-4 },
  'momentum 0.9, dampening 0.1, no decay': { kind: 'sgd', momentum: 0.9, dampening: 0.1, weightDecay: 0 },
  'Nesterov momentum 0.9 with weight decay': { kind: 'sgd', momentum: 0.9, nesterov: true, weightDecay: 1e-4 },
};

describe('fused SGD update on wasm', () => {
  it('is registered and is the only kernel of an optimizer step on wasm', async () => {
    expect(tf.getKernel(SGD_UPDATE, 'wasm')).toBeDefined();
    await tf.setBackend('wasm');
    const p = tf.variable(tf.ones([3]));
    const opt = createOptimizer({ kind: 'sgd', momentum: 0.9 }, new Map([['w', p]]), {});
    const g = tf.ones([3]);
    const prof = await tf.profile(() => opt.step(new Map([['w', g]]), 0.1));
    expect(prof.kernels.map((k) => k.name)).toEqual([SGD_UPDATE]);
    tf.dispose([p, g]);
    opt.dispose();
  });

  for (const [label, spec] of Object.entries(SPECS)) {
    it(`${label}: matches the op form on cpu over four steps (parameters and buffers)`, async () => {
      const cpu = await train('cpu', spec);
      const wasm = await train('wasm', spec);
      expect([...wasm.keys()].sort()).toEqual([...cpu.keys()].sort());
      if ((spec.momentum ?? 0) > 0) expect([...cpu.keys()].some((k) => k.includes('momentum_buffer'))).toBe(true);
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
  }

  it('the first step sets the buffer to the gradient (torch), then momentum accumulates', async () => {
    await tf.setBackend('wasm');
    const p = tf.variable(tf.tensor([1, 2]));
    const opt = createOptimizer({ kind: 'sgd', momentum: 0.5, dampening: 0.5 }, new Map([['w', p]]), {});
    const g = tf.tensor([1, -1]);
    opt.step(new Map([['w', g]]), 0.1);
    // buf = g (no dampening on the first step); p = p - 0.1 buf
    expect(Array.from(p.dataSync())).toEqual([Math.fround(0.9), Math.fround(2.1)]);
    opt.step(new Map([['w', g]]), 0.1);
    // buf = 0.5 g + 0.5 g = g; p = p - 0.1 g
    const after = p.dataSync();
    expect(after[0]).toBeCloseTo(0.8, 6);
    expect(after[1]).toBeCloseTo(2.2, 6);
    tf.dispose([p, g]);
    opt.dispose();
  });

  it('updates the variables in place, and a block another tensor shares keeps its values', async () => {
    await tf.setBackend('wasm');
    const init = tf.tensor([1, 2, 3, 4]);
    const p = tf.variable(init);
    init.dispose();
    const opt = createOptimizer({ kind: 'sgd', momentum: 0.9 }, new Map([['w', p]]), {});
    const g = tf.tensor([0.5, -0.5, 1, -1]);
    const dataId = p.dataId;
    const bytes = tf.memory().numBytes;
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
