import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dropout, geluExact, layerNorm, quickGelu, scaledSoftmax } from '../../nn.js';
import { Rng } from '../../rng.js';
import { tf } from '../../tf.js';
import { nativeFused, nativeGemmStatus, setNativeGemmEnabled } from '../native.js';
import { initBackend } from '../select.js';
import { expectClose, expectWasmMatchesCpu, randomInput, runOn } from '../testing/compare.js';
import { FUSED_GELU, FUSED_QUICK_GELU, fusedKernelsActive } from './fused.js';

const status = nativeGemmStatus();
const haveFused = nativeFused() !== null;

beforeAll(async () => {
  delete process.env.MASKSUB_BACKEND;
  await initBackend({ prefer: 'wasm', log: () => {} });
});

afterAll(() => setNativeGemmEnabled(true));

/** erf in double precision: Maclaurin series below 3, the continued fraction of erfc above. */
function erf64(x: number): number {
  const a = Math.abs(x);
  if (a < 3) {
    let term = a;
    let sum = a;
    for (let n = 1; n < 80; n++) {
      term *= (-a * a) / n;
      sum += term / (2 * n + 1);
    }
    return Math.sign(x) * sum * (2 / Math.sqrt(Math.PI));
  }
  let t = a;
  for (let k = 120; k >= 1; k--) t = a + k / 2 / t;
  return Math.sign(x) * (1 - Math.exp(-a * a) / Math.sqrt(Math.PI) / t);
}

// Rows x cols: tails of 1-7 lanes, one row, one column, and sizes past the threading threshold.
const SHAPES: number[][] = [[3, 5], [1, 1], [2, 8], [4, 9, 17], [2, 3, 65], [64, 192], [700, 100], [2, 5, 3, 7]];

