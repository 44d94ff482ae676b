import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileFormatError, OptionError } from '../errors.js';
import { describeShared, fixturePath } from '../testing/shared.js';
import { discoverCheckpoint, formatOfFile, locateWeights, readWeights } from './hf-folder.js';
import { writeSafetensors } from './safetensors.js';
import type { HostTensor } from './types.js';

const root = mkdtempSync(join(tmpdir(), 'masksub-hf-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const t = (name: string, values: number[]): HostTensor => ({ name, dtype: 'float32', shape: [values.length], data: Float32Array.from(values) });

function folder(name: string, files: Record<string, string | Uint8Array>): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  for (const [f, content] of Object.entries(files)) {
    mkdirSync(join(dir, f, '..'), { recursive: true });
    writeFileSync(join(dir, f), content);
  }
  return dir;
}

describe('discoverCheckpoint', () => {
  it('prefers model.safetensors, then the shard index, then ONNX, then quantized ONNX', () => {
    const all = folder('all', {
      'config.json': '{"model_type":"vit"}',
      'model.safetensors': '',
      'model.safetensors.index.json': '{}',
      'onnx/model.onnx': '',
      'model.onnx': '',
      'onnx/model_quantized.onnx': '',
      'model_quantized.onnx': '',
    });
    const found = discoverCheckpoint(all);
    expect(found).toMatchObject({ dir: all, weightsPath: join(all, 'model.safetensors'), format: 'safetensors' });
    expect(found.config.model_type).toBe('vit');
    const order: [string, string][] = [
      ['model.safetensors', 'model.safetensors.index.json'],
      ['model.safetensors.index.json', 'onnx/model.onnx'],
      ['onnx/model.onnx', 'model.onnx'],
      ['model.onnx', 'onnx/model_quantized.onnx'],
      ['onnx/model_quantized.onnx', 'model_quantized.onnx'],
    ];
    for (const [remove, next] of order) {
      rmSync(join(all, remove));
      expect(discoverCheckpoint(all).weightsPath).toBe(join(all, next));
    }
    expect(discoverCheckpoint(all).format).toBe('onnx-quantized');
  });

  it('lists what it looked for when nothing is there', () => {
    const empty = folder('empty', { 'config.json': '{}' });
    expect(() => discoverCheckpoint(empty)).toThrow(FileFormatError);
    expect(() => discoverCheckpoint(empty)).toThrow(/no weights found; looked for model\.safetensors, model\.safetensors\.index\.json, onnx\/model\.onnx, model\.onnx, onnx\/model_quantized\.onnx, model_quantized\.onnx/);
  });

  it('config.json missing or invalid names the path', () => {
    const noConfig = folder('noconfig', { 'model.safetensors': '' });
    expect(() => discoverCheckpoint(noConfig)).toThrow(new RegExp(`${join(noConfig, 'config.json')}: config.json is missing`));
    const badConfig = folder('badconfig', { 'config.json': '{oops', 'model.safetensors': '' });
    expect(() => discoverCheckpoint(badConfig)).toThrow(/badconfig\/config\.json: config\.json is not valid JSON/);
    const arrayConfig = folder('arrayconfig', { 'config.json': '[1]', 'model.safetensors': '' });
    expect(() => discoverCheckpoint(arrayConfig)).toThrow(/not a JSON object/);
    // a bare weights file can still be located (inspect uses this)
    expect(locateWeights(noConfig).format).toBe('safetensors');
  });

  it('explicit weights: option, a file path, or a file inside onnx/', () => {
    const dir = folder('explicit', { 'config.json': '{}', 'model.safetensors': '', 'onnx/model_quantized.onnx': '', 'other.onnx': '' });
    expect(discoverCheckpoint(dir, { weights: 'other.onnx' })).toMatchObject({ weightsPath: join(dir, 'other.onnx'), format: 'onnx' });
    expect(discoverCheckpoint(join(dir, 'onnx/model_quantized.onnx'))).toMatchObject({ dir, format: 'onnx-quantized' });
    expect(discoverCheckpoint(join(dir, 'config.json')).weightsPath).toBe(join(dir, 'model.safetensors'));
    expect(() => discoverCheckpoint(dir, { weights: 'nope.safetensors' })).toThrow(OptionError);
    expect(() => discoverCheckpoint(dir, { weights: 'nope.safetensors' })).toThrow(/option 'weights': no weights file at/);
    expect(() => formatOfFile('x.h5')).toThrow(/unknown weights format/);
    expect(() => discoverCheckpoint(join(root, 'does-not-exist'))).toThrow(/no such file or folder/);
  });
});

describe('readWeights: sharded safetensors', () => {
  const dir = folder('sharded', { 'config.json': '{}' });
  writeSafetensors(join(dir, 'model-00001-of-00002.safetensors'), [t('a.weight', [1, 2]), t('b.weight', [3])]);
  writeSafetensors(join(dir, 'model-00002-of-00002.safetensors'), [t('c.weight', [4, 5, 6])]);
  const index = (map: Record<string, string>) =>
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 24 }, weight_map: map }));

  it('reads all shards', () => {
    index({ 'a.weight': 'model-00001-of-00002.safetensors', 'b.weight': 'model-00001-of-00002.safetensors', 'c.weight': 'model-00002-of-00002.safetensors' });
    const found = discoverCheckpoint(dir);
    expect(found.weightsPath.endsWith('model.safetensors.index.json')).toBe(true);
    const { tensors, report } = readWeights(found, { 'c.weight': 'head.weight' });
    expect([...tensors.keys()].sort()).toEqual(['a.weight', 'b.weight', 'head.weight']);
    expect(Array.from(tensors.get('head.weight')!.data as Float32Array)).toEqual([4, 5, 6]);
    expect(report.files.length).toBe(2);
    expect(report.findings[0].tensors).toEqual(['c.weight -> head.weight']);
  });

  it('a tensor listed in the index but missing from its shard is named', () => {
    index({ 'a.weight': 'model-00001-of-00002.safetensors', 'd.weight': 'model-00002-of-00002.safetensors' });
    expect(() => readWeights(discoverCheckpoint(dir))).toThrow(/model-00002-of-00002\.safetensors: tensor 'd\.weight' is listed in model\.safetensors\.index\.json but missing/);
  });

  it('an index without weight_map, or a missing shard, is a clear error', () => {
    writeFileSync(join(dir, 'model.safetensors.index.json'), '{"metadata":{}}');
    expect(() => readWeights(discoverCheckpoint(dir))).toThrow(/shard index has no 'weight_map'/);
    index({ 'a.weight': 'model-00009-of-00009.safetensors' });
    expect(() => readWeights(discoverCheckpoint(dir))).toThrow(/model-00009-of-00009\.safetensors: tensor 'a.weight': shard: cannot open file/);
  });
});

describeShared('fixtures/hf-tiny', 'readWeights on the fixtures', () => {
  it('vit: safetensors and ONNX folders give the same tensor names', () => {
    const st = readWeights(discoverCheckpoint(fixturePath('vit')));
    expect(st.report.format).toBe('safetensors');
    const dir = join(root, 'vit-onnx');
    mkdirSync(join(dir, 'onnx'), { recursive: true });
    copyFileSync(fixturePath('vit', 'config.json'), join(dir, 'config.json'));
    copyFileSync(fixturePath('vit', 'model.onnx'), join(dir, 'onnx/model.onnx'));
    const found = discoverCheckpoint(dir);
    expect(found.format).toBe('onnx');
    const ox = readWeights(found);
    expect([...ox.tensors.keys()].sort()).toEqual([...st.tensors.keys()].sort());
    expect(ox.report.onnx!.initializers.length).toBeGreaterThan(0);
  });

  it('bert quantized ONNX reports dequantization', () => {
    const found = discoverCheckpoint(fixturePath('bert'), { weights: 'model_quantized.onnx' });
    expect(found.format).toBe('onnx-quantized');
    const { report } = readWeights(found);
    expect(report.findings.some((f) => f.kind === 'dequantized')).toBe(true);
  });
});
