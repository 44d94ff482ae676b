/**
 * Model-zoo import/export for ViT: the same logits from model.safetensors, model.onnx (anonymous
 * transposed MatMul weights) and ONNX Runtime; quantized ONNX within quantization error; and
 * save -> load round trips with identical tensors.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadPretrained, readSafetensors, saveModel, tf, toFloat32, verifyModel, writeSafetensors } from '@masksub/core';
import { describeShared, fixturePath, sharedPath } from '../../core/src/testing/shared.js';
import './index.js';

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describeShared('fixtures/hf-tiny/vit', 'ViT from the model zoo formats', () => {
  let pixels: tf.Tensor4D;
  let refLogits: Float32Array;
  const tmp = mkdtempSync(join(tmpdir(), 'masksub-vit-'));
  const quiet = { log: () => {} };

  beforeAll(async () => {
    await tf.setBackend('cpu');
    const ref = readSafetensors(fixturePath('vit', 'reference.safetensors'));
    const px = ref.get('input.pixel_values')!;
    pixels = tf.tensor4d(toFloat32(px), px.shape as [number, number, number, number]);
    refLogits = toFloat32(ref.get('ce.main_logits')!);
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

    const ort = await import('onnxruntime-node');
    const session = await ort.InferenceSession.create(fixturePath('vit', 'model.onnx'));
    const feeds = { pixel_values: new ort.Tensor('float32', pixels.dataSync() as Float32Array, pixels.shape) };
    const ortLogits = (await session.run(feeds)).logits.data as Float32Array;
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
    const a = model.params.export();
    const b = again.model.params.export();
    expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
    for (const [name, t] of a) expect(Array.from(toFloat32(b.get(name)!)), name).toEqual(Array.from(toFloat32(t)));
    // The saved file carries hub names and PyTorch layouts: same tensors as the original checkpoint.
    const original = readSafetensors(fixturePath('vit', 'model.safetensors'));
    const saved = readSafetensors(join(out, 'model.safetensors'));
    for (const [name, t] of original) expect(Array.from(toFloat32(saved.get(name)!)), name).toEqual(Array.from(toFloat32(t)));
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
