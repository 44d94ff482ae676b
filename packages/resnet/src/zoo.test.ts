/**
 * Model-zoo import/export for ResNet: model.safetensors and the BN-folded model.onnx give the
 * same logits (the ONNX one through the folded, batch-norm-free variant), ONNX Runtime agrees,
 * folding our own safetensors model reproduces the exporter's conv weights, save -> load round
 * trips, head re-initialisation, and `masksub verify` on the fixture folder.
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadPretrained, readOnnxWeights, readSafetensors, saveModel, tf, toFloat32, verifyModel, withMaskSub } from '@masksub/core';
import { describeShared, fixturePath } from '../../core/src/testing/shared.js';
import { expectSameTensors, masksubWithEnv, maxAbsDiff, onnxRuntimeOutput, quiet, readReference, referenceTensor, referenceValues } from '../../core/src/testing/parity.js';
import './index.js';
import type { ResNetModel } from './index.js';

describeShared('fixtures/hf-tiny/resnet', 'ResNet from the model zoo formats', () => {
  let pixels: tf.Tensor4D;
  let refLogits: Float32Array;
  const tmp = mkdtempSync(join(tmpdir(), 'masksub-resnet-'));

  beforeAll(async () => {
    await tf.setBackend('cpu');
    const ref = readReference('resnet');
    pixels = referenceTensor<tf.Rank.R4>(ref, 'input.pixel_values');
    refLogits = referenceValues(ref, 'ce.main_logits');
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

    const ortLogits = await onnxRuntimeOutput(fixturePath('resnet', 'model.onnx'), { pixel_values: pixels });
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
    expectSameTensors(again.model.params.export(), model.params.export(), { sameNames: true });
    // Same tensors as the hub file, minus the num_batches_tracked counters.
    expectSameTensors(readSafetensors(join(out, 'model.safetensors')), readSafetensors(fixturePath('resnet', 'model.safetensors')), {
      skip: (name) => name.endsWith('num_batches_tracked'),
    });
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
    const r = masksubWithEnv({ MASKSUB_PLUGINS: '@masksub/resnet' }, 'verify', '--model', fixturePath('resnet'), '--reference', fixturePath('resnet', 'reference.safetensors'));
    expect(r.stdout + r.stderr).toMatch(/all within tolerance/);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/gradients \(26/);
  }, 120_000);
});
