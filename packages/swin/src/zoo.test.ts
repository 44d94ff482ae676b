/**
 * Model-zoo import/export for Swin: the same logits from model.safetensors, model.onnx (anonymous
 * transposed MatMul weights, relative position bias tables constant-folded into attention addends)
 * and ONNX Runtime; hub files with relative_position_index buffers and transformers-5 names; save ->
 * load round trips; a new head; and `masksub verify` against the fixture reference.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadPretrained, readSafetensors, saveModel, tf, toFloat32, verifyModel, writeSafetensors, type HostTensor } from '@masksub/core';
import { describeShared, fixturePath, sharedPath } from '../../core/src/testing/shared.js';
import { relativePositionIndex } from './index.js';

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describeShared('fixtures/hf-tiny/swin', 'Swin from the model zoo formats', () => {
  let pixels: tf.Tensor4D;
  let refLogits: Float32Array;
  const tmp = mkdtempSync(join(tmpdir(), 'masksub-swin-'));
  const quiet = { log: () => {} };

  beforeAll(async () => {
    await tf.setBackend('cpu');
    const ref = readSafetensors(fixturePath('swin', 'reference.safetensors'));
    const px = ref.get('input.pixel_values')!;
    pixels = tf.tensor4d(toFloat32(px), px.shape as [number, number, number, number]);
    refLogits = toFloat32(ref.get('ce.main_logits')!);
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

    const ort = await import('onnxruntime-node');
    const session = await ort.InferenceSession.create(fixturePath('swin', 'model.onnx'));
    const feeds = { pixel_values: new ort.Tensor('float32', pixels.dataSync() as Float32Array, pixels.shape) };
    const ortLogits = (await session.run(feeds)).logits.data as Float32Array;
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
    const a = model.params.export();
    const b = again.model.params.export();
    expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
    for (const [name, t] of a) expect(Array.from(toFloat32(b.get(name)!)), name).toEqual(Array.from(toFloat32(t)));
    const original = readSafetensors(fixturePath('swin', 'model.safetensors'));
    const saved = readSafetensors(join(out, 'model.safetensors'));
    for (const [name, t] of original) expect(Array.from(toFloat32(saved.get(name)!)), name).toEqual(Array.from(toFloat32(t)));
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
    const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
    const cli = join(repo, 'packages/core/src/cli/main.ts');
    const args = ['--import', 'tsx', '--conditions=source', cli, 'verify', '--model', fixturePath('swin'), '--reference', fixturePath('swin', 'reference.safetensors')];
    // One process only: each CLI start compiles the sources through tsx (seconds on a busy machine).
    const r = spawnSync(process.execPath, [...args, '--weights', fixturePath('swin', 'model.onnx')], { cwd: repo, encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/relative position bias/);
    expect(r.stdout).toMatch(/ok\s+ce\s+gradients \(80, worst/);
    expect(r.stdout).toMatch(/all within tolerance/);
  });
});