if (haveFused) {
  describe('fused kernels on wasm (native addon) match composed ops on cpu', () => {
    it('are registered and active on wasm', () => {
      expect(tf.getKernel(FUSED_GELU, 'wasm')).toBeDefined();
      expect(tf.getKernel(FUSED_QUICK_GELU, 'wasm')).toBeDefined();
      expect(fusedKernelsActive()).toBe(true);
    });

    for (const shape of SHAPES) {
      it(`GELU [${shape}]: forward and gradient`, async () => {
        const rng = new Rng(shape.reduce((a, b) => a * 31 + b, 1));
        const x = randomInput(rng, shape);
        for (let i = 0; i < x.values.length; i += 7) x.values[i] *= 4; // reach erf's flat tails
        await expectWasmMatchesCpu(
          [x, randomInput(rng, shape)],
          (xt, w) => [geluExact(xt), tf.grad((v: tf.Tensor) => tf.sum(tf.mul(geluExact(v), w)))(xt)],
          `gelu ${shape}`,
          2e-6,
        );
      });

      it(`quick GELU [${shape}]: forward and gradient`, async () => {
        const rng = new Rng(shape.reduce((a, b) => a * 37 + b, 2));
        const x = randomInput(rng, shape);
        for (let i = 0; i < x.values.length; i += 5) x.values[i] *= 8; // reach the sigmoid's flat tails
        await expectWasmMatchesCpu(
          [x, randomInput(rng, shape)],
          (xt, w) => [quickGelu(xt), tf.grad((v: tf.Tensor) => tf.sum(tf.mul(quickGelu(v), w)))(xt)],
          `quick gelu ${shape}`,
          2e-6,
        );
      });

      it(`LayerNorm [${shape}]: forward and gradients of x, gamma, beta`, async () => {
        const rng = new Rng(shape.reduce((a, b) => a * 17 + b, 3));
        const cols = shape[shape.length - 1];
        const x = randomInput(rng, shape);
        // An offset far larger than the spread: the variance must be taken after centring.
        for (let i = 0; i < x.values.length; i++) x.values[i] = x.values[i] * 0.1 + 30;
        await expectWasmMatchesCpu(
          [x, randomInput(rng, [cols]), randomInput(rng, [cols]), randomInput(rng, shape)],
          (xt, g, b, w) => {
            const loss = (v: tf.Tensor, gv: tf.Tensor, bv: tf.Tensor) => tf.sum(tf.mul(layerNorm(v, gv, bv, 1e-5), w));
            return [layerNorm(xt, g, b, 1e-5), ...tf.grads(loss)([xt, g, b])];
          },
          `layernorm ${shape}`,
          5e-5,
        );
      });

      it(`scaled softmax [${shape}]: forward and gradient, with and without a bias`, async () => {
        const rng = new Rng(shape.reduce((a, b) => a * 13 + b, 5));
        const cols = shape[shape.length - 1];
        const scale = 0.37;
        await expectWasmMatchesCpu(
          [randomInput(rng, shape), randomInput(rng, shape), randomInput(rng, [cols])],
          (xt, w, bias) => [
            scaledSoftmax(xt, scale),
            tf.grad((v: tf.Tensor) => tf.sum(tf.mul(scaledSoftmax(v, scale), w)))(xt),
            scaledSoftmax(xt, -2, bias),
            tf.grad((v: tf.Tensor) => tf.sum(tf.mul(scaledSoftmax(v, -2, bias), w)))(xt),
          ],
          `softmax ${shape}`,
          1e-5,
        );
      });
    }

    /**
     * The largest errors of an activation on wasm against double precision over [from, to]: the
     * value's relative to max(1, |x|), the derivative's absolute. NaN counts as infinitely wrong.
     */
    async function worstActivationErrors(
      act: (x: tf.Tensor) => tf.Tensor,
      exact: (x: number) => { y: number; dy: number },
      from: number,
      to: number,
    ): Promise<{ y: number; dx: number }> {
      const xs = Float32Array.from({ length: 24001 }, (_, i) => from + (i * (to - from)) / 24000);
      const [y, dx] = await runOn('wasm', [{ shape: [xs.length], values: xs, dtype: 'float32' }], (x) => [act(x), tf.grad((v: tf.Tensor) => tf.sum(act(v)))(x)]);
      const worst = { y: 0, dx: 0 };
      for (let i = 0; i < xs.length; i++) {
        const e = exact(xs[i]);
        worst.y = Math.max(worst.y, Math.abs(y[i] - e.y) / Math.max(1, Math.abs(xs[i])) || (Number.isNaN(y[i]) ? Infinity : 0));
        worst.dx = Math.max(worst.dx, Math.abs(dx[i] - e.dy) || (Number.isNaN(dx[i]) ? Infinity : 0));
      }
      return worst;
    }

    it('GELU is within 1e-6 of double-precision GELU on [-12, 12], gradient within 2e-6', async () => {
      const worst = await worstActivationErrors(
        geluExact,
        (x) => {
          const cdf = 0.5 * (1 + erf64(x / Math.SQRT2));
          return { y: x * cdf, dy: cdf + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI) };
        },
        -12,
        12,
      );
      expect(worst.y).toBeLessThan(1e-6);
      expect(worst.dx).toBeLessThan(2e-6);
    });

    it('quick GELU is within 1e-6 of double precision on [-120, 120], gradient within 2e-6, no NaN', async () => {
      const worst = await worstActivationErrors(
        quickGelu,
        (x) => {
          const s = 1 / (1 + Math.exp(-1.702 * x));
          return { y: x * s, dy: s + 1.702 * x * s * (1 - s) };
        },
        -120,
        120,
      );
      expect(worst.y).toBeLessThan(1e-6);
      expect(worst.dx).toBeLessThan(2e-6);
    });

    it('softmax rows with very negative scores (masked positions) stay finite and sum to 1', async () => {
      const values = Float32Array.from([0, -1e9, 1, -1e9, -Infinity, 2, 3, 4]);
      const [y] = await runOn('wasm', [{ shape: [2, 4], values, dtype: 'float32' }], (x) => [scaledSoftmax(x, 1)]);
      expect(y[1]).toBeLessThan(1e-30);
      expect(y[4]).toBe(0);
      expect(y[0] + y[1] + y[2] + y[3]).toBeCloseTo(1, 6);
      expect(y[4] + y[5] + y[6] + y[7]).toBeCloseTo(1, 6);
    });

    it('with the addon disabled, wasm composes tfjs ops again (same values)', async () => {
      const rng = new Rng(9);
      const inputs = [randomInput(rng, [6, 40]), randomInput(rng, [40]), randomInput(rng, [40])];
      const fn = (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => [geluExact(x), quickGelu(x), layerNorm(x, g, b, 1e-6), scaledSoftmax(x, 0.5)];
      const fused = await runOn('wasm', inputs, fn);
      setNativeGemmEnabled(false);
      try {
        expect(fusedKernelsActive()).toBe(false);
        expectClose(await runOn('wasm', inputs, fn), fused, 1e-5, 'composed vs fused');
      } finally {
        setNativeGemmEnabled(true);
      }
    });

    it('a kernel given a non-float32 input names the input', async () => {
      await tf.setBackend('wasm');
      const x = tf.tensor1d([1, 2], 'int32');
      expect(() => tf.engine().runKernel(FUSED_GELU, { x }, {})).toThrow(/MasksubGelu: input 'x' must be float32/);
      x.dispose();
    });
  });
} else if (process.env.CI === 'true' && !status.reason.startsWith('disabled')) {
  describe('fused kernels', () => {
    it('have the native addon built', () => {
      throw new Error(`CI=true but the native addon with fused kernels is not available: ${status.reason}`);
    });
  });
} else {
  console.warn(`[skip] fused kernels: native addon not available (${status.reason})`);
  describe.skip('fused kernels on wasm', () => {
    it('needs the native addon', () => {});
  });
}

