import { describe, expect, it } from 'vitest';
import { fromLayersModel } from './layers-model.js';
import { withMaskSub } from './masksub.js';
import { backendMemoryLimit, backendMemoryLimitBytes, estimateStepMemory, fitsWithMargin, MEMORY_PLAN_MARGIN, planMicroBatch, stepBytesAt, type MemoryProbe } from './memory.js';
import { createOptimizer } from './optim/index.js';
import { tf } from './tf.js';

/** `net` under withMaskSub with a batch of `batchSize` random images of its input shape (seeded). */
function workload(net: tf.Sequential, patch: number, batchSize: number, options: { variant?: 'masksub' | 'none'; seed?: number } = {}) {
  const model = fromLayersModel(net, { patch });
  const trainer = withMaskSub(model, { seed: 5, variant: options.variant ?? 'masksub' });
  const x = tf.randomNormal([batchSize, ...(net.inputs[0].shape.slice(1) as number[])], 0, 1, 'float32', options.seed ?? 2);
  const labels = tf.tensor1d(Array.from({ length: batchSize }, (_, i) => i % 10), 'int32');
  const batch = { inputs: { pixel_values: x }, targets: { labels } };
  const step = () => {
    const r = trainer.computeGradients(batch, 0);
    tf.dispose([...r.grads.values(), r.mainLogits, ...(r.subLogits ? [r.subLogits] : [])]);
  };
  return { model, trainer, batch, step, dispose: () => (tf.dispose([x, labels]), model.dispose()) };
}

/** A small conv net on 16x16 images. */
function convWorkload(batchSize: number, options: { batchNorm?: boolean; variant?: 'masksub' | 'none' } = {}) {
  const net = tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [16, 16, 3], filters: 8, kernelSize: 3, padding: 'same', activation: 'relu' }),
      ...(options.batchNorm ? [tf.layers.batchNormalization({})] : []),
      tf.layers.conv2d({ filters: 8, kernelSize: 3, padding: 'same', activation: 'relu' }),
      tf.layers.globalAveragePooling2d({}),
      tf.layers.dense({ units: 10 }),
    ],
  });
  return workload(net, 8, batchSize, options);
}

const examples = (probes: MemoryProbe[]) => probes.map((p) => p.examples);

describe('estimateStepMemory', () => {
  it('without a limit measures the batch itself, counts an optimizer made before it once, and leaves no trace', async () => {
    await tf.setBackend('cpu');
    expect(backendMemoryLimitBytes()).toBeNull();
    const w = convWorkload(8, { batchNorm: true });
    const rngBefore = JSON.stringify(w.trainer.rng.getState());
    const buffersBefore = [...w.model.params.variables].filter(([n]) => !w.model.params.trainable().has(n)).map(([n, v]) => [n, Array.from(v.dataSync())] as const);
    const tensorsBefore = tf.memory().numTensors;

    const estimate = await estimateStepMemory(w.trainer, w.batch);

    expect(tf.memory().numTensors).toBe(tensorsBefore);
    expect(JSON.stringify(w.trainer.rng.getState())).toBe(rngBefore);
    for (const [name, values] of buffersBefore) expect(Array.from(w.model.params.get(name).dataSync())).toEqual(values);
    expect(examples(estimate.probes)).toEqual([8]);
    expect(estimate.floorBytes).toBe(tf.memory().numBytes);
    const measured = (await tf.profile(w.step)).peakBytes;
    expect(Math.abs(estimate.peakBytes - measured) / measured).toBeLessThan(0.01);
    // The optimizer's state exists from its creation: it is in the floor, counted once.
    const optimizer = createOptimizer({ kind: 'adamw' }, w.model.params.trainable());
    const withState = await estimateStepMemory(w.trainer, w.batch);
    expect(withState.peakBytes - estimate.peakBytes).toBe(2 * 4 * w.model.params.countTrainable());
    optimizer.dispose();
    w.dispose();
  });
});

