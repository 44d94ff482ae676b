import { describe, expect, it } from 'vitest';
import { fromLayersModel } from './layers-model.js';
import { withMaskSub } from './masksub.js';
import { backendMemoryLimitBytes, estimateStepMemory, fitsWithMargin, MEMORY_PLAN_MARGIN, planMicroBatch } from './memory.js';
import { createOptimizer } from './optim/index.js';
import { tf } from './tf.js';

describe('estimateStepMemory', () => {
  it('extrapolates a step peak from a quarter and a half of the batch to within 10 % of the measured peak, and leaves no trace', async () => {
    await tf.setBackend('cpu');
    expect(backendMemoryLimitBytes()).toBeNull();
    const net = tf.sequential({
      layers: [
        tf.layers.conv2d({ inputShape: [16, 16, 3], filters: 8, kernelSize: 3, padding: 'same', activation: 'relu' }),
        tf.layers.batchNormalization({}),
        tf.layers.conv2d({ filters: 8, kernelSize: 3, padding: 'same', activation: 'relu' }),
        tf.layers.globalAveragePooling2d({}),
        tf.layers.dense({ units: 10 }),
      ],
    });
    const model = fromLayersModel(net, { patch: 8 });
    const trainer = withMaskSub(model, { seed: 5 });
    const batchSize = 8;
    const x = tf.randomNormal([batchSize, 16, 16, 3], 0, 1, 'float32', 2);
    const labels = tf.tensor1d(Array.from({ length: batchSize }, (_, i) => i % 10), 'int32');
    const batch = { inputs: { pixel_values: x }, targets: { labels } };
    const rngBefore = JSON.stringify(trainer.rng.getState());
    const buffersBefore = [...model.params.variables].filter(([n]) => !model.params.trainable().has(n)).map(([n, v]) => [n, Array.from(v.dataSync())] as const);
    const tensorsBefore = tf.memory().numTensors;

    const estimate = await estimateStepMemory(trainer, batch);

    expect(tf.memory().numTensors).toBe(tensorsBefore);
    expect(JSON.stringify(trainer.rng.getState())).toBe(rngBefore);
    for (const [name, values] of buffersBefore) expect(Array.from(model.params.get(name).dataSync())).toEqual(values);
    const measured = await tf.profile(() => {
      const r = trainer.computeGradients(batch, 0);
      tf.dispose([...r.grads.values(), r.mainLogits, r.subLogits!]);
    });
    expect(estimate.bytesPerExample).toBeGreaterThan(0);
    expect(Math.abs(estimate.peakBytes - measured.peakBytes) / measured.peakBytes).toBeLessThan(0.1);
    // An optimizer made before the estimate (its state is created with it) is counted, once.
    const optimizer = createOptimizer({ kind: 'adamw' }, model.params.trainable());
    const withState = await estimateStepMemory(trainer, batch);
    expect(withState.peakBytes - estimate.peakBytes).toBe(2 * 4 * model.params.countTrainable());
    optimizer.dispose();
    tf.dispose([x, labels]);
    model.dispose();
  });
});

describe('estimateStepMemory under a limit', () => {
  it('probes one example first and no size its upper bound calls unsafe, even where a quarter of the batch is', async () => {
    await tf.setBackend('cpu');
    const net = tf.sequential({
      layers: [
        tf.layers.conv2d({ inputShape: [16, 16, 3], filters: 16, kernelSize: 3, padding: 'same', activation: 'relu' }),
        tf.layers.globalAveragePooling2d({}),
        tf.layers.dense({ units: 10 }),
      ],
    });
    const model = fromLayersModel(net, { patch: 8 });
    const trainer = withMaskSub(model, { variant: 'none' });
    const batchSize = 64;
    const x = tf.randomNormal([batchSize, 16, 16, 3], 0, 1, 'float32', 2);
    const labels = tf.tensor1d(Array.from({ length: batchSize }, (_, i) => i % 10), 'int32');
    const batch = { inputs: { pixel_values: x }, targets: { labels } };
    const floor = tf.memory().numBytes;
    const free = await estimateStepMemory(trainer, batch);
    expect(free.probeSizes).toEqual([16, 32]);
    // A limit under which 12 examples are safe by the line, the quarter (16) not.
    const limitBytes = (floor + 12 * free.bytesPerExample) / 0.8;
    const estimate = await estimateStepMemory(trainer, batch, { limitBytes });
    expect(estimate.probeSizes[0]).toBe(1);
    expect(Math.max(...estimate.probeSizes)).toBeLessThan(16);
    expect(estimate.probeSizes.length).toBeGreaterThanOrEqual(2);
    expect(estimate.peakBytes).toBeGreaterThanOrEqual(free.peakBytes * 0.95);
    // A limit under which not even two examples are safe: one probe, its upper bound.
    const tight = await estimateStepMemory(trainer, batch, { limitBytes: floor / 0.8 + 1 });
    expect(tight.probeSizes).toEqual([1]);
    expect(tight.peakBytes).toBeGreaterThan(free.peakBytes);
    tf.dispose([x, labels]);
    model.dispose();
  });
});

