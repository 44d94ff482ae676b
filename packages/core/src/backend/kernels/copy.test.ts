import { beforeAll, describe, expect, it, vi } from 'vitest';
import { Rng } from '../../rng.js';
import { tf } from '../../tf.js';
import { initBackend } from '../select.js';
import { expectWasmMatchesCpu, intInput, randomInput, type Input } from '../testing/compare.js';
import { registerWasmKernels } from '../wasm_kernels.js';

beforeAll(async () => {
  delete process.env.MASKSUB_BACKEND;
  await initBackend({ prefer: 'wasm', log: () => {} });
});

function randomShape(rng: Rng, rank: number, maxDim = 5): number[] {
  return Array.from({ length: rank }, () => 1 + rng.int(maxDim));
}

/** Distinct small integers as int32 values: copies must keep them exactly. */
function intValues(shape: number[]): Input {
  const n = shape.reduce((a, b) => a * b, 1);
  return intInput(shape, Array.from({ length: n }, (_, i) => i * 7 - 50));
}

/** Forward output and the gradient of sum(op(x) * w), on both backends. */
async function expectForwardAndGradient(x: Input, extra: Input[], op: (x: tf.Tensor, ...extra: tf.Tensor[]) => tf.Tensor | tf.Tensor[], what: string): Promise<void> {
  const outs = tf.tidy(() => {
    const r = op(tf.zeros(x.shape), ...extra.map((e) => tf.tensor(e.values, e.shape, e.dtype)));
    return (Array.isArray(r) ? r : [r]).map((t) => t.shape);
  });
  const rng = new Rng(outs.length * 31 + x.shape.length);
  const weights = outs.map((shape) => randomInput(rng, shape));
  await expectWasmMatchesCpu(
    [x, ...extra, ...weights],
    (xt, ...rest) => {
      const ex = rest.slice(0, extra.length);
      const ws = rest.slice(extra.length);
      const asList = (r: tf.Tensor | tf.Tensor[]): tf.Tensor[] => (Array.isArray(r) ? r : [r]);
      const loss = (v: tf.Tensor): tf.Tensor => tf.addN(asList(op(v, ...ex)).map((o, i) => tf.sum(tf.mul(o, ws[i]))));
      return [...asList(op(xt, ...ex)), tf.grad(loss)(xt)];
    },
    what,
    1e-6,
  );
}

describe('fast Slice on wasm', () => {
  const rng = new Rng(11);
  for (let c = 0; c < 14; c++) {
    const rank = 1 + (c % 5);
    const shape = randomShape(rng, rank);
    const begin = shape.map((d) => rng.int(d));
    // Random sizes, -1 ("to the end"), and an empty box now and then.
    const size = shape.map((d, i) => {
      const r = rng.next();
      if (r < 0.3) return -1;
      if (r < 0.38 && c % 3 === 0) return 0;
      return rng.int(d - begin[i] + 1);
    });
    it(`slice [${shape}] begin [${begin}] size [${size}]: forward and gradient match cpu; int32 exact`, async () => {
      await expectForwardAndGradient(randomInput(rng, shape), [], (x) => tf.slice(x, begin, size), `slice ${c}`);
      await expectWasmMatchesCpu([intValues(shape)], (x) => tf.slice(x, begin, size), `int slice ${c}`, 0);
    });
  }

  it('short begin/size, the profiled [64,65,192] class-token slice and a bool slice', async () => {
    const rng2 = new Rng(5);
    await expectWasmMatchesCpu([randomInput(rng2, [3, 4, 5])], (x) => tf.slice(x, [1], [-1]), 'short begin', 0);
    await expectWasmMatchesCpu([randomInput(rng2, [3, 4, 5])], (x) => tf.slice(x, [0, 2]), 'no size', 0);
    // Two cut outer axes around a cut inner one: the odometer carries across axes.
    await expectWasmMatchesCpu([randomInput(rng2, [3, 4, 5, 6])], (x) => tf.slice(x, [1, 1, 1, 2], [2, 3, 2, -1]), 'odometer', 0);
    await expectWasmMatchesCpu([randomInput(rng2, [8, 65, 192])], (x) => tf.slice(x, [0, 0, 0], [8, 1, 192]), 'cls token', 0);
    await expectWasmMatchesCpu(
      [randomInput(rng2, [4, 6])],
      (x) => tf.cast(tf.slice(tf.greater(x, 0), [1, 2], [2, 3]), 'float32'),
      'bool slice',
      0,
    );
  });

  it('returns a fresh tensor that outlives its input', async () => {
    await tf.setBackend('wasm');
    const x = tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]);
    const whole = tf.slice(x, [0, 0], [-1, -1]);
    const tail = tf.slice(x, [1, 0], [1, 3]);
    x.dispose();
    expect(Array.from(whole.dataSync())).toEqual([1, 2, 3, 4, 5, 6]);
    expect(Array.from(tail.dataSync())).toEqual([4, 5, 6]);
    tf.dispose([whole, tail]);
  });
});

