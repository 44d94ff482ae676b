import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../rng.js';
import { tf } from '../../tf.js';
import { nativeGemmStatus, setNativeGemmEnabled } from '../native.js';
import { initBackend } from '../select.js';
import { expectClose, expectWasmMatchesCpu, randomInput, runOn } from '../testing/compare.js';

beforeAll(async () => {
  delete process.env.MASKSUB_BACKEND;
  await initBackend({ prefer: 'wasm', log: () => {} });
});

const FORMS: [boolean, boolean][] = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
];

/** [batchA, batchB, m, k, n]: odd sizes, folded (b unbatched), true batch, broadcast both ways. */
const CASES: [number[], number[], number, number, number][] = [
  [[], [], 7, 13, 5],
  [[], [], 1, 9, 1],
  [[], [], 5, 19, 11], // n > m: transposeA alone computes (Bᵀ·A)ᵀ
  [[4], [], 7, 13, 5],
  [[2, 3], [], 5, 3, 6],
  [[3], [3], 6, 11, 5],
  [[], [3], 6, 11, 5],
  [[2, 1], [1, 3], 4, 7, 3],
  [[2, 3], [3], 5, 6, 7],
  [[1], [4], 3, 5, 2],
  // Attention-like: heap-view slices at offsets that are not multiples of 4 floats.
  [[2, 3], [2, 3], 13, 8, 13],
];

function operandShape(batch: number[], rows: number, cols: number, transposed: boolean): number[] {
  return transposed ? [...batch, cols, rows] : [...batch, rows, cols];
}

// Both engines behind the replacement kernels: the native GEMM addon (when built) and XNNPACK.
const ENGINES = nativeGemmStatus().gemm !== null ? (['native', 'xnnpack'] as const) : (['xnnpack'] as const);

for (const engine of ENGINES) describe(`wasm BatchMatMul replacement (${engine} gemm)`, () => {
  beforeAll(() => setNativeGemmEnabled(engine === 'native'));
  afterAll(() => setNativeGemmEnabled(true));

  for (const [batchA, batchB, m, k, n] of CASES) {
    for (const [ta, tb] of FORMS) {
      it(`a[${batchA}] b[${batchB}] ${m}x${k}x${n} transposeA=${ta} transposeB=${tb}: forward and grads match cpu`, async () => {
        const rng = new Rng(m * 1000 + k * 10 + n + (ta ? 1 : 0) + (tb ? 2 : 0));
        const outBatch = tf.broadcast_util.assertAndGetBroadcastShape(batchA, batchB);
        const inputs = [
          randomInput(rng, operandShape(batchA, m, k, ta)),
          randomInput(rng, operandShape(batchB, k, n, tb)),
          randomInput(rng, [...outBatch, m, n]),
        ];
        const shapeA = operandShape(outBatch, m, k, ta);
        const shapeB = operandShape(outBatch, k, n, tb);
        const product = (a: tf.Tensor, b: tf.Tensor, w: tf.Tensor, broadcastFirst: boolean) => {
          // The cpu reference gets explicitly broadcast operands: tfjs' cpu kernel mishandles
          // two-way batch broadcasting ([2,1] x [1,3]) and its matMul gradient does not reduce
          // broadcast dims, so gradients are compared only where the batches agree.
          const a1 = broadcastFirst ? tf.broadcastTo(a, shapeA) : a;
          const b1 = broadcastFirst ? tf.broadcastTo(b, shapeB) : b;
          const y = tf.matMul(a1, b1, ta, tb);
          if (!tf.util.arraysEqual(batchA, batchB)) return [y];
          // Weighted sum so each output element gets its own upstream gradient.
          const [da, db] = tf.grads((a2: tf.Tensor, b2: tf.Tensor) => tf.sum(tf.mul(tf.matMul(a2, b2, ta, tb), w)))([a1, b1]);
          return [y, da, db];
        };
        const cpu = await runOn('cpu', inputs, (a, b, w) => product(a, b, w, true));
        const wasm = await runOn('wasm', inputs, (a, b, w) => product(a, b, w, false));
        expectClose(wasm, cpu, 1e-4, 'matMul');
      });
    }
  }

  it('_FusedMatMul (bias + relu) in all four transpose forms, batched and folded, with grads', async () => {
    for (const batch of [[1], [3]]) {
      for (const [ta, tb] of FORMS) {
        const rng = new Rng(batch[0] * 10 + (ta ? 1 : 0) + (tb ? 2 : 0));
        const [m, k, n] = [5, 9, 4];
        const inputs = [
          randomInput(rng, operandShape(batch, m, k, ta)),
          randomInput(rng, operandShape(batch, k, n, tb)),
          randomInput(rng, [n]),
          randomInput(rng, [...batch, m, n]),
        ];
        await expectWasmMatchesCpu(
          inputs,
          (a, b, bias, w) => {
            const f = (a2: tf.Tensor, b2: tf.Tensor, bias2: tf.Tensor) =>
              tf.fused.matMul({ a: a2 as tf.Tensor3D, b: b2 as tf.Tensor3D, transposeA: ta, transposeB: tb, bias: bias2, activation: 'relu' });
            const grads = tf.grads((a2: tf.Tensor, b2: tf.Tensor, bias2: tf.Tensor) => tf.sum(tf.mul(f(a2, b2, bias2), w)))([a, b, bias]);
            return [f(a, b, bias), ...grads];
          },
          `fused batch=${batch} ta=${ta} tb=${tb}`,
        );
      }
    }
  });
});

describe('wasm BatchMatMul routing', () => {
  it('sends transposed products to the untransposed (XNNPACK) stock path', async () => {
    // Speed itself is measured by `pnpm bench` (matmul rows), not by a timed unit test: here we
    // check the routing that makes it fast — the stock kernel only ever sees untransposed operands.
    const { restoreStockMatMul, registerWasmKernels } = await import('../wasm_kernels.js');
    // This checks the XNNPACK path (what runs when the native addon is absent or disabled).
    setNativeGemmEnabled(false);
    await tf.setBackend('wasm');
    restoreStockMatMul();
    const stock = tf.getKernel('BatchMatMul', 'wasm')!;
    const seen: { transposeA: boolean; transposeB: boolean }[] = [];
    tf.unregisterKernel('BatchMatMul', 'wasm');
    tf.registerKernel({
      ...stock,
      kernelFunc: (args) => {
        const attrs = args.attrs as unknown as { transposeA: boolean; transposeB: boolean };
        seen.push({ transposeA: attrs.transposeA, transposeB: attrs.transposeB });
        return stock.kernelFunc(args);
      },
    });
    registerWasmKernels();
    const a = tf.randomNormal([64, 32]);
    const b = tf.randomNormal([48, 64]);
    const out = tf.matMul(a, b, true, true);
    expect(out.shape).toEqual([32, 48]);
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((s) => !s.transposeA && !s.transposeB)).toBe(true);
    tf.dispose([a, b, out]);
    restoreStockMatMul();
    tf.unregisterKernel('BatchMatMul', 'wasm');
    tf.registerKernel(stock);
    registerWasmKernels();
    setNativeGemmEnabled(true);
  });
});
