import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileFormatError } from '../errors.js';
import { folderFile } from './contained-path.js';
import { discoverCheckpoint, locateWeights, readShardedSafetensors } from './hf-folder.js';
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

describe('files found by name in a model folder stay inside it (folderFile)', () => {
  const shard = serializeSafetensors([{ name: 'a', dtype: 'float32', shape: [1], data: new Float32Array([2]) }]);
  const config = JSON.stringify({ model_type: 'vit' });
  const folder = (name: string) => {
    const dir = join(root, name);
    mkdirSync(dir, { recursive: true });
    return dir;
  };
  writeFileSync(join(root, 'elsewhere.safetensors'), shard);
  writeFileSync(join(root, 'elsewhere.json'), config);

  it('finds a plain file or a symlink that stays inside; an absent one is undefined', () => {
    const dir = folder('plain');
    writeFileSync(join(dir, 'real.safetensors'), shard);
    symlinkSync(join(dir, 'real.safetensors'), join(dir, 'model.safetensors'));
    writeFileSync(join(dir, 'config.json'), config);
    expect(folderFile(dir, 'model.safetensors')).toBe(join(dir, 'model.safetensors'));
    expect(folderFile(dir, 'vocab.txt')).toBeUndefined();
    const found = discoverCheckpoint(dir);
    expect(found.weightsPath).toBe(join(dir, 'model.safetensors'));
    expect(found.config.model_type).toBe('vit');
  });
  it('refuses weights or config.json that are symlinks out of the folder, and a dangling symlink', () => {
    const weights = folder('weights-out');
    symlinkSync(join(root, 'elsewhere.safetensors'), join(weights, 'model.safetensors'));
    writeFileSync(join(weights, 'config.json'), config);
    expect(() => locateWeights(weights)).toThrow(FileFormatError);
    expect(() => locateWeights(weights)).toThrow(/weights-out\/model\.safetensors: leads outside the folder .*elsewhere\.safetensors; refused/);
    const cfg = folder('config-out');
    writeFileSync(join(cfg, 'model.safetensors'), shard);
    symlinkSync(join(root, 'elsewhere.json'), join(cfg, 'config.json'));
    expect(() => discoverCheckpoint(cfg)).toThrow(/config-out\/config\.json: leads outside the folder/);
    const pth = folder('pth-out');
    symlinkSync(join(root, 'secret.txt'), join(pth, 'weights.pth'));
    expect(() => locateWeights(pth)).toThrow(/pth-out\/weights\.pth: leads outside the folder/);
    const dangling = folder('dangling');
    symlinkSync(join(root, 'no-such-file'), join(dangling, 'model.safetensors'));
    expect(() => locateWeights(dangling)).toThrow(/dangling\/model\.safetensors: cannot open file \(ENOENT\)/);
    const dirNamed = folder('dir-named');
    mkdirSync(join(dirNamed, 'model.safetensors'));
    expect(() => locateWeights(dirNamed)).toThrow(/model\.safetensors: not a regular file \(a folder\)/);
  });
  it("reads a Hugging Face cache snapshot, whose files are symlinks into its repo's blobs", () => {
    // <repo>/snapshots/<revision>/<file> -> ../../blobs/<hash>, as huggingface_hub lays it out.
    const repo = folder('models--org--tiny');
    const blobs = join(repo, 'blobs');
    mkdirSync(blobs);
    const snapshot = join(repo, 'snapshots', '0123abcd');
    mkdirSync(snapshot, { recursive: true });
    writeFileSync(join(blobs, 'h-config'), config);
    writeFileSync(join(blobs, 'h-shard'), shard);
    writeFileSync(join(blobs, 'h-index'), JSON.stringify({ weight_map: { a: 'model-00001-of-00001.safetensors' } }));
    symlinkSync('../../blobs/h-config', join(snapshot, 'config.json'));
    symlinkSync('../../blobs/h-index', join(snapshot, 'model.safetensors.index.json'));
    symlinkSync('../../blobs/h-shard', join(snapshot, 'model-00001-of-00001.safetensors'));
    const found = discoverCheckpoint(snapshot);
    expect(found.weightsPath).toBe(join(snapshot, 'model.safetensors.index.json'));
    expect(found.format).toBe('safetensors');
    expect(readShardedSafetensors(found.weightsPath).tensors.get('a')!.data).toEqual(new Float32Array([2]));
    // ONNX in the snapshot's onnx/ folder, its external data a link into the blobs too.
    mkdirSync(join(snapshot, 'onnx'));
    writeFileSync(join(blobs, 'h-data'), new Uint8Array(new Float32Array([5, 6, 7, 8]).buffer));
    symlinkSync('../../../blobs/h-data', join(snapshot, 'onnx', 'model.onnx_data'));
    expect(Array.from(decodeTensorProto(ext('model.onnx_data'), join(snapshot, 'onnx', 'model.onnx')).data as Float32Array)).toEqual([5, 6, 7, 8]);
    // Only the repo's own blobs: a snapshot symlink anywhere else is still outside.
    symlinkSync(join(root, 'secret.txt'), join(snapshot, 'vocab.txt'));
    expect(() => folderFile(snapshot, 'vocab.txt')).toThrow(/leads outside the folder/);
    // And only in a cache repo: a plain folder named snapshots/ gets no blobs exception.
    const plain = join(folder('not-a-cache-repo'), 'snapshots', 'rev');
    mkdirSync(plain, { recursive: true });
    mkdirSync(join(root, 'not-a-cache-repo', 'blobs'));
    writeFileSync(join(root, 'not-a-cache-repo', 'blobs', 'h'), config);
    symlinkSync('../../blobs/h', join(plain, 'config.json'));
    expect(() => folderFile(plain, 'config.json')).toThrow(/leads outside the folder/);
  });
});
