/**
 * The fused SGD kernel (wasm) against the optimizer's op form on the cpu backend: several steps
 * of plain, momentum, dampened and Nesterov SGD with and without weight decay, parameters of
 * several shapes, the momentum buffer compared too; and the update in place.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../tf.js';
import { createOptimizer, type OptimizerSpec } from '../../optim/optimizer.js';
import { initBackend } from '../select.js';
import { SGD_UPDATE } from './sgd.js';
import { afterFourUpdates, expectOnlyKernel, expectSameState, expectUpdatesInPlace } from '../testing/update-kernels.js';

beforeAll(async () => {
  delete process.env.MASKSUB_BACKEND;
  await initBackend({ prefer: 'wasm', log: () => {} });
});

const SHAPES: Record<string, number[]> = {
  'layer1.0.conv1.weight': [4, 3, 3, 3],
  'layer1.0.bn1.bias': [4],
  'fc.weight': [10, 4],
};

const SPECS: Record<string, OptimizerSpec> = {
  'plain, no momentum': { kind: 'sgd', momentum: 0, weightDecay: 1e-4 },
  'momentum 0.9 with weight decay': { kind: 'sgd', momentum: 0.9, weightDecay: 5e-4 },
  'momentum 0.9, dampening 0.1, no decay': { kind: 'sgd', momentum: 0.9, dampening: 0.1, weightDecay: 0 },
  'Nesterov momentum 0.9 with weight decay': { kind: 'sgd', momentum: 0.9, nesterov: true, weightDecay: 1e-4 },
};

describe('fused SGD update on wasm', () => {
  it('is registered and is the only kernel of an optimizer step on wasm', async () => {
    await expectOnlyKernel(SGD_UPDATE, { kind: 'sgd', momentum: 0.9 });
  });

  for (const [label, spec] of Object.entries(SPECS)) {
    it(`${label}: matches the op form on cpu over four steps (parameters and buffers)`, async () => {
      // timm's default grouping: the conv and fc weights decay, the 1-D bias does not.
      const cpu = await afterFourUpdates('cpu', spec, SHAPES, { seed: 7, lr: 0.05 });
      const wasm = await afterFourUpdates('wasm', spec, SHAPES, { seed: 7, lr: 0.05 });
      if ((spec.momentum ?? 0) > 0) expect([...cpu.keys()].some((k) => k.includes('momentum_buffer'))).toBe(true);
      expectSameState(wasm, cpu);
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
    await expectUpdatesInPlace({ kind: 'sgd', momentum: 0.9 });
  });
});
