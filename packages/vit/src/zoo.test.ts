/**
 * Model-zoo import/export for ViT: the same logits from model.safetensors, model.onnx (anonymous
 * transposed MatMul weights) and ONNX Runtime; quantized ONNX within quantization error; and
 * save -> load round trips with identical tensors.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadPretrained, readSafetensors, saveModel, tf, verifyModel, writeSafetensors } from '@masksub/core';
import { describeShared, fixturePath, sharedPath } from '../../core/src/testing/shared.js';
import { expectSameTensors, maxAbsDiff, onnxRuntimeOutput, quiet, readReference, referenceTensor, referenceValues } from '../../core/src/testing/parity.js';
import './index.js';

describeShared('fixtures/hf-tiny/vit', 'ViT from the model zoo formats', () => {
  let pixels: tf.Tensor4D;
  let refLogits: Float32Array;
  const tmp = mkdtempSync(join(tmpdir(), 'masksub-vit-'));

  beforeAll(async () => {
    await tf.setBackend('cpu');
    const ref = readReference('vit');
    pixels = referenceTensor<tf.Rank.R4>(ref, 'input.pixel_values');
    refLogits = referenceValues(ref, 'ce.main_logits');
  });
  afterAll(() => {
    pixels.dispose();
    rmSync(tmp, { recursive: true, force: true });
  });

  const logitsOf = async (weights?: string) => {
    const { model, format } = await loadPretrained(fixturePath('vit'), { weights, ...quiet });
    const out = model.forward({ pixel_values: pixels });
    const data = Float32Array.from(out.dataSync());
    out.dispose();
    model.dispose();
    return { data, format };
  };

  it('safetensors, ONNX and ONNX Runtime agree within 1e-4; quantized within 2e-2', async () => {
    const st = await logitsOf();
    expect(st.format).toBe('safetensors');
    const onnx = await logitsOf(fixturePath('vit', 'model.onnx'));
    expect(onnx.format).toBe('onnx');
    expect(maxAbsDiff(onnx.data, st.data)).toBeLessThan(1e-4);
    expect(maxAbsDiff(st.data, refLogits)).toBeLessThan(1e-4);

    const ortLogits = await onnxRuntimeOutput(fixturePath('vit', 'model.onnx'), { pixel_values: pixels });
    expect(maxAbsDiff(onnx.data, ortLogits)).toBeLessThan(1e-4);

    const logs: string[] = [];
    const { model } = await loadPretrained(fixturePath('vit'), { weights: fixturePath('vit', 'model_quantized.onnx'), log: (m) => logs.push(m) });
    const q = model.forward({ pixel_values: pixels });
    expect(maxAbsDiff(q.dataSync(), refLogits)).toBeLessThan(2e-2);
    expect(maxAbsDiff(q.dataSync(), refLogits)).toBeGreaterThan(0); // really the quantized weights
    expect(logs.join('\n')).toMatch(/dequantiz/i);
    q.dispose();
    model.dispose();
  });

  it('save -> load gives identical tensors, and the saved folder verifies against the reference', async () => {
    const { model } = await loadPretrained(fixturePath('vit'), quiet);
    const out = join(tmp, 'saved');
    saveModel(model, out);
    const again = await loadPretrained(out, quiet);
    expectSameTensors(again.model.params.export(), model.params.export(), { sameNames: true });
    // The saved file carries hub names and PyTorch layouts: same tensors as the original checkpoint.
    expectSameTensors(readSafetensors(join(out, 'model.safetensors')), readSafetensors(fixturePath('vit', 'model.safetensors')));
    const report = verifyModel(again.model, fixturePath('vit', 'reference.safetensors'));
    expect(report.ok).toBe(true);
    model.dispose();
    again.model.dispose();
  });

  it('errors name the file and the tensor', async () => {
    await expect(loadPretrained(join(tmp, 'nowhere'), quiet)).rejects.toThrow(/nowhere/);
    const broken = join(tmp, 'broken');
    const { model } = await loadPretrained(fixturePath('vit'), quiet);
    saveModel(model, broken, { hidden_size: 48, num_attention_heads: 4 });
    model.dispose();
    await expect(loadPretrained(broken, quiet)).rejects.toThrow(/model\.safetensors[\s\S]*wrong shape: vit\.embeddings\.cls_token expected \[1,1,48\] found \[1,1,32\]/);
    const noConfig = join(tmp, 'noconfig');
    saveModel((await loadPretrained(fixturePath('vit'), quiet)).model, noConfig);
    rmSync(join(noConfig, 'config.json'));
    await expect(loadPretrained(noConfig, quiet)).rejects.toThrow(/config\.json/);
    copyFileSync(fixturePath('vit', 'config.json'), join(noConfig, 'config.json'));
  });

  it('loads files written with transformers-5 module names through the alias table', async () => {
    const nameMap = JSON.parse(readFileSync(sharedPath('fixtures/hf-tiny/name_map.json'), 'utf8')).vit as Record<string, string>;
    const hubToNew = new Map(Object.entries(nameMap).map(([n, hub]) => [hub, n]));
    const dir = join(tmp, 't5names');
    mkdirSync(dir, { recursive: true });
    copyFileSync(fixturePath('vit', 'config.json'), join(dir, 'config.json'));
    const renamed = [...readSafetensors(fixturePath('vit', 'model.safetensors')).values()].map((t) => ({ ...t, name: hubToNew.get(t.name) ?? t.name }));
    expect(renamed.some((t) => t.name === 'vit.layers.0.attention.q_proj.weight')).toBe(true);
    writeSafetensors(join(dir, 'model.safetensors'), renamed);
    const { model } = await loadPretrained(dir, quiet);
    const out = model.forward({ pixel_values: pixels });
    expect(maxAbsDiff(out.dataSync(), refLogits)).toBeLessThan(1e-4);
    out.dispose();
    model.dispose();
  });

  it('a new label count re-initialises only the head', async () => {
    const { model, created } = await loadPretrained(fixturePath('vit'), { numLabels: 3, ...quiet });
    expect(created.sort()).toEqual(['classifier.bias', 'classifier.weight', 'vit.embeddings.mask_token']);
    expect(model.numClasses).toBe(3);
    const out = model.forward({ pixel_values: pixels });
    expect(out.shape).toEqual([4, 3]);
    out.dispose();
    model.dispose();
  });
});