describe('estimateStepMemory when the fixed gradient phase hides the activations', () => {
  // Wide dense layers, few activations per example: the parameters' gradients (held from the main
  // pass's backward to the end of the step) set the peak at 4 and 8 examples alike, so those
  // probes measure no growth.
  async function flatPhaseModel() {
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
    const model = fromLayersModel(net, { patch: 4 });
    const trainer = withMaskSub(model, { seed: 5 });
    const n = 16;
    const x = tf.randomNormal([n, 8, 8, 1], 0, 1, 'float32', 3);
    const labels = tf.tensor1d(Array.from({ length: n }, (_, i) => i % 10), 'int32');
    const batch = { inputs: { pixel_values: x }, targets: { labels } };
    const measured = await tf.profile(() => {
      const r = trainer.computeGradients(batch, 0);
      tf.dispose([...r.grads.values(), r.mainLogits, r.subLogits!]);
    });
    return { model, trainer, batch, measuredPeak: measured.peakBytes, dispose: () => (tf.dispose([x, labels]), model.dispose()) };
  }

  it('takes a larger probe, at the batch size when that is safe, instead of extrapolating no growth', async () => {
    const m = await flatPhaseModel();
    const estimate = await estimateStepMemory(m.trainer, m.batch);
    expect(estimate.probeSizes).toEqual([4, 8, 16]); // the quarter and half probes were flat
    expect(estimate.probeExamples).toBe(16);
    expect(Math.abs(estimate.peakBytes - m.measuredPeak) / m.measuredPeak).toBeLessThan(0.02);
    m.dispose();
  });

  it('where no larger probe is safe under the limit, returns an upper bound, never less than the step needs', async () => {
    const m = await flatPhaseModel();
    const tensorsBefore = tf.memory().numTensors;
    const floor = tf.memory().numBytes;
    // Under a limit of the whole step's peak, the gradients (charged to the one-example probe)
    // leave no second probe safe.
    const estimate = await estimateStepMemory(m.trainer, m.batch, { limitBytes: m.measuredPeak });
    expect(tf.memory().numTensors).toBe(tensorsBefore);
    expect(estimate.probeSizes).toEqual([1]);
    expect(estimate.peakBytes).toBeGreaterThanOrEqual(m.measuredPeak);
    // The bound: floor plus 16 times the one-example step's bytes above it.
    expect(estimate.peakBytes).toBe(floor + 16 * estimate.bytesPerExample);
    m.dispose();
  });
});