describe('fast SplitV on wasm', () => {
  const rng = new Rng(23);
  for (let c = 0; c < 10; c++) {
    const rank = 1 + (c % 5);
    const shape = randomShape(rng, rank, 6);
    const axis = rng.int(rank) - (c % 2 === 0 ? 0 : rank); // negative axes too
    const dim = shape[axis < 0 ? axis + rank : axis];
    // Sizes with a zero part and a -1 part ("the rest") now and then; else an even split count.
    let splits: number | number[];
    if (c % 3 === 2) {
      // A one-way split has no gradient in tfjs (SplitV's gradient concats a lone tensor).
      splits = dim >= 2 ? dim : [dim, 0];
    } else {
      const first = rng.int(dim + 1);
      splits = c % 3 === 0 ? [first, 0, -1] : [first, dim - first];
    }
    it(`split [${shape}] ${JSON.stringify(splits)} axis ${axis}: forward and gradient match cpu; int32 exact`, async () => {
      await expectForwardAndGradient(randomInput(rng, shape), [], (x) => tf.split(x, splits, axis), `split ${c}`);
      await expectWasmMatchesCpu([intValues(shape)], (x) => tf.split(x, splits, axis), `int split ${c}`, 0);
    });
  }

  it('the profiled [64,65,192] split [1,64] along axis 1 and a bool split', async () => {
    const rng2 = new Rng(9);
    await expectWasmMatchesCpu([randomInput(rng2, [64, 65, 192])], (x) => tf.split(x, [1, 64], 1), 'cls/patches', 0);
    await expectWasmMatchesCpu(
      [randomInput(rng2, [3, 5])],
      (x) => tf.split(tf.greater(x, 0), [2, 3], 1).map((t) => tf.cast(t, 'float32')),
      'bool split',
      0,
    );
  });
});

