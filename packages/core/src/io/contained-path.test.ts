import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileFormatError } from '../errors.js';
import { readShardedSafetensors } from './hf-folder.js';
import { decodeTensorProto, onnx, type TensorProto } from './onnx-tensor.js';
import { serializeSafetensors } from './safetensors.js';

const root = mkdtempSync(join(tmpdir(), 'masksub-contained-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const model = join(root, 'model');
mkdirSync(join(model, 'onnx', 'sub'), { recursive: true });
// 16 bytes a hostile model would like to exfiltrate into its fine-tuned weights.
writeFileSync(join(root, 'secret.txt'), 'SECRET-SECRET-16');
writeFileSync(join(model, 'onnx', 'weights.bin'), new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer));
symlinkSync(join(root, 'secret.txt'), join(model, 'onnx', 'link.bin'));
symlinkSync(join(model, 'onnx', 'weights.bin'), join(model, 'onnx', 'inner-link.bin'));
const onnxPath = join(model, 'onnx', 'model.onnx');

const ext = (location: string): TensorProto => ({
  name: 'w',
  dataType: onnx.TensorProto.DataType.FLOAT,
  dims: [4],
  dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
  externalData: [{ key: 'location', value: location }],
});

describe('ONNX external data stays inside the model folder', () => {
  it('reads a file inside, also through a symlink that stays inside', () => {
    expect(Array.from(decodeTensorProto(ext('weights.bin'), onnxPath).data as Float32Array)).toEqual([1, 2, 3, 4]);
    expect(Array.from(decodeTensorProto(ext('inner-link.bin'), onnxPath).data as Float32Array)).toEqual([1, 2, 3, 4]);
  });
  it('refuses ../ paths, symlinks out, absolute paths, folders', () => {
    const err = (loc: string) => () => decodeTensorProto(ext(loc), onnxPath);
    expect(err('../../secret.txt')).toThrow(FileFormatError);
    expect(err('../../secret.txt')).toThrow(/model\.onnx: tensor 'w': external data: location '\.\.\/\.\.\/secret\.txt' leads outside the model folder/);
    expect(err('link.bin')).toThrow(/tensor 'w': external data: location 'link\.bin' leads outside the model folder/);
    expect(err(join(root, 'secret.txt'))).toThrow(/must be relative to the model folder/);
    expect(err('sub')).toThrow(/sub: tensor 'w': external data: not a regular file \(a folder\)/);
    expect(err('../../nothing.bin')).toThrow(/leads outside the model folder/);
    expect(err('missing.bin')).toThrow(/missing\.bin: tensor 'w': external data: cannot open file \(ENOENT\)/);
  });
});

describe('safetensors index shards stay inside the model folder', () => {
  const shard = serializeSafetensors([{ name: 'a', dtype: 'float32', shape: [1], data: new Float32Array([1]) }]);
  writeFileSync(join(root, 'outside.safetensors'), shard);
  writeFileSync(join(model, 'inside.safetensors'), shard);
  symlinkSync(join(root, 'outside.safetensors'), join(model, 'link.safetensors'));
  const index = (file: string) => {
    const p = join(model, 'model.safetensors.index.json');
    writeFileSync(p, JSON.stringify({ weight_map: { a: file } }));
    return () => readShardedSafetensors(p);
  };
  it('reads a shard inside', () => {
    expect(index('inside.safetensors')().tensors.get('a')!.data).toEqual(new Float32Array([1]));
  });
  it('refuses ../ shards, symlinked shards that leave, folders', () => {
    expect(index('../outside.safetensors')).toThrow(/index\.json: tensor 'a': shard: location '\.\.\/outside\.safetensors' leads outside/);
    expect(index('link.safetensors')).toThrow(/leads outside the model folder/);
    expect(index('onnx')).toThrow(/onnx: tensor 'a': shard: not a regular file \(a folder\)/);
  });
});
