/**
 * Model-zoo import/export for CLIP: the same weights and logits from model.safetensors and
 * model.onnx (anonymous transposed MatMul weights), ONNX Runtime's logits_per_image, hub files
 * with the old position_ids buffers, save -> load round trips, and errors naming file and tensor.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadPretrained, readSafetensors, saveModel, tf, toFloat32, writeSafetensors, type HostTensor, type ModelInputs } from '@masksub/core';
import { describeShared, fixturePath } from '../../core/src/testing/shared.js';
import { ClipModel } from './index.js';

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describeShared('fixtures/hf-tiny/clip', 'CLIP from the model zoo formats', () => {
  let inputs: ModelInputs;
  let idsHost: HostTensor;
  let refLogits: Float32Array;
  const tmp = mkdtempSync(join(tmpdir(), 'masksub-clip-'));
  const quiet = { log: () => {} };

  beforeAll(async () => {
    await tf.setBackend('cpu');
    const ref = readSafetensors(fixturePath('clip', 'reference.safetensors'));
    const px = ref.get('input.pixel_values')!;
    idsHost = ref.get('input.input_ids')!;
    const shape = idsHost.shape as [number, number];
    inputs = {
      pixel_values: tf.tensor4d(toFloat32(px), px.shape as [number, number, number, number]),
      input_ids: tf.tensor2d(Int32Array.from(toFloat32(idsHost)), shape, 'int32'),
      attention_mask: tf.tensor2d(Int32Array.from(toFloat32(ref.get('input.attention_mask')!)), shape, 'int32'),
    };
    refLogits = toFloat32(ref.get('hf_logits_per_image')!);
  });
  afterAll(() => {
    tf.dispose(Object.values(inputs ?? {}));
    rmSync(tmp, { recursive: true, force: true });
  });

  const logitsOf = async (dir: string, weights?: string) => {
    const { model, format } = await loadPretrained(dir, { weights, ...quiet });
    expect(model).toBeInstanceOf(ClipModel);
    const out = model.forward(inputs);
    const data = Float32Array.from(out.dataSync());
    const tensors = model.params.export();
    out.dispose();
    model.dispose();
    return { data, format, tensors };
  };

  it('safetensors, ONNX and ONNX Runtime agree: same 78 tensors, logits within 1e-4', async () => {
    const st = await logitsOf(fixturePath('clip'));
    expect(st.format).toBe('safetensors');
    expect(maxAbsDiff(st.data, refLogits)).toBeLessThan(1e-4);
    const onnx = await logitsOf(fixturePath('clip'), fixturePath('clip', 'model.onnx'));
    expect(onnx.format).toBe('onnx');
    // Every parameter, including the 26 anonymous transposed MatMul weights, lands on the same values.
    expect(onnx.tensors.size).toBe(78);
    for (const [name, t] of st.tensors) expect(maxAbsDiff(toFloat32(onnx.tensors.get(name)!), toFloat32(t)), name).toBe(0);
    expect(maxAbsDiff(onnx.data, st.data)).toBeLessThan(1e-4);

    const ort = await import('onnxruntime-node');
    const session = await ort.InferenceSession.create(fixturePath('clip', 'model.onnx'));
    const int64 = (t: tf.Tensor) => new ort.Tensor('int64', BigInt64Array.from(t.dataSync() as Int32Array, (v) => BigInt(v)), t.shape);
    const feeds = {
      input_ids: int64(inputs.input_ids),
      attention_mask: int64(inputs.attention_mask),
      pixel_values: new ort.Tensor('float32', inputs.pixel_values.dataSync() as Float32Array, inputs.pixel_values.shape),
    };
    const ortLogits = (await session.run(feeds)).logits_per_image.data as Float32Array;
    expect(maxAbsDiff(onnx.data, ortLogits)).toBeLessThan(1e-4);
  });

  it('save -> load gives identical tensors in hub names and PyTorch layouts', async () => {
    const { model } = await loadPretrained(fixturePath('clip'), quiet);
    const out = join(tmp, 'saved');
    saveModel(model, out);
    const again = await loadPretrained(out, quiet);
    const a = model.params.export();
    const b = again.model.params.export();
    expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
    for (const [name, t] of a) expect(Array.from(toFloat32(b.get(name)!)), name).toEqual(Array.from(toFloat32(t)));
    const original = readSafetensors(fixturePath('clip', 'model.safetensors'));
    const saved = readSafetensors(join(out, 'model.safetensors'));
    expect([...saved.keys()].sort()).toEqual([...original.keys()].sort());
    for (const [name, t] of original) {
      expect(saved.get(name)!.shape, name).toEqual(t.shape);
      expect(Array.from(toFloat32(saved.get(name)!)), name).toEqual(Array.from(toFloat32(t)));
    }
    // The config round-trips too (nested text/vision sections).
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).text_config.eos_token_id).toBe(2);
    const y = again.model.forward(inputs);
    expect(maxAbsDiff(y.dataSync(), refLogits)).toBeLessThan(1e-4);
    y.dispose();
    model.dispose();
    again.model.dispose();
  });

  it('loads hub files that still carry the position_ids buffers', async () => {
    const dir = join(tmp, 'old-hub');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'config.json'), readFileSync(fixturePath('clip', 'config.json')));
    const tensors = [...readSafetensors(fixturePath('clip', 'model.safetensors')).values()];
    // transformers < 4.31 saved these int64 arange buffers with the weights.
    tensors.push({ name: 'text_model.embeddings.position_ids', dtype: 'int64', shape: [1, 16], data: BigInt64Array.from({ length: 16 }, (_, i) => BigInt(i)) });
    tensors.push({ name: 'vision_model.embeddings.position_ids', dtype: 'int64', shape: [1, 17], data: BigInt64Array.from({ length: 17 }, (_, i) => BigInt(i)) });
    writeSafetensors(join(dir, 'model.safetensors'), tensors);
    const { data } = await logitsOf(dir);
    expect(maxAbsDiff(data, refLogits)).toBeLessThan(1e-4);
  });

  it('errors name the file and the tensor', async () => {
    const broken = join(tmp, 'broken');
    const { model } = await loadPretrained(fixturePath('clip'), quiet);
    const config = JSON.parse(readFileSync(fixturePath('clip', 'config.json'), 'utf8'));
    saveModel(model, broken, { projection_dim: 8 });
    await expect(loadPretrained(broken, quiet)).rejects.toThrow(/model\.safetensors[\s\S]*wrong shape: visual_projection\.weight expected \[8,32\] found \[16,32\]/);
    saveModel(model, broken, { text_config: { ...config.text_config, num_hidden_layers: 3 } });
    await expect(loadPretrained(broken, quiet)).rejects.toThrow(/missing: text_model\.encoder\.layers\.2\.self_attn\.k_proj\.weight/);
    saveModel(model, broken, { vision_config: { ...config.vision_config, hidden_size: 30 } });
    await expect(loadPretrained(broken, quiet)).rejects.toThrow(/config\.json vision_config: hidden_size 30 is not a multiple of num_attention_heads 4/);
    model.dispose();
  });
});
