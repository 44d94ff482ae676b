/**
 * Test helpers: run the same computation on two backends from the same seeded inputs and compare.
 * (A folder of its own so it is obviously test support, not a kernel.)
 */
import { expect } from 'vitest';
import { Rng } from '../../rng.js';
import { tf } from '../../tf.js';

export interface Input {
  shape: number[];
  values: Float32Array | Int32Array;
  dtype: 'float32' | 'int32';
}

export function randomInput(rng: Rng, shape: number[]): Input {
  const n = shape.reduce((a, b) => a * b, 1);
  const values = new Float32Array(n);
  for (let i = 0; i < n; i++) values[i] = rng.normal();
  return { shape, values, dtype: 'float32' };
}

export function intInput(shape: number[], values: number[]): Input {
  return { shape, values: Int32Array.from(values), dtype: 'int32' };
}

/**
 * Runs `fn` on `backend` with fresh tensors made from `inputs`; returns every output's values.
 * Also checks that nothing leaked: no tensors and no backend data outlive the call.
 */
export async function runOn(backend: string, inputs: Input[], fn: (...xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[]): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  const engineBackend = tf.backend();
  const tensorsBefore = tf.memory().numTensors;
  const dataBefore = engineBackend.numDataIds();
  const xs = inputs.map((i) => tf.tensor(i.values, i.shape, i.dtype));
  const outs = tf.tidy(() => {
    const r = fn(...xs);
    return Array.isArray(r) ? r : [r];
  });
  const values = outs.map((t) => Float32Array.from(t.dataSync()));
  tf.dispose([...outs, ...xs]);
  expect(tf.memory().numTensors, `tensor leak on ${backend}`).toBe(tensorsBefore);
  expect(engineBackend.numDataIds(), `backend data leak on ${backend}`).toBe(dataBefore);
  return values;
}

/**
 * max |a - e| <= rtol * max(|e|, floor): the tolerance scales with the output's magnitude, and
 * `floor` keeps it from vanishing on outputs near zero.
 */
export function expectClose(actual: Float32Array[], expected: Float32Array[], rtol = 1e-4, what = '', floor = 1e-6): void {
  expect(actual.length).toBe(expected.length);
  for (let o = 0; o < expected.length; o++) {
    const a = actual[o];
    const e = expected[o];
    expect(a.length, `${what} output ${o} length`).toBe(e.length);
    let maxAbs = 0;
    let maxDiff = 0;
    for (let i = 0; i < e.length; i++) {
      maxAbs = Math.max(maxAbs, Math.abs(e[i]));
      const d = Math.abs(a[i] - e[i]);
      maxDiff = Number.isNaN(d) ? Infinity : Math.max(maxDiff, d);
    }
    expect(maxDiff, `${what} output ${o}: max diff ${maxDiff} vs scale ${maxAbs}`).toBeLessThanOrEqual(rtol * Math.max(maxAbs, floor));
  }
}

/** Compare `fn` on wasm against cpu. */
export async function expectWasmMatchesCpu(
  inputs: Input[],
  fn: (...xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
  what: string,
  rtol = 1e-4,
): Promise<void> {
  const cpu = await runOn('cpu', inputs, fn);
  const wasm = await runOn('wasm', inputs, fn);
  expectClose(wasm, cpu, rtol, what);
}
