import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { FileFormatError, type MaskSubModel, OptionError } from '@masksub/core';
import { preprocessForModel } from '../model-preprocess.js';
import { IdxImageDataset, readIdx } from './idx.js';
import { DataLoader } from './loader.js';
import { explicitPreprocessSpec } from './preprocess.js';
import { indexTar, readTarMembers, TAR_BLOCK } from './tar.js';
import { buildTar } from './tar-writer.js';
import type { ImageDataset, RawSample } from './types.js';
import { IndexedWebDataset, openWebDataset, readShardSamples, WebDatasetStream } from './webdataset.js';

const dir = mkdtempSync(join(tmpdir(), 'masksub-data-hostile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, bytes: Uint8Array) => {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
};

/** A ustar header for `name` declaring `size` bytes (with a valid checksum), no data after it. */
function header(name: string, size: number): Buffer {
  const tar = buildTar([{ name, data: new Uint8Array(0) }]);
  const h = Buffer.from(tar.subarray(0, TAR_BLOCK));
  h.write(size.toString(8).padStart(11, '0') + '\0', 124);
  h.write('        ', 148);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  return h;
}

async function drain<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

const sample = (key: string, cls: string) => [
  { name: `${key}.png`, data: new Uint8Array([1, 2, 3]) },
  { name: `${key}.cls`, data: Buffer.from(cls) },
];

describe('tar members are bounded before they are read', () => {
  it('a header declaring a 3 GB member (gzipped, 14 kB file) is refused naming the member', async () => {
    const p = file('bomb.tar.gz', gzipSync(Buffer.concat([header('x.png', 3e9), Buffer.alloc(10_000)])));
    await expect(drain(readTarMembers(p))).rejects.toThrow(/bomb\.tar\.gz: member 'x\.png' declares 3000000000 bytes, more than the 268435456/);
  });
  it('a huge .cls is refused at a few bytes, streamed or indexed', async () => {
    const tar = buildTar([{ name: 'a.png', data: new Uint8Array(3) }, { name: 'a.cls', data: Buffer.alloc(1000, 0x31) }]);
    const p = file('bigcls.tar', tar);
    await expect(drain(readShardSamples(p))).rejects.toThrow(/member 'a\.cls' declares 1000 bytes, more than the 32/);
    await expect(IndexedWebDataset.open([p])).rejects.toThrow(/member 'a\.cls' declares 1000 bytes/);
  });
});

describe('truncated and empty shards', () => {
  const whole = buildTar([...sample('a', '0'), ...sample('b', '1')]);
  it('a plain tar cut mid-header is an error, not fewer samples', async () => {
    const p = file('cut-header.tar', whole.subarray(0, 3 * TAR_BLOCK + 100));
    await expect(IndexedWebDataset.open([p])).rejects.toThrow(/cut-header\.tar: truncated/);
    await expect(drain(readShardSamples(p))).rejects.toThrow(/cut-header\.tar: truncated/);
  });
  it('a tar cut at a member boundary (no end marker) is an error', async () => {
    const p = file('cut-boundary.tar', whole.subarray(0, 4 * TAR_BLOCK));
    await expect(indexTar(p)).rejects.toThrow(/cut-boundary\.tar: truncated: the tar ends without the end-of-archive marker/);
    await expect(drain(readTarMembers(p))).rejects.toThrow(/ends without the end-of-archive marker/);
  });
  it('a truncated .tar.gz names the file (no zlib stack trace)', async () => {
    const gz = gzipSync(whole);
    const p = file('cut.tar.gz', gz.subarray(0, gz.length - 30));
    const err = await drain(readShardSamples(p)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FileFormatError);
    expect((err as Error).message).toMatch(/cut\.tar\.gz: (cannot read \(gzip\)|truncated)/);
  });
  it('an empty shard is an error', async () => {
    const p = file('empty.tar', buildTar([]));
    await expect(openWebDataset([p])).rejects.toThrow(/empty\.tar: the shard holds no samples/);
    await expect(openWebDataset([p], { stream: true })).rejects.toThrow(/empty\.tar: the shard holds no samples/);
  });
});

describe('labels are checked against the class count', () => {
  const p = file('labels.tar', buildTar([...sample('a', '1'), ...sample('k42', '42')]));
  it('webdataset, indexed and streamed, names the shard and key', async () => {
    await expect(IndexedWebDataset.open([p], { numClasses: 10 })).rejects.toThrow(/labels\.tar: sample 'k42': class 42 is outside 0\.\.9 \(10 classes\)/);
    await expect(WebDatasetStream.open([p], { numClasses: 10 })).rejects.toThrow(/labels\.tar: sample 'k42': class 42 is outside 0\.\.9/);
  });
  it('IDX labels, naming the file and the sample', async () => {
    const images = file('img-idx3', Buffer.concat([Buffer.from([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1]), Buffer.from([5, 6])]));
    const labels = file('lbl-idx1', Buffer.from([0, 0, 8, 1, 0, 0, 0, 2, 3, 200]));
    await expect(IdxImageDataset.open(images, labels, 10)).rejects.toThrow(/lbl-idx1: label 200 of sample 1 is outside 0\.\.9/);
  });
  it('the data loader refuses a label past the head for any dataset', async () => {
    const ds: ImageDataset = {
      kind: 'map',
      size: 2,
      numClasses: 3,
      description: 'toy',
      raw: async (i): Promise<RawSample> => ({ kind: 'decoded', key: `k${i}`, pixels: new Uint8Array(4), height: 2, width: 2, channels: 1, label: i === 1 ? 7 : 0 }),
      get: async () => {
        throw new Error('unused');
      },
    };
    const loader = new DataLoader(ds, { batchSize: 2, shuffle: false, preprocess: explicitPreprocessSpec({ size: 2, channels: 1 }) });
    await expect(drain(loader.epochBatches())).rejects.toThrow(/toy: sample 'k1': label 7 is outside 0\.\.2 \(3 classes\)/);
    expect(() => new DataLoader(ds, { batchSize: 3, dropLast: true, preprocess: explicitPreprocessSpec({ size: 2, channels: 1 }) })).toThrow(
      /option 'batchSize': 3 is larger than the 2 samples of toy/,
    );
  });
});

describe('decompression output is bounded', () => {
  it('a gzipped IDX decompressing past the limit is refused (a gzip bomb)', async () => {
    const p = file('bomb-idx.gz', gzipSync(Buffer.alloc(1 << 20)));
    await expect(readIdx(p, 1 << 16)).rejects.toThrow(/bomb-idx\.gz: decompresses to more than 65536 bytes/);
  });
});

describe('normalisation values', () => {
  const model = { config: { image_size: 8 } } as unknown as MaskSubModel;
  it('a zero std, a 2-value mean on RGB, NaN are option errors', async () => {
    await expect(preprocessForModel(model, dir, { std: [0, 1, 1] })).rejects.toThrow(OptionError);
    await expect(preprocessForModel(model, dir, { std: [0] })).rejects.toThrow(/'data\.std': needs 3 values \(one per channel\), got 1/);
    await expect(preprocessForModel(model, dir, { std: [0, 1, 1] })).rejects.toThrow(/'data\.std': needs positive finite numbers/);
    await expect(preprocessForModel(model, dir, { mean: [1, 2] })).rejects.toThrow(/'data\.mean': needs 3 values .*--mean of masksub eval/);
    await expect(preprocessForModel(model, dir, { mean: [1, Number.NaN, 2] })).rejects.toThrow(/'data\.mean': needs finite numbers/);
    expect((await preprocessForModel(model, dir, { mean: [0, 0, 0], std: [1, 1, 1] })).std).toEqual([1, 1, 1]);
  });
});
