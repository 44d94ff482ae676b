import { describe, expect, it } from 'vitest';
import { Rng } from '../rng.js';
import { tf } from '../tf.js';
import { initBackend } from './select.js';
import { expectWasmMatchesCpu, randomInput } from './testing/compare.js';

describe('threaded wasm in Node', () => {
  it('starts the threaded SIMD build with 2 XNNPACK threads and computes correctly across heap growth', async () => {
    delete process.env.MASKSUB_BACKEND;
    delete process.env.MASKSUB_WASM_THREADS;
    const info = await initBackend({ prefer: 'wasm', wasmThreads: 2, log: () => {} });
    // The detail ends with the matmul engine (native gemm when the addon is built, else XNNPACK).
    expect(info.detail).toMatch(/^wasm simd, 2 threads, (native gemm$|XNNPACK gemm )/);
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    expect(wasm.getThreadsCount()).toBe(2);

    const rng = new Rng(3);
    const check = () =>
      expectWasmMatchesCpu(
        [randomInput(rng, [96, 80]), randomInput(rng, [96, 72]), randomInput(rng, [2, 9, 9, 5]), randomInput(rng, [3, 3, 5, 4])],
        (a, b, x, f) => [
          tf.matMul(a, b, true, false),
          tf.grad((f2: tf.Tensor) => tf.sum(tf.square(tf.conv2d(x as tf.Tensor4D, f2 as tf.Tensor4D, 1, 'same'))))(f),
        ],
        'threaded wasm',
      );
    await check();
    // Grow the shared wasm heap (a new, larger SharedArrayBuffer) and check again: views taken
    // by tfjs and by masksub's kernels must follow the new buffer.
    await tf.setBackend('wasm');
    const big = tf.zeros([64, 1024, 1024]);
    await check();
    await tf.setBackend('wasm');
    big.dispose();
  });
});