describe('estimateStepMemory under a limit', () => {
  it('probes one example first, then as large as each upper bound says is safe, up to the batch', async () => {
    await tf.setBackend('cpu');
    const w = convWorkload(64, { variant: 'none' });
    const measured = (await tf.profile(w.step)).peakBytes;
    const floor = tf.memory().numBytes;
    // A generous limit: one example, then the whole batch (its estimate is its measurement).
    const roomy = await estimateStepMemory(w.trainer, w.batch, { limitBytes: 100 * measured });
    expect(examples(roomy.probes)).toEqual([1, 64]);
    expect(roomy.peakBytes).toBe(roomy.probes[1].bytes);
    expect(Math.abs(roomy.peakBytes - measured) / measured).toBeLessThan(0.01);
    // A limit under which the batch is not safe to probe: every probe was safe by the one
    // before it, and the estimate past the largest is an upper bound.
    const limitBytes = (floor + 0.4 * (measured - floor)) / 0.8;
    const tight = await estimateStepMemory(w.trainer, w.batch, { limitBytes });
    expect(tight.probes[0].examples).toBe(1);
    for (let i = 1; i < tight.probes.length; i++) {
      const prev = tight.probes[i - 1];
      const bound = floor + (tight.probes[i].examples * (prev.bytes - floor)) / prev.examples;
      expect(bound).toBeLessThanOrEqual(0.8 * limitBytes);
    }
    expect(Math.max(...examples(tight.probes))).toBeLessThan(64);
    expect(tight.peakBytes).toBeGreaterThanOrEqual(measured);
    // Not even two examples safe: one probe, and its upper bound.
    const one = await estimateStepMemory(w.trainer, w.batch, { limitBytes: floor / 0.8 + 1 });
    expect(examples(one.probes)).toEqual([1]);
    expect(one.peakBytes).toBe(floor + 64 * (one.probes[0].bytes - floor));
    w.dispose();
  });

  it('is never below the step where the gradients, not the activations, set the small probes\' peaks', async () => {
    // Wide dense layers, few activations per example: the parameters' gradients (held to the end
    // of the backward) set the peak at small batches, so the peak is flat and then grows.
    await tf.setBackend('cpu');
    const net = tf.sequential({
      layers: [
        tf.layers.flatten({ inputShape: [8, 8, 1] }),
        tf.layers.dense({ units: 320, activation: 'relu' }),
        tf.layers.dense({ units: 320, activation: 'relu' }),
        tf.layers.dense({ units: 320, activation: 'relu' }),
        tf.layers.dense({ units: 10 }),
      ],
    });
    const w = workload(net, 4, 64, { seed: 3 });
    const measured = (await tf.profile(w.step)).peakBytes;
    for (const share of [1, 1.5, 2, 4]) {
      const estimate = await estimateStepMemory(w.trainer, w.batch, { limitBytes: share * measured });
      expect(estimate.peakBytes, `limit ${share} x the step`).toBeGreaterThanOrEqual(measured * 0.999);
    }
    w.dispose();
  });
});

describe('stepBytesAt', () => {
  // A convex peak, max(200 + 5 n, 100 + 30 n) over a floor of 100: the gradients' phase to n = 4, the activations' after.
  const peak = (n: number) => Math.max(200 + 5 * n, 100 + 30 * n);
  const estimate = { floorBytes: 100, probes: [1, 2, 4].map((n) => ({ examples: n, bytes: peak(n) })) };
  it('is each probe at its size, the line between probes, the smallest probe below them', () => {
    for (const n of [1, 2, 4]) expect(stepBytesAt(estimate, n)).toBe(peak(n));
    expect(stepBytesAt(estimate, 3)).toBe((peak(2) + peak(4)) / 2);
    expect(stepBytesAt(estimate, 3)).toBeGreaterThanOrEqual(peak(3));
    expect(stepBytesAt({ floorBytes: 100, probes: [{ examples: 4, bytes: peak(4) }] }, 2)).toBe(peak(4));
  });
  it('past the largest probe is the line from the floor through it: never below the peak, where a line through two probes is', () => {
    for (const n of [5, 8, 16, 64]) {
      expect(stepBytesAt(estimate, n)).toBe(100 + n * ((peak(4) - 100) / 4));
      expect(stepBytesAt(estimate, n)).toBeGreaterThanOrEqual(peak(n));
    }
    const throughTwo = peak(4) + (8 - 4) * ((peak(4) - peak(2)) / 2);
    expect(throughTwo).toBeLessThan(peak(8));
  });
});