describe('fast GatherV2 on wasm', () => {
  const rng = new Rng(37);
  for (let c = 0; c < 14; c++) {
    const rank = 1 + (c % 5);
    const shape = randomShape(rng, rank);
    const batchDims = rank >= 2 && c % 3 === 1 ? 1 : 0;
    const axis = batchDims + rng.int(rank - batchDims);
    const dim = shape[axis];
    const n = c % 7 === 6 ? 0 : 1 + rng.int(6);
    // Random indices (repeats included), or a sorted run that the kernel copies as one block.
    const pick = (): number[] =>
      c % 4 === 0 ? Array.from({ length: n }, (_, i) => (i % dim)) : Array.from({ length: n }, () => rng.int(dim));
    const indexShape = batchDims === 1 ? [shape[0], n] : [n];
    const indexValues = batchDims === 1 ? Array.from({ length: shape[0] }, pick).flat() : pick();
    const indices = intInput(indexShape, indexValues);
    it(`gather [${shape}] axis ${axis} batchDims ${batchDims} indices [${indexValues}]: forward and gradient match cpu; int32 exact`, async () => {
      const op = (x: tf.Tensor, i: tf.Tensor): tf.Tensor => tf.gather(x, i, axis, batchDims);
      await expectForwardAndGradient(randomInput(rng, shape), [indices], op, `gather ${c}`);
      await expectWasmMatchesCpu([intValues(shape), indices], op, `int gather ${c}`, 0);
    });
  }

  it('2-D indices, a negative axis, a bool gather, and the profiled [4096,192] token gather', async () => {
    const rng2 = new Rng(41);
    const idx2d = intInput([2, 3], [4, 0, 4, 1, 2, 3]);
    await expectWasmMatchesCpu([randomInput(rng2, [3, 5, 2]), idx2d], (x, i) => tf.gather(x, i, -2), '2-D indices', 0);
    await expectWasmMatchesCpu(
      [randomInput(rng2, [4, 6]), intInput([3], [5, 5, 0])],
      (x, i) => tf.cast(tf.gather(tf.greater(x, 0), i, 1), 'float32'),
      'bool gather',
      0,
    );
    const keep = Array.from({ length: 2048 }, (_, k) => 2 * k + (k % 3 === 0 ? 1 : 0));
    await expectWasmMatchesCpu([randomInput(rng2, [4096, 192]), intInput([2048], keep)], (x, i) => tf.gather(x, i, 0), 'tokens', 0);
  });

  it('an out-of-range index throws, naming the index and the axis size, and leaks nothing', async () => {
    await tf.setBackend('wasm');
    const x = tf.zeros([2, 5, 3]);
    const before = tf.memory().numTensors;
    const dataBefore = tf.backend().numDataIds();
    for (const bad of [5, -1]) {
      const indices = tf.tensor1d([0, bad], 'int32');
      expect(() => tf.gather(x, indices, 1)).toThrow(new RegExp(`index value ${bad} is not in \\[0, 4\\].*axis 1 .* has size 5`));
      indices.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
    expect(tf.backend().numDataIds()).toBe(dataBefore);
    x.dispose();
  });
});

describe('registration', () => {
  it('the registered GatherV2 / Slice / SplitV are masksub kernels, also after registering again', async () => {
    await tf.setBackend('wasm');
    const first = registerWasmKernels();
    const again = registerWasmKernels();
    for (const name of [tf.GatherV2, tf.Slice, tf.SplitV]) {
      expect(first.replaced).toContain(name);
      expect(again.replaced).toContain(name);
      const fn = tf.getKernel(name, 'wasm')?.kernelFunc as (tf.KernelFunc & Record<symbol, unknown>) | undefined;
      // The wrapper remembers the stock kernel (never a wrapper of a wrapper).
      const stock = fn?.[Symbol.for('masksub.stockKernel')] as (tf.KernelFunc & Record<symbol, unknown>) | undefined;
      expect(stock, name).toBeTypeOf('function');
      expect(stock?.[Symbol.for('masksub.stockKernel')], name).toBeUndefined();
    }
    // The stock Slice / SplitV / GatherV2 read x or the indices out of the heap with readSync;
    // the block-copy kernels never do, so a readSync here means a stock kernel ran.
    const backend = tf.backend() as unknown as { readSync: (...a: unknown[]) => unknown };
    const spy = vi.spyOn(backend, 'readSync');
    try {
      const x = tf.tensor3d(Array.from({ length: 24 }, (_, i) => i), [2, 3, 4]);
      const outs = [tf.slice(x, [0, 1, 0], [2, 1, 4]), ...tf.split(x, [1, 2], 1), tf.gather(x, [2, 0], 1)];
      expect(spy).not.toHaveBeenCalled();
      tf.dispose([x, ...outs]);
    } finally {
      spy.mockRestore();
    }
  });
});
