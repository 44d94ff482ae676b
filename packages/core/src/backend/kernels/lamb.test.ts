/**
 * The fused LAMB kernel (wasm) against the optimizer's op form on the cpu backend (timm's Lamb):
 * several steps with global-norm clipping on and off, trust clipping, always_adapt and no weight
 * decay, parameters of several shapes, both slots compared; a zero parameter's trust ratio; and
 * the update in place.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../tf.js';
import { createOptimizer, type OptimizerSpec } from '../../optim/optimizer.js';
import { initBackend } from '../select.js';
import { LAMB_UPDATE } from './lamb.js';
import { afterFourUpdates, expectOnlyKernel, expectSameState, expectUpdatesInPlace } from '../testing/update-kernels.js';

beforeAll(async () => {
  delete process.env.MASKSUB_BACKEND;
  await initBackend({ prefer: 'wasm', log: () => {} });
});

const SHAPES: Record<string, number[]> = {
  'blocks.0.attn.qkv.weight': [12, 9],
  'blocks.0.norm1.bias': [9],
  'head.weight': [4, 3, 5],
  cls_token: [1, 1, 6],
};

const SPECS: Record<string, OptimizerSpec> = {
  // The gradients' global norm is above 1 from the first step (afterFourUpdates): clipping acts.
  'timm defaults (global-norm clipping at 1, wd 0.01)': { kind: 'lamb' },
  'no clipping, wd 0.05, betas (0.9, 0.95)': { kind: 'lamb', maxGradNorm: null, weightDecay: 0.05, betas: [0.9, 0.95] },
  'trust clip (LAMBC)': { kind: 'lamb', trustClip: true, weightDecay: 0.02 },
  'always adapt, no weight decay': { kind: 'lamb', alwaysAdapt: true, weightDecay: 0 },
  'no weight decay, not adapted': { kind: 'lamb', weightDecay: 0, maxGradNorm: 0.5 },
};

describe('fused LAMB update on wasm', () => {
  it('is registered and is the only kernel of an unclipped update on wasm', async () => {
    await expectOnlyKernel(LAMB_UPDATE, { kind: 'lamb', maxGradNorm: null });
  });

  for (const [label, spec] of Object.entries(SPECS)) {
    it(`${label}: matches the op form on cpu over four steps (parameters and both slots)`, async () => {
      const cpu = await afterFourUpdates('cpu', spec, SHAPES, { seed: 11, lr: 1e-2 });
      const wasm = await afterFourUpdates('wasm', spec, SHAPES, { seed: 11, lr: 1e-2 });
      expectSameState(wasm, cpu);
    });
  }

  it('a parameter of zeros takes the unscaled update (trust ratio 1), as the op form', async () => {
    const run = async (backend: string) => {
      await tf.setBackend(backend);
      // A 2-D weight: timm's default groups decay it, so its update is adapted.
      const p = tf.variable(tf.zeros([2, 2]));
      const opt = createOptimizer({ kind: 'lamb', maxGradNorm: null, weightDecay: 0.01 }, new Map([['head.weight', p]]), {});
      const g = tf.tensor([[0.5, -0.25], [1, 0]]);
      opt.step(new Map([['head.weight', g]]), 0.1);
      const out = Array.from(p.dataSync());
      tf.dispose([p, g]);
      opt.dispose();
      return out;
    };
    const wasm = await run('wasm');
    // Step 1: m/bc1 = g, sqrt(v/bc2) = |g|: u = g / (|g| + 1e-6), p' = -0.1 u.
    expect(wasm[0]).toBeCloseTo(-0.1, 5);
    expect(wasm[1]).toBeCloseTo(0.1, 5);
    expect(wasm[3]).toBe(0);
    const cpu = await run('cpu');
    for (let i = 0; i < 4; i++) expect(wasm[i]).toBeCloseTo(cpu[i], 6);
  });

  it('updates the variables in place, and a block another tensor shares keeps its values', async () => {
    await expectUpdatesInPlace({ kind: 'lamb', maxGradNorm: null });
  });
});