describe('estimateStepMemory on wasm', () => {
  it('counts tensor allocations, not the heap, and measures the batch itself when the limit allows', async () => {
    const { initBackend } = await import('./backend/index.js');
    const { peakAllocationDuring } = await import('./backend/wasm_heap.js');
    const info = await initBackend({ prefer: 'wasm', log: () => {} });
    expect(info.name).toBe('wasm');
    expect(backendMemoryLimitBytes()).toBe(2 ** 32);
    expect(backendMemoryLimit()).toEqual({ bytes: 2 ** 32, source: 'wasm' });
    process.env.MASKSUB_MEMORY_LIMIT_MIB = '512';
    expect(backendMemoryLimit()).toEqual({ bytes: 512 * 2 ** 20, source: 'env' });
    delete process.env.MASKSUB_MEMORY_LIMIT_MIB;
    const w = convWorkload(48, { variant: 'none' });
    // A heap already grown far past the step (as after an earlier, larger run in the process):
    // its size would say nothing about the step.
    tf.zeros([128 * 2 ** 20]).dispose();
    const estimate = await estimateStepMemory(w.trainer, w.batch, { limitBytes: 2 ** 32 });
    const held = tf.memory().numBytes + peakAllocationDuring(w.step);
    expect(examples(estimate.probes)).toEqual([1, 48]);
    expect(estimate.peakBytes).toBe(held);
    w.dispose();
    await tf.setBackend('cpu');
  });
});

describe('planMicroBatch', () => {
  // 100 bytes held before the step, 10 per example past the probes.
  const estimate = { floorBytes: 100, probes: [{ examples: 1, bytes: 110 }, { examples: 2, bytes: 120 }] };
  it('keeps the whole batch when its step fits with the headroom, with no accumulation', () => {
    // 180 bytes x 1.15 = 207 <= 207.
    expect(planMicroBatch(estimate, { limitBytes: 207, totalExamples: 8 })).toMatchObject({ microBatch: 8, accumSteps: 1, stepBytes: 180 });
    // Under 207 the whole batch would sit inside the headroom: planned as micro-batches.
    expect(planMicroBatch(estimate, { limitBytes: 200, totalExamples: 8 })).toMatchObject({ microBatch: 4, accumSteps: 2 });
    expect(fitsWithMargin(180, 207)).toBe(true);
    expect(fitsWithMargin(180, 206)).toBe(false);
  });
  it('else picks the largest divisor of the batch that fits with the same headroom, counting the gradient sum', () => {
    // Probes that ran beside 20 bytes of optimizer state: a floor of 120. The whole batch needs
    // 120 + 80 = 200, x 1.15 = 230 > 220. 220 / 1.15 = 191.3 bytes usable; with the 10-byte sum
    // 6 examples fit, and the largest divisor of 8 up to 6 is 4 (120 + 40 + 10 = 170 bytes).
    const withState = { floorBytes: 120, probes: [{ examples: 1, bytes: 130 }, { examples: 2, bytes: 140 }] };
    const plan = planMicroBatch(withState, { limitBytes: 220, totalExamples: 8, accumulationBytes: 10 });
    expect(plan).toMatchObject({ microBatch: 4, accumSteps: 2, fitsExamples: 6, stepBytes: 170 });
    expect(MEMORY_PLAN_MARGIN).toBe(0.15);
    // Without the state the whole batch (180 x 1.15 = 207 bytes) would wrongly be planned.
    expect(planMicroBatch(estimate, { limitBytes: 220, totalExamples: 8 }).microBatch).toBe(8);
    // The sum costs an example's room: 7 fit without it (120 + 70 = 190 <= 191.3).
    expect(planMicroBatch(withState, { limitBytes: 220, totalExamples: 8 })).toMatchObject({ microBatch: 4, fitsExamples: 7, stepBytes: 160 });
  });
  it('says when not even one example fits', () => {
    // 110 x 1.15 = 126.5 > 120.
    expect(planMicroBatch(estimate, { limitBytes: 120, totalExamples: 8 })).toMatchObject({ microBatch: 1, accumSteps: 8, fitsExamples: 0 });
  });
});