describe('estimateStepMemory on wasm', () => {
  it('counts tensor allocations, not the heap, and predicts a 4x larger batch within 3 % of what it then holds', async () => {
    const { initBackend } = await import('./backend/index.js');
    const { peakAllocationDuring } = await import('./backend/wasm_heap.js');
    const info = await initBackend({ prefer: 'wasm', log: () => {} });
    expect(info.name).toBe('wasm');
    expect(backendMemoryLimitBytes()).toBe(2 ** 32);
    const net = tf.sequential({
      layers: [
        tf.layers.conv2d({ inputShape: [64, 64, 3], filters: 32, kernelSize: 3, padding: 'same', activation: 'relu' }),
        tf.layers.conv2d({ filters: 32, kernelSize: 3, padding: 'same', activation: 'relu' }),
        tf.layers.globalAveragePooling2d({}),
        tf.layers.dense({ units: 10 }),
      ],
    });
    const model = fromLayersModel(net, { patch: 16 });
    const trainer = withMaskSub(model, { variant: 'none' });
    const batchSize = 48;
    const x = tf.randomNormal([batchSize, 64, 64, 3], 0, 1, 'float32', 2);
    const labels = tf.tensor1d(Array.from({ length: batchSize }, (_, i) => i % 10), 'int32');
    const batch = { inputs: { pixel_values: x }, targets: { labels } };
    const step = () => {
      const r = trainer.computeGradients(batch, 0);
      tf.dispose([...r.grads.values(), r.mainLogits]);
    };
    // A heap already grown far past the step (as after an earlier, larger run in the process):
    // its size would say nothing about the step.
    const ballast = tf.zeros([128 * 2 ** 20]);
    ballast.dispose();
    const estimate = await estimateStepMemory(trainer, batch);
    const held = tf.memory().numBytes + peakAllocationDuring(step);
    expect(estimate.probeSizes).toEqual([12, 24]);
    expect(Math.abs(estimate.peakBytes - held) / held).toBeLessThan(0.03);
    tf.dispose([x, labels]);
    model.dispose();
    await tf.setBackend('cpu');
  });
});

describe('planMicroBatch', () => {
  // 100 bytes fixed (weights), 10 per example: a probe at 2 examples peaked at 120.
  const estimate = { peakBytes: 0, bytesPerExample: 10, probeBytes: 120, probeExamples: 2, probeSizes: [1, 2] };
  it('keeps the whole batch when its step fits with the headroom, with no accumulation', () => {
    // 180 bytes x 1.15 = 207 <= 207.
    expect(planMicroBatch(estimate, { limitBytes: 207, totalExamples: 8 })).toMatchObject({ microBatch: 8, accumSteps: 1, stepBytes: 180 });
    // Under 207 the whole batch would sit inside the estimate's error: planned as micro-batches.
    expect(planMicroBatch(estimate, { limitBytes: 200, totalExamples: 8 })).toMatchObject({ microBatch: 4, accumSteps: 2 });
    expect(fitsWithMargin(180, 207)).toBe(true);
    expect(fitsWithMargin(180, 206)).toBe(false);
  });
  it('else picks the largest divisor of the batch that fits with the same headroom, counting the gradient sum', () => {
    // Probes that ran beside 20 bytes of optimizer state: 120 bytes fixed. The whole batch needs
    // 120 + 80 = 200, x 1.15 = 230 > 220. 220 / 1.15 = 191.3 bytes usable; with the 10-byte sum
    // 61.3 are left for examples: 6 fit, and the largest divisor of 8 up to 6 is 4 (120 + 40 + 10 = 170 bytes).
    const withState = { ...estimate, probeBytes: 140 };
    const plan = planMicroBatch(withState, { limitBytes: 220, totalExamples: 8, accumulationBytes: 10 });
    expect(plan).toMatchObject({ microBatch: 4, accumSteps: 2, fitsExamples: 6, stepBytes: 170 });
    expect(MEMORY_PLAN_MARGIN).toBe(0.15);
    // Without the state and the sum the whole batch (180 x 1.15 = 207 bytes) would wrongly be planned.
    expect(planMicroBatch(estimate, { limitBytes: 220, totalExamples: 8 }).microBatch).toBe(8);
    // The sum costs an example's room: 7 fit without it (120 + 70 = 190 <= 191.3).
    expect(planMicroBatch(withState, { limitBytes: 220, totalExamples: 8 })).toMatchObject({ microBatch: 4, fitsExamples: 7, stepBytes: 160 });
  });
  it('says when not even one example fits', () => {
    // 110 x 1.15 = 126.5 > 120.
    expect(planMicroBatch(estimate, { limitBytes: 120, totalExamples: 8 })).toMatchObject({ microBatch: 1, accumSteps: 8, fitsExamples: 0 });
  });
});
