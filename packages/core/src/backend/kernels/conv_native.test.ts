/**
 * The native convolution kernels (native/src/conv_avx2.cc) against the cpu backend, forward,
 * input gradient and filter gradient, on random shapes: ResNet's 3x3 s1/s2 with PyTorch-style
 * explicit pads, 1x1 s1 (the no-patch-matrix path) and s2, the 7x7 s2 stem, Swin/ViT patch
 * embeddings (kernel = stride), TF 'same' with its asymmetric pads, odd sizes, batch 1 (one
 * image: threaded GEMM instead of threads over images) and several chunks per thread.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../rng.js';
import { tf } from '../../tf.js';
import { nativeConv, nativeGemmStatus, setNativeGemmEnabled } from '../native.js';
import { initBackend } from '../select.js';
import { expectWasmMatchesCpu, randomInput } from '../testing/compare.js';

type Pad = 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]];
const torchPad = (p: number): Pad => [[0, 0], [p, p], [p, p], [0, 0]];

// [x NHWC, filter HWIO, strides, pad, dilation]
const CASES: [number[], number[], [number, number], Pad, number][] = [
  [[3, 8, 8, 5], [3, 3, 5, 7], [1, 1], torchPad(1), 1],
  [[2, 9, 7, 4], [3, 3, 4, 6], [2, 2], torchPad(1), 1],
  [[2, 6, 5, 9], [1, 1, 9, 17], [1, 1], 'valid', 1],
  [[2, 7, 7, 6], [1, 1, 6, 10], [2, 2], 'valid', 1],
  [[1, 15, 13, 3], [7, 7, 3, 5], [2, 2], torchPad(3), 1],
  [[2, 16, 12, 3], [4, 4, 3, 8], [4, 4], 'valid', 1],
  [[1, 7, 8, 2], [3, 3, 2, 3], [2, 1], 'same', 1],
  [[2, 6, 10, 3], [3, 2, 3, 4], [1, 3], 'valid', 1],
  [[1, 10, 10, 3], [3, 3, 3, 4], [1, 1], 'same', 2],
];

// Run once (not again with small blocks): larger, slow on the cpu reference.
const LARGE_CASES: typeof CASES = [
  // The shapes of ResNet-20/56 at a small batch, large enough that the direct kernels split the
  // output pixels over threads: stem, 3x3 s1 in each stage, the 3x3 s2 downsampling conv, the
  // option-A shortcut (1x1 s2).
  [[2, 32, 32, 3], [3, 3, 3, 16], [1, 1], torchPad(1), 1],
  [[2, 32, 32, 16], [3, 3, 16, 16], [1, 1], torchPad(1), 1],
  [[2, 32, 32, 16], [3, 3, 16, 32], [2, 2], torchPad(1), 1],
  [[2, 16, 16, 32], [3, 3, 32, 32], [1, 1], torchPad(1), 1],
  [[2, 8, 8, 64], [3, 3, 64, 64], [1, 1], torchPad(1), 1],
  [[4, 16, 16, 32], [1, 1, 32, 64], [2, 2], 'valid', 1],
  // ResNet-50: 7x7 s2 stem, 1x1 s1 (no patch matrix), 1x1 s2 downsampling, 3x3 on 14x14.
  [[2, 40, 40, 3], [7, 7, 3, 16], [2, 2], torchPad(3), 1],
  [[2, 14, 14, 64], [1, 1, 64, 32], [1, 1], 'valid', 1],
  [[2, 14, 14, 64], [1, 1, 64, 48], [2, 2], 'valid', 1],
  [[2, 14, 14, 24], [3, 3, 24, 24], [1, 1], torchPad(1), 1],
  // Swin's patch embedding (4x4 stride 4, 3 -> 24 channels) at 64 px.
  [[2, 64, 64, 3], [4, 4, 3, 24], [4, 4], 'valid', 1],
  // Odd sizes and channel counts (partial 6-pixel tiles and 16-channel strips), a pad larger
  // than kernel - 1 (the input gradient's im2col path).
  [[3, 11, 13, 5], [3, 3, 5, 19], [1, 1], torchPad(1), 1],
  [[2, 13, 9, 7], [5, 3, 7, 33], [1, 2], [[0, 0], [2, 1], [1, 0], [0, 0]], 1],
  [[1, 6, 7, 2], [3, 3, 2, 3], [1, 1], torchPad(3), 1],
];

const built = nativeGemmStatus().gemm !== null;
const describeNative = built || process.env.CI === 'true' ? describe : describe.skip;
if (!built) console.warn(`[skip] native conv: ${nativeGemmStatus().reason}`);

describeNative('native convolution kernels on wasm', () => {
  beforeAll(async () => {
    delete process.env.MASKSUB_BACKEND;
    await initBackend({ prefer: 'wasm', log: () => {} });
    setNativeGemmEnabled(true);
  });

  it('are loaded (the addon has conv2dForward / BackpropInput / BackpropFilter)', () => {
    expect(nativeConv(), nativeGemmStatus().reason).not.toBeNull();
  });

  for (const chunked of [false, true]) {
    for (const [xShape, wShape, strides, pad, dilation] of chunked ? CASES : [...CASES, ...LARGE_CASES]) {
      const label = `x [${xShape}] filter [${wShape}] strides ${strides} pad ${JSON.stringify(pad)} dilation ${dilation}${chunked ? ', 48-pixel blocks' : ''}`;
      it(`${label}: y, dx and dW match cpu`, async () => {
        const native = nativeConv()!;
        // A budget below one block: the smallest blocks (48 output pixels), several per image.
        const previous = chunked ? native.setConvChunkFloats!(1) : null;
        try {
          const rng = new Rng(xShape.concat(wShape, strides).reduce((a, b) => a * 7 + b, 3));
          const outShape = tf.tidy(() => tf.conv2d(tf.zeros(xShape as [number, number, number, number]) as tf.Tensor4D, tf.zeros(wShape as [number, number, number, number]) as tf.Tensor4D, strides, pad, 'NHWC', dilation).shape);
          await expectWasmMatchesCpu(
            [randomInput(rng, xShape), randomInput(rng, wShape), randomInput(rng, outShape)],
            (x, w, probe) => {
              const y = tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, strides, pad, 'NHWC', dilation);
              if (dilation !== 1) return [y]; // tfjs' conv2d gradient needs dilation 1
              const loss = (xt: tf.Tensor, wt: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(xt as tf.Tensor4D, wt as tf.Tensor4D, strides, pad), probe));
              return [y, ...tf.grads(loss)([x, w])];
            },
            label,
            1e-4,
          );
        } finally {
          if (previous !== null) native.setConvChunkFloats!(previous);
        }
      });
    }
  }

  it('give the same results as the fallback kernels (native off)', async () => {
    const rng = new Rng(11);
    const inputs = [randomInput(rng, [2, 8, 8, 4]), randomInput(rng, [3, 3, 4, 8]), randomInput(rng, [2, 4, 4, 8])];
    const fn = (x: tf.Tensor, w: tf.Tensor, probe: tf.Tensor) => {
      const loss = (xt: tf.Tensor, wt: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(xt as tf.Tensor4D, wt as tf.Tensor4D, 2, torchPad(1)), probe));
      return tf.grads(loss)([x, w]);
    };
    const run = async () => {
      await tf.setBackend('wasm');
      const xs = inputs.map((i) => tf.tensor(i.values, i.shape));
      const out = tf.tidy(() => fn(xs[0], xs[1], xs[2]).map((t) => Float32Array.from(t.dataSync())));
      tf.dispose(xs);
      return out;
    };
    const on = await run();
    setNativeGemmEnabled(false);
    try {
      const off = await run();
      for (let i = 0; i < on.length; i++) {
        let diff = 0;
        for (let j = 0; j < on[i].length; j++) diff = Math.max(diff, Math.abs(on[i][j] - off[i][j]));
        expect(diff, `output ${i}`).toBeLessThan(1e-4);
      }
    } finally {
      setNativeGemmEnabled(true);
    }
  });

  it('reject arrays that do not match dims (no out-of-range access)', () => {
    const native = nativeConv()!;
    const dims = [1, 4, 4, 2, 4, 4, 3, 3, 3, 1, 1, 1, 1, 1, 1];
    const x = new Float32Array(32);
    const w = new Float32Array(54);
    expect(() => native.conv2dForward(x, w, new Float32Array(47), dims)).toThrow(/conv2dForward: y has 47 elements, dims imply 48/);
    expect(() => native.conv2dBackpropFilter(x, new Float32Array(48), new Float32Array(53), dims)).toThrow(/dw has 53 elements/);
    expect(() => native.conv2dForward(x, w, new Float32Array(48), dims.slice(0, 14))).toThrow(/dims must be an array of 15/);
    expect(() => native.conv2dForward(x, w, new Float32Array(48), [...dims.slice(0, 9), 0, 1, 1, 1, 1, 1])).toThrow(/stride/);
  });

  afterAll(() => setNativeGemmEnabled(true));
});
