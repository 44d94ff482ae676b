/**
 * Model-zoo import/export for CLIP: the same weights and logits from model.safetensors and
 * model.onnx (anonymous transposed MatMul weights), ONNX Runtime's logits_per_image, hub files
 * with the old position_ids buffers, save -> load round trips, and errors naming file and tensor.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadPretrained, readSafetensors, saveModel, tf, toFloat32, writeSafetensors, type ModelInputs } from '@masksub/core';
import { describeShared, fixturePath } from '../../core/src/testing/shared.js';
import { expectSameTensors, maxAbsDiff, onnxRuntimeOutput, quiet, readReference, referenceTensor, referenceValues } from '../../core/src/testing/parity.js';
import { ClipModel } from './index.js';

describeShared('fixtures/hf-tiny/clip', 'CLIP from the model zoo formats', () => {
  let inputs: ModelInputs;
  let refLogits: Float32Array;
  const tmp = mkdtempSync(join(tmpdir(), 'masksub-clip-'));

  beforeAll(async () => {
    await tf.setBackend('cpu');
    const ref = readReference('clip');
    inputs = {
      pixel_values: referenceTensor(ref, 'input.pixel_values'),
      input_ids: referenceTensor(ref, 'input.input_ids', 'int32'),
      attention_mask: referenceTensor(ref, 'input.attention_mask', 'int32'),
    };
    refLogits = referenceValues(ref, 'hf_logits_per_image');
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

    // The int32 ids go to ONNX Runtime as the exporter's int64.
    const ortLogits = await onnxRuntimeOutput(fixturePath('clip', 'model.onnx'), inputs, 'logits_per_image');
    expect(maxAbsDiff(onnx.data, ortLogits)).toBeLessThan(1e-4);
  });

  it('save -> load gives identical tensors in hub names and PyTorch layouts', async () => {
    const { model } = await loadPretrained(fixturePath('clip'), quiet);
    const out = join(tmp, 'saved');
    saveModel(model, out);
    const again = await loadPretrained(out, quiet);
    expectSameTensors(again.model.params.export(), model.params.export(), { sameNames: true });
    expectSameTensors(readSafetensors(join(out, 'model.safetensors')), readSafetensors(fixturePath('clip', 'model.safetensors')), { sameNames: true, shapes: true });
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
