/**
 * core's batchNormTrain: the native kernels on wasm (backend/kernels/batch_norm.ts) against the
 * composed tfjs ops on the cpu backend — y, batch mean and variance, and dx / dgamma / dbeta
 * (the gradient includes the statistics' dependence on x) — on random shapes, odd channel
 * counts and sizes, rows below and above the threading threshold.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { batchNormTrain } from '../../nn.js';
import { Rng } from '../../rng.js';
import { tf } from '../../tf.js';
import { nativeBatchNorm, nativeGemmStatus } from '../native.js';
import { initBackend } from '../select.js';
import { expectWasmMatchesCpu, randomInput } from '../testing/compare.js';
import { batchNormEpilogueActive, batchNormKernelsActive } from './batch_norm.js';

const built = nativeGemmStatus().gemm !== null;
const describeNative = built || process.env.CI === 'true' ? describe : describe.skip;

const SHAPES = [
  [4, 5, 5, 3],
  [2, 9, 7, 17],
  [16, 16, 16, 16], // 4,096 rows: split over threads
  [3, 8],
];

describeNative('batchNormTrain on wasm (native kernels) vs cpu', () => {
  beforeAll(async () => {
    delete process.env.MASKSUB_BACKEND;
    await initBackend({ prefer: 'wasm', log: () => {} });
  });

  it('uses the native kernels on wasm', async () => {
    await tf.setBackend('wasm');
    expect(nativeBatchNorm(), nativeGemmStatus().reason).not.toBeNull();
    expect(batchNormKernelsActive()).toBe(true);
  });

  for (const shape of SHAPES) {
    it(`x [${shape}]: y, mean, variance and gradients match`, async () => {
      const c = shape[shape.length - 1];
      const rng = new Rng(shape.reduce((a, b) => a * 31 + b, 7));
      const x = randomInput(rng, shape);
      // Shifted and scaled so the statistics are not ~0/~1 by construction.
      for (let i = 0; i < x.values.length; i++) x.values[i] = x.values[i] * 2.5 + (i % c) * 0.3;
      await expectWasmMatchesCpu(
        [x, randomInput(rng, [c]), randomInput(rng, [c]), randomInput(rng, shape)],
        (xt, g, b, probe) => {
          const { y, mean, variance } = batchNormTrain(xt, g, b, 1e-5);
          const loss = (a: tf.Tensor, gg: tf.Tensor, bb: tf.Tensor) => tf.sum(tf.mul(batchNormTrain(a, gg, bb, 1e-5).y, probe));
          return [y, mean, variance, ...tf.grads(loss)([xt, g, b])];
        },
        `batch norm ${shape}`,
        2e-4,
      );
    });
  }

  // The epilogue y = relu?(bn(x) + residual?) fused into the native kernels (ResNet's bn + ReLU
  // and bn2 + shortcut + ReLU) against the composed ops on cpu, y and all four gradients.
  const EPILOGUES: { name: string; relu: boolean; residual: boolean }[] = [
    { name: 'relu', relu: true, residual: false },
    { name: 'residual', relu: false, residual: true },
    { name: 'residual + relu', relu: true, residual: true },
  ];
  for (const shape of SHAPES) {
    for (const e of EPILOGUES) {
      it(`x [${shape}], ${e.name}: y and gradients (x, gamma, beta, residual) match`, async () => {
        const c = shape[shape.length - 1];
        const rng = new Rng(shape.reduce((a, b) => a * 17 + b, 5) + e.name.length);
        const x = randomInput(rng, shape);
        for (let i = 0; i < x.values.length; i++) x.values[i] = x.values[i] * 1.5 + (i % c) * 0.2;
        await expectWasmMatchesCpu(
          [x, randomInput(rng, [c]), randomInput(rng, [c]), randomInput(rng, shape), randomInput(rng, shape)],
          (xt, g, b, r, probe) => {
            const f = (a: tf.Tensor, gg: tf.Tensor, bb: tf.Tensor, rr: tf.Tensor) =>
              batchNormTrain(a, gg, bb, 1e-5, { relu: e.relu, residual: e.residual ? rr : undefined }).y;
            const loss = (a: tf.Tensor, gg: tf.Tensor, bb: tf.Tensor, rr: tf.Tensor) => tf.sum(tf.mul(f(a, gg, bb, rr), probe));
            const grads = e.residual ? tf.grads(loss)([xt, g, b, r]) : tf.grads((a, gg, bb) => loss(a, gg, bb, r))([xt, g, b]);
            return [f(xt, g, b, r), ...grads];
          },
          `batch norm ${shape} ${e.name}`,
          2e-4,
        );
      });
    }
  }

  it('fuses the epilogue: no Add / Relu kernels forward or backward on wasm', async () => {
    await tf.setBackend('wasm');
    expect(batchNormEpilogueActive()).toBe(true);
    const rng = new Rng(3);
    const [x, r] = [randomInput(rng, [2, 4, 4, 8]), randomInput(rng, [2, 4, 4, 8])].map((i) => tf.tensor(i.values, i.shape));
    const g = tf.ones([8]);
    const b = tf.zeros([8]);
    const info = await tf.profile(() => {
      const loss = (a: tf.Tensor, rr: tf.Tensor) => tf.sum(batchNormTrain(a, g, b, 1e-5, { relu: true, residual: rr }).y);
      return tf.grads(loss)([x, r]);
    });
    const kernels = info.kernelNames;
    expect(kernels).toContain('MasksubBatchNormTrainGrad');
    for (const k of ['Add', 'AddN', 'Relu', 'Step', 'Greater']) expect(kernels, k).not.toContain(k);
    tf.dispose([x, r, g, b, ...info.result as tf.Tensor[]]);
  });

  it('rejects inputs whose lengths do not fit', () => {
    const native = nativeBatchNorm()!;
    const f = (n: number) => new Float32Array(n);
    expect(() => native.batchNormStats(f(10), f(3), f(3))).toThrow(/not a multiple of the channel count/);
    expect(() => native.batchNormTrainBackward(f(9), f(9), f(3), f(2), f(3), 1e-5, f(9), f(3), f(3))).toThrow(/gamma and var differ/);
    expect(() => native.batchNormApply(f(9), f(3), f(3), f(3), f(3), 1e-5, f(9), f(6), true)).toThrow(/x and residual differ/);
    expect(() => native.batchNormTrainBackward(f(9), f(9), f(3), f(3), f(3), 1e-5, f(9), f(3), f(3), f(8))).toThrow(/x and reluOut differ/);
  });
});
