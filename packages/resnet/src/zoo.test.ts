/**
 * Model-zoo import/export for ResNet: model.safetensors and the BN-folded model.onnx give the
 * same logits (the ONNX one through the folded, batch-norm-free variant), ONNX Runtime agrees,
 * folding our own safetensors model reproduces the exporter's conv weights, save -> load round
 * trips, head re-initialisation, and `masksub verify` on the fixture folder.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadPretrained, readOnnxWeights, readSafetensors, saveModel, tf, toFloat32, verifyModel, withMaskSub } from '@masksub/core';
import { describeShared, fixturePath } from '../../core/src/testing/shared.js';
import './index.js';
import type { ResNetModel } from './index.js';

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

describeShared('fixtures/hf-tiny/resnet', 'ResNet from the model zoo formats', () => {
  let pixels: tf.Tensor4D;
  let refLogits: Float32Array;
  const tmp = mkdtempSync(join(tmpdir(), 'masksub-resnet-'));
  const quiet = { log: () => {} };

  beforeAll(async () => {
    await tf.setBackend('cpu');
    const ref = readSafetensors(fixturePath('resnet', 'reference.safetensors'));
    const px = ref.get('input.pixel_values')!;
    pixels = tf.tensor4d(toFloat32(px), px.shape as [number, number, number, number]);
    refLogits = toFloat32(ref.get('ce.main_logits')!);
  });
  afterAll(() => {
    pixels.dispose();
    rmSync(tmp, { recursive: true, force: true });
  });

  const logitsOf = (model: { forward: (i: { pixel_values: tf.Tensor }) => tf.Tensor }) => {
    const out = model.forward({ pixel_values: pixels });
    const data = Float32Array.from(out.dataSync());
    out.dispose();
    return data;
  };

  it('a folder with only model.onnx loads the BN-folded variant: same logits as safetensors and ONNX Runtime, one log line', async () => {
    const st = await loadPretrained(fixturePath('resnet'), quiet);
    expect(st.format).toBe('safetensors');
    const stLogits = logitsOf(st.model);
    expect(maxAbsDiff(stLogits, refLogits)).toBeLessThan(1e-4);

    const onnxOnly = join(tmp, 'onnx-only');
    mkdirSync(onnxOnly, { recursive: true });
    copyFileSync(fixturePath('resnet', 'config.json'), join(onnxOnly, 'config.json'));
    copyFileSync(fixturePath('resnet', 'model.onnx'), join(onnxOnly, 'model.onnx'));
    const logs: string[] = [];
    const onnx = await loadPretrained(onnxOnly, { log: (m) => logs.push(m) });
    expect(onnx.format).toBe('onnx');
    const model = onnx.model as ResNetModel;
    expect(model.params.folded).toBe(true);
    expect(model.params.has('resnet.embedder.embedder.normalization.weight')).toBe(false);
    expect(model.params.has('resnet.embedder.embedder.convolution.bias')).toBe(true);
    expect(onnx.created).toEqual([]);
    expect(logs).toHaveLength(1);
    expect(logs[0]).toMatch(/model\.onnx: batch norm was folded into 8 convolution/);
    const onnxLogits = logitsOf(model);
    expect(maxAbsDiff(onnxLogits, stLogits)).toBeLessThan(1e-4);

    const ort = await import('onnxruntime-node');
    const session = await ort.InferenceSession.create(fixturePath('resnet', 'model.onnx'));
    const feeds = { pixel_values: new ort.Tensor('float32', pixels.dataSync() as Float32Array, pixels.shape) };
    const ortLogits = (await session.run(feeds)).logits.data as Float32Array;
    expect(maxAbsDiff(onnxLogits, ortLogits)).toBeLessThan(1e-4);

    // The folded model is trainable: a MaskSub step gives gradients for conv weights and biases only.
    const r = withMaskSub(model).computeGradients({ inputs: { pixel_values: pixels }, targets: { labels: tf.tensor1d([0, 1, 2, 3], 'int32') } });
    expect([...r.grads.keys()].some((n) => n.endsWith('.convolution.bias'))).toBe(true);
    expect([...r.grads.keys()].every((n) => !n.includes('normalization'))).toBe(true);
    tf.dispose([r.mainLogits, r.subLogits!, ...r.grads.values()]);
    st.model.dispose();
    model.dispose();
  });

  it('folding the safetensors model reproduces the exporter: ONNX conv weights and logits', async () => {
    const { model } = await loadPretrained(fixturePath('resnet'), quiet);
    const before = logitsOf(model);
    (model as ResNetModel).foldBatchNorm();
    expect((model as ResNetModel).params.folded).toBe(true);
    expect(maxAbsDiff(logitsOf(model), before)).toBeLessThan(1e-5);
    const ours = model.params.export();
    const exported = readOnnxWeights(fixturePath('resnet', 'model.onnx')).tensors;
    expect([...ours.keys()].sort()).toEqual([...exported.keys()].sort());
    for (const [name, t] of exported) {
      const theirs = toFloat32(t);
      const scale = Math.max(...Array.from(theirs, Math.abs));
      expect(maxAbsDiff(toFloat32(ours.get(name)!), theirs) / scale, name).toBeLessThan(1e-5);
    }
    model.dispose();
  });

  it('save -> load gives identical tensors, hub names; the folded model saves and reloads folded', async () => {
    const { model } = await loadPretrained(fixturePath('resnet'), quiet);
    const out = join(tmp, 'saved');
    saveModel(model, out);
    const again = await loadPretrained(out, quiet);
    const a = model.params.export();
    const b = again.model.params.export();
    expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
    for (const [name, t] of a) expect(Array.from(toFloat32(b.get(name)!)), name).toEqual(Array.from(toFloat32(t)));
    // Same tensors as the hub file, minus the num_batches_tracked counters.
    const original = readSafetensors(fixturePath('resnet', 'model.safetensors'));
    const saved = readSafetensors(join(out, 'model.safetensors'));
    for (const [name, t] of original) {
      if (name.endsWith('num_batches_tracked')) continue;
      expect(Array.from(toFloat32(saved.get(name)!)), name).toEqual(Array.from(toFloat32(t)));
    }
    expect(verifyModel(again.model, fixturePath('resnet', 'reference.safetensors')).ok).toBe(true);

    (model as ResNetModel).foldBatchNorm();
    const foldedDir = join(tmp, 'saved-folded');
    saveModel(model, foldedDir);
    const reloaded = await loadPretrained(foldedDir, quiet);
    expect((reloaded.model as ResNetModel).params.folded).toBe(true);
    expect(maxAbsDiff(logitsOf(reloaded.model), refLogits)).toBeLessThan(1e-4);
    for (const m of [model, again.model, reloaded.model]) m.dispose();
  });

  it('a new label count re-initialises only the head', async () => {
    const { model, created } = await loadPretrained(fixturePath('resnet'), { numLabels: 3, ...quiet });
    expect(created.sort()).toEqual(['classifier.1.bias', 'classifier.1.weight']);
    expect(model.numClasses).toBe(3);
    const out = model.forward({ pixel_values: pixels });
    expect(out.shape).toEqual([4, 3]);
    out.dispose();
    model.dispose();
  });

  it('errors name the file and the tensor', async () => {
    const { model } = await loadPretrained(fixturePath('resnet'), quiet);
    const broken = join(tmp, 'broken');
    saveModel(model, broken, { embedding_size: 8 });
    model.dispose();
    await expect(loadPretrained(broken, quiet)).rejects.toThrow(/model\.safetensors[\s\S]*resnet\.embedder\.embedder\.convolution\.weight expected \[8,3,7,7\] found \[16,3,7,7\]/);
    const bad = join(tmp, 'bad-config');
    saveModel((await loadPretrained(fixturePath('resnet'), quiet)).model, bad, { layer_type: 'wide' });
    await expect(loadPretrained(bad, quiet)).rejects.toThrow(/layer_type/);
  });

  it('masksub verify passes on the fixture folder', () => {
    const cli = join(repo, 'packages/core/src/cli/main.ts');
    const run = (...args: string[]) =>
      spawnSync(process.execPath, ['--import', 'tsx', '--conditions=source', cli, ...args], {
        cwd: repo,
        encoding: 'utf8',
        timeout: 120_000,
        env: { ...process.env, MASKSUB_PLUGINS: '@masksub/resnet' },
      });
    const r = run('verify', '--model', fixturePath('resnet'), '--reference', fixturePath('resnet', 'reference.safetensors'));
    expect(r.stdout + r.stderr).toMatch(/all within tolerance/);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/gradients \(26/);
  }, 120_000);
});