describe.runIf(haveFused)('fused dropout on wasm (native addon)', () => {
  const n = 200_003; // past the threading threshold, with a tail
  const values = Float32Array.from({ length: n }, (_, i) => 1 + (i % 13));

  async function dropoutOnWasm(rate: number, seed: number): Promise<{ y: Float32Array; dx: Float32Array; dw: Float32Array }> {
    const w = Float32Array.from({ length: n }, (_, i) => ((i * 7) % 5) - 2);
    const [y, dx] = await runOn(
      'wasm',
      [
        { shape: [n], values, dtype: 'float32' },
        { shape: [n], values: w, dtype: 'float32' },
      ],
      (x, wt) => [dropout(x, rate, seed), tf.grad((v: tf.Tensor) => tf.sum(tf.mul(dropout(v, rate, seed), wt)))(x)],
    );
    return { y, dx, dw: w };
  }

  it('is active on wasm, keeps about 1 - rate of the elements, scaled by 1/(1 - rate)', async () => {
    expect(fusedKernelsActive()).toBe(true);
    for (const rate of [0.1, 0.5, 0.9]) {
      const { y } = await dropoutOnWasm(rate, 1234);
      let kept = 0;
      for (let i = 0; i < n; i++) {
        if (y[i] === 0) continue;
        kept++;
        expect(Math.abs(y[i] - values[i] / (1 - rate))).toBeLessThanOrEqual(1e-6 * y[i]);
      }
      // Binomial: 5 standard deviations.
      const sd = Math.sqrt(n * rate * (1 - rate));
      expect(Math.abs(kept - n * (1 - rate))).toBeLessThan(5 * sd);
    }
  });

  it('the gradient is dy through the same mask (regenerated from the seed, not stored)', async () => {
    const rate = 0.3;
    const { y, dx, dw } = await dropoutOnWasm(rate, 99);
    for (let i = 0; i < n; i++) {
      const expected = y[i] === 0 ? 0 : dw[i] / (1 - rate);
      expect(Math.abs(dx[i] - expected)).toBeLessThanOrEqual(1e-6 * Math.abs(expected));
    }
  });

  it('same seed, same mask; another seed, an independent mask; neighbours uncorrelated', async () => {
    const rate = 0.5;
    const a = (await dropoutOnWasm(rate, 7)).y;
    const b = (await dropoutOnWasm(rate, 7)).y;
    const c = (await dropoutOnWasm(rate, 8)).y;
    expect(b).toEqual(a);
    let agree = 0;
    let neighbours = 0;
    for (let i = 0; i < n; i++) {
      if ((a[i] === 0) === (c[i] === 0)) agree++;
      if (i > 0 && (a[i] === 0) === (a[i - 1] === 0)) neighbours++;
    }
    const sd = Math.sqrt(n * 0.25);
    expect(Math.abs(agree - n / 2)).toBeLessThan(5 * sd);
    expect(Math.abs(neighbours - (n - 1) / 2)).toBeLessThan(5 * sd);
  });

  it('rate 0 is the identity and rate 1 zeroes everything (as PyTorch)', async () => {
    const [same, zero] = await runOn('wasm', [{ shape: [5], values: Float32Array.of(1, -2, 3, 4, 5), dtype: 'float32' }], (x) => [
      dropout(x, 0, 1),
      dropout(x, 1, 1),
    ]);
    expect(Array.from(same)).toEqual([1, -2, 3, 4, 5]);
    expect(Array.from(zero).every((v) => v === 0)).toBe(true);
  });
});

describe.runIf(haveFused)('native AdamW update', () => {
  it('gives the same bits as the JS kernel (float64 math), threaded over a large table', async () => {
    const { adamwUpdate } = await import('./adamw.js');
    const n = 300_001;
    const rng = new Rng(11);
    const make = (scale: number) => Float32Array.from({ length: n }, () => rng.normal() * scale);
    const [p, g, m] = [make(1), make(0.1), make(0.01)];
    const v = Float32Array.from(make(0.001), (x) => x * x);
    const attrs = { beta1: 0.9, beta2: 0.999, eps: 1e-8, lr: 3e-4, weightDecay: 0.05, biasCorrection1: 1 - 0.9 ** 3, biasCorrection2: 1 - 0.999 ** 3 };
    const js = [new Float32Array(n), new Float32Array(n), new Float32Array(n)];
    adamwUpdate({ p, g, m, v, pOut: js[0], mOut: js[1], vOut: js[2] }, attrs);
    const nat = [new Float32Array(n), new Float32Array(n), new Float32Array(n)];
    const a = attrs;
    nativeFused()!.adamwUpdate(p, g, m, v, nat[0], nat[1], nat[2], a.beta1, a.beta2, a.eps, a.lr, a.weightDecay, a.biasCorrection1, a.biasCorrection2);
    for (let k = 0; k < 3; k++) expect(nat[k]).toEqual(js[k]);
    expect(() => nativeFused()!.adamwUpdate(p, g, m, new Float32Array(3), nat[0], nat[1], nat[2], 0.9, 0.999, 1e-8, 1e-3, 0, 1, 1)).toThrow(/adamwUpdate: v differs in length from p/);
  });
});
