/**
 * Saving back in the layout a model came from (timm safetensors, the official DeiT-III
 * `checkpoint.pth` = {'model': state_dict} with gamma_1/gamma_2) and `arch` for a lone `.pth`
 * without config.json (sizes from the timm name's table, classes from the head's shape).
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { OptionError, loadPretrained, readPth, readSafetensors, saveModel, tf, toFloat32, writePth, type LoadedModel, type TensorMap } from '@masksub/core';
import { describeShared, sharedPath } from '../../core/src/testing/shared.js';
import { maxAbsDiff, quiet } from '../../core/src/testing/parity.js';
import { TimmViTModel } from './index.js';

const zoo = (rel = '') => sharedPath(join('fixtures/zoo-layouts', rel));
const tmp = mkdtempSync(join(tmpdir(), 'masksub-timm-layout-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function expectSameValues(actual: TensorMap, expected: TensorMap): void {
  expect([...actual.keys()].sort()).toEqual([...expected.keys()].sort());
  for (const [name, t] of expected) {
    const a = actual.get(name)!;
    expect([a.dtype, a.shape], name).toEqual([t.dtype, t.shape]);
    expect(Array.from(a.data as ArrayLike<number>), name).toEqual(Array.from(t.data as ArrayLike<number>));
  }
}

function expectSameOutputs(a: LoadedModel, b: LoadedModel, size: number): void {
  const x = tf.randomNormal([2, 3, size, size], 0, 1, 'float32', 5);
  const y1 = a.model.forward({ pixel_values: x });
  const y2 = b.model.forward({ pixel_values: x });
  expect(maxAbsDiff(y1.dataSync(), y2.dataSync())).toBe(0);
  tf.dispose([x, y1, y2]);
}

describeShared('fixtures/zoo-layouts', 'load -> save -> load in the source layout', () => {
  it("deit3: the official checkpoint.pth is written back as {'model': state_dict} under gamma_1/gamma_2", async () => {
    const first = await loadPretrained(zoo('deit3'), { ...quiet, weights: 'checkpoint.pth' });
    expect(first.layout).toMatchObject({ kind: 'pth', file: 'checkpoint.pth', wrapIn: ['model'] });
    const out = join(tmp, 'deit3');
    saveModel(first.model, out, {}, { layout: first.layout });
    expect(existsSync(join(out, 'model.safetensors'))).toBe(false);
    const original = readPth(zoo('deit3/checkpoint.pth'));
    const saved = readPth(join(out, 'checkpoint.pth'));
    expect(saved.path).toEqual(['model']);
    expect([...saved.tensors.keys()].filter((n) => n.includes('gamma_'))).toEqual(['blocks.0.gamma_1', 'blocks.0.gamma_2', 'blocks.1.gamma_1', 'blocks.1.gamma_2']);
    expectSameValues(saved.tensors, original.tensors);
    const again = await loadPretrained(out, quiet);
    expect(again.format).toBe('pth');
    expectSameOutputs(first, again, 32);
    // and once more: the second save is the same file as the first
    const out2 = join(tmp, 'deit3-again');
    saveModel(again.model, out2, {}, { layout: again.layout });
    expect(readFileSync(join(out2, 'checkpoint.pth')).equals(readFileSync(join(out, 'checkpoint.pth')))).toBe(true);
    first.model.dispose();
    again.model.dispose();
  });

  it('a created mask token is not written into the source layout (DeiT has no place for it)', async () => {
    const first = await loadPretrained(zoo('deit3'), { ...quiet, weights: 'checkpoint.pth' });
    expect(first.created).toEqual(['mask_token']);
    const out = join(tmp, 'deit3-mask');
    saveModel(first.model, out, {}, { layout: first.layout });
    expect(readPth(join(out, 'checkpoint.pth')).tensors.has('mask_token')).toBe(false);
    first.model.dispose();
  });

  it('a head re-created for other labels is written back under its source name, at its new shape (a fine-tune keeps its head)', async () => {
    const first = await loadPretrained(zoo('deit3'), { ...quiet, weights: 'checkpoint.pth', numLabels: 3 });
    expect(first.created).toEqual(['mask_token', 'head.weight', 'head.bias']);
    const out = join(tmp, 'deit3-head');
    saveModel(first.model, out, { num_classes: 3 }, { layout: first.layout });
    const saved = readPth(join(out, 'checkpoint.pth')).tensors;
    expect(saved.get('head.weight')?.shape).toEqual([3, 32]);
    expect(saved.get('head.bias')?.shape).toEqual([3]);
    expect(saved.has('mask_token')).toBe(false);
    const again = await loadPretrained(out, quiet);
    expect(again.created).toEqual(['mask_token']);
    expectSameOutputs(first, again, 32);
    first.model.dispose();
    again.model.dispose();
  });

  it('timm-vit: model.safetensors under timm names, config.json as it was', async () => {
    const first = await loadPretrained(zoo('timm-vit'), quiet);
    expect(first.layout).toEqual({ kind: 'safetensors' });
    const out = join(tmp, 'timm-vit');
    saveModel(first.model, out, {}, { layout: first.layout });
    const original = readSafetensors(zoo('timm-vit/model.safetensors'));
    const saved = readSafetensors(join(out, 'model.safetensors'));
    expectSameValues(new Map([...saved].filter(([n]) => n !== 'mask_token')), original);
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'))).toEqual(JSON.parse(readFileSync(zoo('timm-vit/config.json'), 'utf8')));
    const again = await loadPretrained(out, quiet);
    expectSameOutputs(first, again, 32);
    first.model.dispose();
    again.model.dispose();
  });
});

describe('arch: a lone .pth without config.json', () => {
  it('vit_tiny_patch16_224: sizes from the name, 7 classes from head.weight', async () => {
    const source = new TimmViTModel({ architecture: 'vit_tiny_patch16_224', num_classes: 7 });
    const dir = join(tmp, 'lone');
    mkdirSync(dir);
    const exported = source.params.export();
    exported.delete('mask_token');
    writePth(join(dir, 'vit_tiny.pth'), exported);
    const notes: string[] = [];
    const loaded = await loadPretrained(dir, { arch: 'vit_tiny_patch16_224.augreg_in21k', log: (m) => notes.push(m) });
    expect(loaded.config).toEqual({ architecture: 'vit_tiny_patch16_224', num_classes: 7, pretrained_cfg: { input_size: [3, 224, 224] } });
    expect(loaded.model.numClasses).toBe(7);
    expect(notes.join('\n')).toMatch(/--arch vit_tiny_patch16_224: .*7 classes from 'head.weight'/);
    const back = loaded.model.params.export();
    for (const name of ['blocks.11.attn.qkv.weight', 'head.bias', 'pos_embed']) expect(toFloat32(back.get(name)!), name).toEqual(toFloat32(exported.get(name)!));
    loaded.model.dispose();
    source.dispose();
  });

  it('an unknown name or a folder with a config.json is an error naming the option', async () => {
    const dir = join(tmp, 'lone-bad');
    mkdirSync(dir);
    writePth(join(dir, 'w.pth'), new Map([['head.weight', { name: 'head.weight', dtype: 'float32', shape: [2, 2], data: new Float32Array(4) }]]));
    await expect(loadPretrained(dir, { ...quiet, arch: 'convnext_tiny' })).rejects.toThrow(OptionError);
    await expect(loadPretrained(dir, { ...quiet, arch: 'convnext_tiny' })).rejects.toThrow(/option 'arch'.*'convnext_tiny'/);
  });
});

describeShared('fixtures/zoo-layouts/deit3', 'arch beside a config.json', () => {
  it('is refused, naming the option', async () => {
    const withConfig = join(tmp, 'lone-config');
    cpSync(zoo('deit3'), withConfig, { recursive: true });
    await expect(loadPretrained(join(withConfig, 'checkpoint.pth'), { ...quiet, arch: 'deit3_small_patch16_224' })).rejects.toThrow(/option 'arch'.*config\.json exists/);
  });

  it("sizes from the table that the file does not hold are refused, naming --arch (not a config.json)", async () => {
    const lone = join(tmp, 'lone-small');
    mkdirSync(lone);
    cpSync(zoo('deit3/checkpoint.pth'), join(lone, 'checkpoint.pth'));
    await expect(loadPretrained(lone, { ...quiet, arch: 'deit3_small_patch16_224' })).rejects.toThrow(/^--arch deit3_small_patch16_224: the config implies .* but .*checkpoint\.pth holds 24330 values/);
  });
});
