/**
 * The fused AdamW kernel (wasm) against the optimizer's op form on the cpu backend: several steps
 * with and without weight decay, parameters of several shapes, slots and parameters compared.
 */
import { beforeAll, describe, it } from 'vitest';
import type { OptimizerSpec } from '../../optim/optimizer.js';
import { initBackend } from '../select.js';
import { ADAMW_UPDATE } from './adamw.js';
import { afterFourUpdates, expectOnlyKernel, expectSameState, expectUpdatesInPlace } from '../testing/update-kernels.js';

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

describe('fused AdamW update on wasm', () => {
  it('is registered and used by the optimizer on wasm', async () => {
    await expectOnlyKernel(ADAMW_UPDATE, { kind: 'adamw' });
  });

  it('matches the op form on cpu over several steps (parameters and both slots)', async () => {
    const spec: OptimizerSpec = { kind: 'adamw', weightDecay: 0.05, betas: [0.9, 0.95], eps: 1e-6 };
    const cpu = await afterFourUpdates('cpu', spec, SHAPES, { seed: 42, lr: 1e-2 });
    const wasm = await afterFourUpdates('wasm', spec, SHAPES, { seed: 42, lr: 1e-2 });
    expectSameState(wasm, cpu);
  });

  it("updates the optimizer's variables in place, and a block another tensor shares keeps its values", async () => {
    await expectUpdatesInPlace({ kind: 'adamw', weightDecay: 0 });
  });
});
