/**
 * The fused LAMB kernel (wasm) against the optimizer's op form on the cpu backend (timm's Lamb):
 * several steps with global-norm clipping on and off, trust clipping, always_adapt and no weight
 * decay, parameters of several shapes, both slots compared; a zero parameter's trust ratio; the
 * update in place; and the native kernel's bits against the JS kernel's.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../tf.js';
import { createOptimizer, type OptimizerSpec } from '../../optim/optimizer.js';
import { initBackend } from '../select.js';
import { Rng } from '../../rng.js';
import { nativeGemmStatus, nativeLamb } from '../native.js';
import { LAMB_NORM_BLOCK, LAMB_UPDATE, lambUpdate, type LambUpdateAttrs } from './lamb.js';
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

describe('native LAMB update', () => {
  it('gives the same bits as the JS kernel over blocks and a tail, on 1 and 2 threads, in place too', () => {
    const native = nativeLamb();
    if (native === null) {
      if (process.env.CI === 'true') throw new Error(`CI=true but the native addon has no lambUpdate: ${nativeGemmStatus().reason}`);
      console.warn(`skipped: the native addon has no lambUpdate (${nativeGemmStatus().reason})`);
      return;
    }
    // Several norm blocks, a partial last block and a tail of 3 past the last four-lane group.
    const n = 5 * LAMB_NORM_BLOCK + 1_027;
    const rng = new Rng(13);
    const make = (scale: number) => Float32Array.from({ length: n }, () => rng.normal() * scale);
    const [p, g, m] = [make(0.05), make(0.1), make(0.01)];
    const v = Float32Array.from(make(0.003), (x) => x * x);
    const settings: LambUpdateAttrs[] = [
      { beta1: 0.9, beta2: 0.999, eps: 1e-6, lr: 3e-3, weightDecay: 0.02, biasCorrection1: 1 - 0.9 ** 3, biasCorrection2: 1 - 0.999 ** 3, adapt: true, trustClip: false },
      { beta1: 0.9, beta2: 0.95, eps: 1e-6, lr: 1e-2, weightDecay: 0, biasCorrection1: 0.1, biasCorrection2: 0.05, adapt: false, trustClip: false },
      { beta1: 0.8, beta2: 0.99, eps: 1e-8, lr: 5e-3, weightDecay: 0.1, biasCorrection1: 0.2, biasCorrection2: 0.01, adapt: true, trustClip: true },
    ];
    const threads = native.threads;
    try {
      for (const [k, a] of settings.entries()) {
        const clip = k === 0 ? 2.5 : 1;
        const js = [new Float32Array(n), new Float32Array(n), new Float32Array(n)];
        lambUpdate({ p, g, m, v, pOut: js[0], mOut: js[1], vOut: js[2] }, clip, a);
        for (const t of [1, 2]) {
          native.setThreads(t);
          const out = [new Float32Array(n), new Float32Array(n), new Float32Array(n)];
          const args = [a.beta1, a.beta2, a.eps, a.lr, a.weightDecay, a.biasCorrection1, a.biasCorrection2, clip, a.adapt, a.trustClip] as const;
          native.lambUpdate(p, g, m, v, out[0], out[1], out[2], ...args);
          for (let j = 0; j < 3; j++) expect(out[j], `setting ${k}, ${t} thread(s), output ${j}`).toEqual(js[j]);
          // In place: the outputs are the inputs' own arrays.
          const [pi, mi, vi] = [p.slice(), m.slice(), v.slice()];
          native.lambUpdate(pi, g, mi, vi, pi, mi, vi, ...args);
          expect([pi, mi, vi]).toEqual(js);
        }
      }
    } finally {
      native.setThreads(threads);
    }
    expect(() => native.lambUpdate(p, g, m, new Float32Array(3), p, m, v, 0.9, 0.999, 1e-6, 1e-3, 0, 1, 1, 1, true, false)).toThrow(/lambUpdate: v differs in length from p/);
  });
});
