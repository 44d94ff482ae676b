import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { readSafetensors, readSafetensorsMetadata, Rng } from '@masksub/core';
import { describeShared, sharedPath } from '../../../core/src/testing/shared.js';
import { decodeImage, decodeSample } from './decode.js';
import { buildTar } from './tar-writer.js';
import type { RawSample } from './types.js';
import { expandBraces, IndexedWebDataset, openWebDataset, readShardSamples, splitMemberName, WebDatasetStream } from './webdataset.js';

describe('shard names', () => {
  it('expands brace ranges with zero padding and lists', () => {
    expect(expandBraces('/d/train-{000000..000002}.tar.gz')).toEqual(['/d/train-000000.tar.gz', '/d/train-000001.tar.gz', '/d/train-000002.tar.gz']);
    expect(expandBraces('{a,b}-{8..10}')).toEqual(['a-8', 'a-9', 'a-10', 'b-8', 'b-9', 'b-10']);
    expect(expandBraces('plain.tar')).toEqual(['plain.tar']);
  });

  it('splits keys at the first dot of the base name', () => {
    expect(splitMemberName('x/y.z/train_cat_0001.seg.PNG')).toEqual({ key: 'x/y.z/train_cat_0001', ext: 'seg.png' });
  });
});

const dir = mkdtempSync(join(tmpdir(), 'masksub-wds-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Two shards of tiny PNGs whose pixel value encodes the sample number. */
async function writeShards(): Promise<string[]> {
  const paths: string[] = [];
  for (let s = 0; s < 2; s++) {
    const members: { name: string; data: Buffer }[] = [];
    for (let i = 0; i < 7; i++) {
      const n = s * 7 + i;
      const png = await sharp(Buffer.alloc(4 * 5 * 3, n * 10), { raw: { width: 5, height: 4, channels: 3 } }).png().toBuffer();
      members.push({ name: `s_${String(n).padStart(3, '0')}.png`, data: png }, { name: `s_${String(n).padStart(3, '0')}.cls`, data: Buffer.from(String(n % 3)) });
    }
    const tar = buildTar(members);
    writeFileSync(join(dir, `shard-${s}.tar`), tar);
    writeFileSync(join(dir, `shard-${s}.tar.gz`), gzipSync(tar));
    paths.push(join(dir, `shard-${s}`));
  }
  return paths;
}

async function keysOf(stream: AsyncIterable<RawSample>): Promise<string[]> {
  const keys: string[] = [];
  for await (const s of stream) keys.push(s.key);
  return keys;
}

describe('WebDataset sources', () => {
  it('a known sample count skips the counting pass (nothing is read at open), and must be a positive integer', async () => {
    const stream = await WebDatasetStream.open([join(tmpdir(), 'masksub-no-such-shard.tar.gz')], { knownSize: 5, numClasses: 2 });
    expect([stream.size, stream.numClasses]).toEqual([5, 2]);
    await expect(WebDatasetStream.open(['x.tar.gz'], { knownSize: 0 })).rejects.toThrow(/option 'knownSize': must be a positive integer, got 0/);
  });

  it('indexes plain tars, streams gzipped ones, both with the same samples', async () => {
    const base = await writeShards();
    const indexed = await openWebDataset([`${dir}/shard-{0..1}.tar`]);
    expect(indexed).toBeInstanceOf(IndexedWebDataset);
    expect(indexed.size).toBe(14);
    expect(indexed.numClasses).toBe(3);
    const stream = await openWebDataset(base.map((b) => `${b}.tar.gz`), { shuffleBuffer: 4 });
    expect(stream).toBeInstanceOf(WebDatasetStream);
    expect(stream.size).toBe(14);
    if (!(indexed instanceof IndexedWebDataset) || !(stream instanceof WebDatasetStream)) throw new Error('unexpected kinds');
    const s9 = await indexed.get(9);
    expect(s9).toMatchObject({ height: 4, width: 5, channels: 3, label: 0 });
    expect(s9.pixels[0]).toBe(90);

    const inOrder = await keysOf(stream.samples(new Rng(1), false));
    expect(inOrder).toEqual(Array.from({ length: 14 }, (_, n) => `s_${String(n).padStart(3, '0')}`));
    // Seeded shuffle: same seed same order, a permutation of all samples, different from file order.
    const a = await keysOf(stream.samples(new Rng(5), true));
    const b = await keysOf(stream.samples(new Rng(5), true));
    expect(a).toEqual(b);
    expect([...a].sort()).toEqual(inOrder);
    expect(a).not.toEqual(inOrder);
  });

  it('rejects a sample without its label, naming shard and key', async () => {
    const p = join(dir, 'nolabel.tar');
    writeFileSync(p, buildTar([{ name: 'k1.jpg', data: Buffer.from('j') }, { name: 'k2.jpg', data: Buffer.from('j') }, { name: 'k2.cls', data: Buffer.from('1') }]));
    const run = async (): Promise<void> => {
      for await (const s of readShardSamples(p)) void s;
    };
    await expect(run()).rejects.toThrow(/nolabel\.tar: sample 'k1' has no \.cls member/);
  });
});

describeShared('data/cifar10', 'cifar10 test shard (real data)', () => {
  const shard = sharedPath('data/cifar10/test-000000.tar.gz');
  const refPath = sharedPath('data/models/resnet20-cifar10/reference.safetensors');

  it('first 8 samples: keys, labels and Pillow-equal pixels (within a few levels)', async () => {
    const raws: RawSample[] = [];
    for await (const s of readShardSamples(shard)) {
      raws.push(s);
      if (raws.length === 8) break;
    }
    const meta = readSafetensorsMetadata(refPath);
    expect(raws.map((r) => r.key)).toEqual(meta.keys.split(','));
    expect(raws.map((r) => r.label)).toEqual([8, 8, 3, 7, 5, 6, 9, 8]);
    const ref = readSafetensors(refPath).get('images_uint8_nhwc');
    expect(ref?.shape).toEqual([8, 32, 32, 3]);
    const expected = ref!.data as Uint8Array;
    let maxDiff = 0;
    let sumDiff = 0;
    for (let i = 0; i < 8; i++) {
      const img = await decodeSample(raws[i]);
      expect(img).toMatchObject({ height: 32, width: 32, channels: 3 });
      for (let k = 0; k < 32 * 32 * 3; k++) {
        const d = Math.abs(img.pixels[k] - expected[i * 3072 + k]);
        maxDiff = Math.max(maxDiff, d);
        sumDiff += d;
      }
    }
    // sharp 0.35 (libvips + mozjpeg) reproduces Pillow 9.4 (libjpeg-turbo) exactly here; other
    // builds may differ by a level or two in IDCT/upsampling, hence the small slack.
    expect(maxDiff).toBeLessThanOrEqual(3);
    expect(sumDiff / (8 * 3072)).toBeLessThan(0.25);
  });

  it('counts the 10,000 samples and 10 classes of the shard by streaming', async () => {
    const ds = await WebDatasetStream.open([shard]);
    expect(ds.size).toBe(10_000);
    expect(ds.numClasses).toBe(10);
  });

  it('names the source when an image cannot be decoded', async () => {
    await expect(decodeImage(Buffer.from('not a jpeg'), 'shard.tar.gz:key1')).rejects.toThrow(/shard\.tar\.gz:key1: cannot decode image/);
  });
});
