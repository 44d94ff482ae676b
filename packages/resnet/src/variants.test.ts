/**
 * Batch-norm modes (batch statistics and PyTorch's running-statistic update in 'train', frozen
 * in 'eval'), HF config variants (basic layers, downsample flags), DropSub / PathSub.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng, initBackend, tf, withMaskSub } from '@masksub/core';
import { ResNetModel, batchNorm2d, type BatchNormMode } from './index.js';

const tiny = { model_type: 'resnet', embedding_size: 8, hidden_sizes: [8, 16], depths: [1, 1], layer_type: 'bottleneck', num_labels: 5 };

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

describe('batch norm', () => {
  it("'train' normalises by batch statistics and moves running stats like PyTorch (unbiased variance, momentum 0.1)", async () => {
    await tf.setBackend('cpu');
    const rng = new Rng(5);
    const [b, h, w, c] = [2, 3, 3, 4];
    const values = Float32Array.from({ length: b * h * w * c }, () => rng.normal() * 2 + 1);
    const x = tf.tensor4d(values, [b, h, w, c]);
    const v = {
      weight: tf.tensor1d([1, 2, 0.5, 1]),
      bias: tf.tensor1d([0, 1, -1, 0.5]),
      runningMean: tf.variable(tf.zeros([c]), false),
      runningVar: tf.variable(tf.ones([c]), false),
    };
    const y = batchNorm2d(x, v, true);
    const n = b * h * w;
    const ys = y.dataSync();
    const rm = v.runningMean.dataSync();
    const rv = v.runningVar.dataSync();
    const gamma = [1, 2, 0.5, 1];
    const beta = [0, 1, -1, 0.5];
    for (let ch = 0; ch < c; ch++) {
      let mean = 0;
      for (let i = 0; i < n; i++) mean += values[i * c + ch] / n;
      let sq = 0;
      for (let i = 0; i < n; i++) sq += (values[i * c + ch] - mean) ** 2;
      const biased = sq / n;
      for (let i = 0; i < n; i++) expect(ys[i * c + ch]).toBeCloseTo(((values[i * c + ch] - mean) / Math.sqrt(biased + 1e-5)) * gamma[ch] + beta[ch], 4);
      expect(rm[ch]).toBeCloseTo(0.1 * mean, 5);
      expect(rv[ch]).toBeCloseTo(0.9 + 0.1 * (sq / (n - 1)), 5);
    }
    // Eval mode with the same statistics is the affine map of the running ones.
    const e = batchNorm2d(x, v, false);
    expect(e.dataSync()[1]).toBeCloseTo(((values[1] - rm[1]) / Math.sqrt(rv[1] + 1e-5)) * 2 + 1, 4);
    tf.dispose([x, y, e, v.weight, v.bias, v.runningMean, v.runningVar]);
  });

  it('the model honours bn_mode: batch statistics and running updates by default (train, as the official step), frozen in eval mode', async () => {
    await initBackend({ prefer: 'wasm', log: () => {} });
    const x = tf.randomNormal([3, 3, 16, 16], 0.5, 2, 'float32', 1);
    const labels = tf.tensor1d([0, 1, 4], 'int32');
    const stat = 'resnet.embedder.embedder.normalization.running_mean';
    const run = (mode: BatchNormMode | undefined) => {
      const m = new ResNetModel(mode ? { ...tiny, bn_mode: mode } : tiny, { rng: new Rng(2) });
      const before = m.params.get(stat).dataSync().slice();
      const evalOut = m.forward({ pixel_values: x });
      const trainOut = m.forward({ pixel_values: x }, { training: true });
      const moved = Array.from(m.params.get(stat).dataSync()).some((v, i) => v !== before[i]);
      // A training step never gives the running statistics a gradient.
      const r = withMaskSub(m).computeGradients({ inputs: { pixel_values: x }, targets: { labels } });
      const statGrad = r.grads.has(stat);
      const diff = maxAbsDiff(evalOut, trainOut);
      tf.dispose([evalOut, trainOut, r.mainLogits, r.subLogits!, ...r.grads.values()]);
      const mode2 = m.bnMode;
      m.dispose();
      return { diff, moved, statGrad, mode: mode2 };
    };
    const frozen = run('eval');
    expect(frozen).toEqual({ diff: 0, moved: false, statGrad: false, mode: 'eval' });
    const train = run(undefined);
    expect(train.mode).toBe('train');
    expect(train.diff).toBeGreaterThan(1e-3);
    expect(train.moved).toBe(true);
    expect(train.statGrad).toBe(false);
    // A per-pass override wins over the model's mode.
    const m = new ResNetModel({ ...tiny, bn_mode: 'train' }, { rng: new Rng(2) });
    // Batch-statistics passes replace the running-stat tensors: nothing leaks.
    const before = tf.memory().numTensors;
    tf.dispose(m.forward({ pixel_values: x }, { training: true }));
    expect(tf.memory().numTensors).toBe(before);
    const a = m.forward({ pixel_values: x }, { training: true, bnMode: 'eval' });
    const b = m.forward({ pixel_values: x });
    expect(maxAbsDiff(a, b)).toBe(0);
    tf.dispose([a, b, x, labels]);
    m.dispose();
    expect(() => new ResNetModel({ ...tiny, bn_mode: 'batch' })).toThrow(/bn_mode/);
  });
});

describe('HF ResNet config variants', () => {
  it('basic layers: two 3x3 convs, shortcut only where shape changes; downsample_in_first_stage halves the map', async () => {
    await tf.setBackend('cpu');
    const m = new ResNetModel({ ...tiny, layer_type: 'basic', depths: [2, 1], downsample_in_first_stage: true });
    const names = [...m.params.specs.keys()];
    expect(names).toContain('resnet.encoder.stages.0.layers.0.shortcut.convolution.weight'); // stride 2 in stage 0
    expect(names).not.toContain('resnet.encoder.stages.0.layers.1.shortcut.convolution.weight');
    expect(m.params.specs.get('resnet.encoder.stages.0.layers.1.layer.1.convolution.weight')!.shape).toEqual([8, 8, 3, 3]);
    expect(names.some((n) => n.includes('layer.2'))).toBe(false);
    const out = m.forward({ pixel_values: tf.zeros([1, 3, 64, 64]) });
    expect(out.shape).toEqual([1, 5]);
    out.dispose();
    m.dispose();
  });

  it('downsample_in_bottleneck moves the stride from the 3x3 to the first 1x1 conv', () => {
    const strides = (flag: boolean) => {
      const m = new ResNetModel({ ...tiny, downsample_in_bottleneck: flag });
      const plan = m.params.units.filter((u) => u.conv.startsWith('resnet.encoder.stages.1.layers.0.layer.')).map((u) => u.stride);
      m.dispose();
      return plan;
    };
    expect(strides(false)).toEqual([1, 2, 1]);
    expect(strides(true)).toEqual([2, 1, 1]);
  });
});

describe('ResNet sub-pass variants', () => {
  let model: ResNetModel;
  let batch: { inputs: { pixel_values: tf.Tensor }; targets: { labels: tf.Tensor1D } };
  beforeAll(async () => {
    // Tensors only once the backend is up (module-level ones would land on whichever backend
    // tfjs picks first).
    await initBackend({ prefer: 'wasm', log: () => {} });
    model = new ResNetModel(tiny, { rng: new Rng(3) });
    batch = { inputs: { pixel_values: tf.randomNormal([3, 3, 16, 16], 0, 1, 'float32', 2) }, targets: { labels: tf.tensor1d([0, 1, 4], 'int32') } };
  });
  afterAll(() => {
    model.dispose();
    tf.dispose([batch.inputs.pixel_values, batch.targets.labels]);
  });

  for (const variant of ['dropsub', 'pathsub'] as const) {
    it(`${variant}: the sub pass is stochastic, the main pass deterministic`, () => {
      const a = withMaskSub(model, { variant, ratio: 0.5, seed: 1 }).computeGradients(batch);
      const b = withMaskSub(model, { variant, ratio: 0.5, seed: 2 }).computeGradients(batch);
      expect(maxAbsDiff(a.mainLogits, b.mainLogits)).toBe(0);
      expect(maxAbsDiff(a.subLogits!, a.mainLogits)).toBeGreaterThan(1e-4);
      expect(maxAbsDiff(a.subLogits!, b.subLogits!)).toBeGreaterThan(1e-4);
      const c = withMaskSub(model, { variant, ratio: 0.5, seed: 1 }).computeGradients(batch);
      expect(maxAbsDiff(a.subLogits!, c.subLogits!)).toBe(0);
      tf.dispose([a, b, c].flatMap((r) => [r.mainLogits, r.subLogits!, ...r.grads.values()]));
    });
  }

  it('only zero-fill is a drop operator, and the option is named', () => {
    expect(model.dropOperator('zero-fill').kind).toBe('zero-fill');
    expect(() => model.dropOperator('token-removal')).toThrow(/drop/);
  });
});

describe('ResNet fidelity options', () => {
  it('both MaskSub passes update the running statistics (main, then sub), as two train-mode forwards do', async () => {
    await tf.setBackend('cpu');
    const x = tf.randomNormal([3, 3, 64, 64], 0.5, 2, 'float32', 1);
    const batch = { inputs: { pixel_values: x }, targets: { labels: tf.tensor1d([0, 1, 4], 'int32') } };
    const stat = 'resnet.embedder.embedder.normalization.running_mean';
    const after = (variant: 'none' | 'masksub') => {
      const m = new ResNetModel(tiny, { rng: new Rng(2) });
      const r = withMaskSub(m, { variant, seed: 3 }).computeGradients(batch);
      const v = Array.from(m.params.get(stat).dataSync());
      tf.dispose([r.mainLogits, r.subLogits ?? [], ...r.grads.values()]);
      m.dispose();
      return v;
    };
    const one = after('none');
    const two = after('masksub');
    expect(Math.max(...one.map((v, i) => Math.abs(v - two[i])))).toBeGreaterThan(1e-6);
    tf.dispose([x, batch.targets.labels]);
  });

  it('drop_path_rate: stochastic depth on the residual branches in training passes only (timm ResNet)', async () => {
    await tf.setBackend('cpu');
    const x = tf.randomNormal([4, 3, 32, 32], 0, 1, 'float32', 5);
    const m = new ResNetModel({ ...tiny, drop_path_rate: 0.5, drop_path_rule: 'uniform', bn_mode: 'eval' }, { rng: new Rng(2) });
    const plain = new ResNetModel({ ...tiny, bn_mode: 'eval' }, { rng: new Rng(2) });
    const a = m.forward({ pixel_values: x }, { training: true, seed: 1 });
    const b = m.forward({ pixel_values: x }, { training: true, seed: 2 });
    const e = m.forward({ pixel_values: x });
    const p = plain.forward({ pixel_values: x }, { training: true, seed: 1 });
    expect(maxAbsDiff(a, b)).toBeGreaterThan(1e-5);
    expect(maxAbsDiff(e, p)).toBeLessThan(1e-6);
    expect(() => new ResNetModel({ ...tiny, drop_path_rule: 'ramp' })).toThrow(/drop_path_rule/);
    tf.dispose([x, a, b, e, p]);
    m.dispose();
    plain.dispose();
  });
});
