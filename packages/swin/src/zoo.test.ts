/**
 * Model-zoo import/export for Swin: the same logits from model.safetensors, model.onnx (anonymous
 * transposed MatMul weights, relative position bias tables constant-folded into attention addends)
 * and ONNX Runtime; hub files with relative_position_index buffers and transformers-5 names; save ->
 * load round trips; a new head; and `masksub verify` against the fixture reference.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadPretrained, readSafetensors, saveModel, tf, verifyModel, writeSafetensors, type HostTensor } from '@masksub/core';
import { describeShared, fixturePath, sharedPath } from '../../core/src/testing/shared.js';
import { expectSameTensors, masksub, maxAbsDiff, onnxRuntimeOutput, quiet, readReference, referenceTensor, referenceValues } from '../../core/src/testing/parity.js';
import { relativePositionIndex } from './index.js';

describeShared('fixtures/hf-tiny/swin', 'Swin from the model zoo formats', () => {
  let pixels: tf.Tensor4D;
  let refLogits: Float32Array;
  const tmp = mkdtempSync(join(tmpdir(), 'masksub-swin-'));

  beforeAll(async () => {
    await tf.setBackend('cpu');
    const ref = readReference('swin');
    pixels = referenceTensor<tf.Rank.R4>(ref, 'input.pixel_values');
    refLogits = referenceValues(ref, 'ce.main_logits');
  });
  afterAll(() => {
    pixels.dispose();
    rmSync(tmp, { recursive: true, force: true });
  });

  const logitsOf = async (dir: string, weights?: string) => {
    const logs: string[] = [];
    const { model, format, created } = await loadPretrained(dir, { weights, log: (m) => logs.push(m) });
    const out = model.forward({ pixel_values: pixels });
    const data = Float32Array.from(out.dataSync());
    out.dispose();
    model.dispose();
    return { data, format, created, logs };
  };

  it('safetensors, ONNX (folded bias tables recovered) and ONNX Runtime agree within 1e-4', async () => {
    const st = await logitsOf(fixturePath('swin'));
    expect(st.format).toBe('safetensors');
    expect(st.created).toEqual(['swin.embeddings.mask_token']);
    expect(maxAbsDiff(st.data, refLogits)).toBeLessThan(1e-4);

    const onnx = await logitsOf(fixturePath('swin'), fixturePath('swin', 'model.onnx'));
    expect(onnx.format).toBe('onnx');
    expect(onnx.created).toEqual(['swin.embeddings.mask_token']);
    expect(onnx.logs.join('\n')).toMatch(/relative position bias/);
    expect(maxAbsDiff(onnx.data, st.data)).toBeLessThan(1e-4);

    const ortLogits = await onnxRuntimeOutput(fixturePath('swin', 'model.onnx'), { pixel_values: pixels });
    expect(maxAbsDiff(onnx.data, ortLogits)).toBeLessThan(1e-4);
  });

  it('hub files with relative_position_index buffers load; the buffers equal the computed index', async () => {
    const dir = join(tmp, 'hub-buffers');
    mkdirSync(dir, { recursive: true });
    copyFileSync(fixturePath('swin', 'config.json'), join(dir, 'config.json'));
    const tensors = [...readSafetensors(fixturePath('swin', 'model.safetensors')).values()];
    // HF's buffer for a 4x4 window, from its own construction (coords difference, shift, row scale).
    const w = 4;
    const hfIndex = new BigInt64Array(w * w * w * w);
    for (let i = 0; i < w * w; i++) {
      for (let j = 0; j < w * w; j++) {
        const rel0 = Math.floor(i / w) - Math.floor(j / w) + w - 1;
        const rel1 = (i % w) - (j % w) + w - 1;
        hfIndex[i * w * w + j] = BigInt(rel0 * (2 * w - 1) + rel1);
      }
    }
    expect(Array.from(relativePositionIndex(w), BigInt)).toEqual(Array.from(hfIndex));
    const buffers: HostTensor[] = tensors
      .filter((t) => t.name.endsWith('.relative_position_bias_table'))
      .map((t) => ({ name: t.name.replace('bias_table', 'index'), dtype: 'int64', shape: [w * w, w * w], data: hfIndex }));
    expect(buffers.length).toBe(4);
    writeSafetensors(join(dir, 'model.safetensors'), [...tensors, ...buffers]);
    const r = await logitsOf(dir);
    expect(maxAbsDiff(r.data, refLogits)).toBeLessThan(1e-4);
  });

  it('save -> load gives identical tensors, and the saved folder verifies against the reference', async () => {
    const { model } = await loadPretrained(fixturePath('swin'), quiet);
    const out = join(tmp, 'saved');
    saveModel(model, out);
    const again = await loadPretrained(out, quiet);
    // The mask token is saved now, so nothing is created on reload.
    expect(again.created).toEqual([]);
    expectSameTensors(again.model.params.export(), model.params.export(), { sameNames: true });
    expectSameTensors(readSafetensors(join(out, 'model.safetensors')), readSafetensors(fixturePath('swin', 'model.safetensors')));
    const report = verifyModel(again.model, fixturePath('swin', 'reference.safetensors'));
    expect(report.ok, report.rows.map((r) => `${r.quantity} ${r.error}`).join('\n')).toBe(true);
    expect(report.rows.some((r) => /gradients \(80/.test(r.quantity))).toBe(true);
    model.dispose();
    again.model.dispose();
  });

  it('errors name the file and the tensor', async () => {
    const broken = join(tmp, 'broken');
    const { model } = await loadPretrained(fixturePath('swin'), quiet);
    saveModel(model, broken, { window_size: 3 });
    model.dispose();
    await expect(loadPretrained(broken, quiet)).rejects.toThrow(
      /model\.safetensors[\s\S]*wrong shape: swin\.encoder\.layers\.0\.blocks\.0\.attention\.self\.relative_position_bias_table expected \[25,2\] found \[49,2\]/,
    );
    // A config the architecture cannot have: 16 channels do not split into 3 heads.
    const badHeads = join(tmp, 'bad-heads');
    const loaded = await loadPretrained(fixturePath('swin'), quiet);
    saveModel(loaded.model, badHeads, { num_heads: [3, 4] });
    loaded.model.dispose();
    await expect(loadPretrained(badHeads, quiet)).rejects.toThrow(/config\.json.*num_heads\[0\] = 3/);
  });

  it('loads files written with transformers-5 module names through the alias table', async () => {
    const nameMap = JSON.parse(readFileSync(sharedPath('fixtures/hf-tiny/name_map.json'), 'utf8')).swin as Record<string, string>;
    const hubToNew = new Map(Object.entries(nameMap).map(([n, hub]) => [hub, n]));
    const dir = join(tmp, 't5names');
    mkdirSync(dir, { recursive: true });
    copyFileSync(fixturePath('swin', 'config.json'), join(dir, 'config.json'));
    const renamed = [...readSafetensors(fixturePath('swin', 'model.safetensors')).values()].map((t) => ({ ...t, name: hubToNew.get(t.name) ?? t.name }));
    expect(renamed.some((t) => t.name === 'swin.encoder.layers.0.blocks.0.attention.relative_position_bias.relative_position_bias_table')).toBe(true);
    expect(renamed.some((t) => t.name === 'swin.encoder.layers.1.blocks.1.mlp.fc2.weight')).toBe(true);
    writeSafetensors(join(dir, 'model.safetensors'), renamed);
    const r = await logitsOf(dir);
    expect(maxAbsDiff(r.data, refLogits)).toBeLessThan(1e-4);
  });

  it('a new label count re-initialises only the head', async () => {
    const { model, created } = await loadPretrained(fixturePath('swin'), { numLabels: 3, ...quiet });
    expect(created.sort()).toEqual(['classifier.bias', 'classifier.weight', 'swin.embeddings.mask_token']);
    expect(model.numClasses).toBe(3);
    const out = model.forward({ pixel_values: pixels });
    expect(out.shape).toEqual([4, 3]);
    out.dispose();
    model.dispose();
  });

  it('masksub verify --model <fixture dir> passes (with the ONNX weights: safetensors is verified in-process above)', () => {
    // One process only: each CLI start compiles the sources through tsx (seconds on a busy machine).
    const r = masksub('verify', '--model', fixturePath('swin'), '--reference', fixturePath('swin', 'reference.safetensors'), '--weights', fixturePath('swin', 'model.onnx'));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/relative position bias/);
    expect(r.stdout).toMatch(/ok\s+ce\s+gradients \(80, worst/);
    expect(r.stdout).toMatch(/all within tolerance/);
  });
});
