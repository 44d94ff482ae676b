import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataLoader, type DataLoaderOptions } from './loader.js';
import { explicitPreprocessSpec } from './preprocess.js';
import { buildTar } from './tar-writer.js';
import type { AnyImageDataset, ImageBatch, ImageDataset, ImageSample, RawSample } from './types.js';
import { WebDatasetStream } from './webdataset.js';

/** In-memory map dataset: sample i is a 12x10 gray gradient offset by i, label i % 5. */
class SyntheticDataset implements ImageDataset {
  readonly kind = 'map' as const;
  readonly numClasses = 5;
  readonly description = 'synthetic';
  constructor(readonly size: number) {}
  async raw(i: number): Promise<RawSample> {
    return { kind: 'decoded', key: String(i), ...(await this.get(i)) };
  }
  async get(i: number): Promise<ImageSample> {
    const pixels = new Uint8Array(12 * 10).map((_, p) => (p * 2 + i * 7) % 256);
    return { pixels, height: 12, width: 10, channels: 1, label: i % 5 };
  }
}

const trainOptions: DataLoaderOptions = {
  batchSize: 4,
  seed: 42,
  preprocess: explicitPreprocessSpec({ size: 8, channels: 3, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] }),
  augment: { randomResizedCrop: {}, hflip: 0.5 },
  mixup: { mixupAlpha: 0.8, cutmixAlpha: 1, labelSmoothing: 0.1 },
};

async function take(loader: DataLoader, n: number): Promise<ImageBatch[]> {
  const out: ImageBatch[] = [];
  while (out.length < n) {
    let got = false;
    for await (const b of loader.epochBatches()) {
      out.push(b);
      got = true;
      if (out.length === n) break;
    }
    if (!got) throw new Error('empty epoch');
  }
  return out;
}

function same(a: ImageBatch[], b: ImageBatch[]): void {
  expect(b.map((x) => x.keys)).toEqual(a.map((x) => x.keys));
  for (let i = 0; i < a.length; i++) {
    expect(b[i].shape).toEqual(a[i].shape);
    expect(b[i].labels).toEqual(a[i].labels);
    expect(b[i].images).toEqual(a[i].images);
    expect(b[i].targets).toEqual(a[i].targets);
  }
}

/** Save after `k` batches, restore into a fresh loader, compare the next `m` with the uninterrupted run. */
async function checkResume(make: () => DataLoader, k: number, m: number): Promise<void> {
  const uninterrupted = await take(make(), k + m);
  const first = make();
  same(uninterrupted.slice(0, k), await take(first, k));
  const saved = JSON.parse(JSON.stringify(first.state())) as ReturnType<DataLoader['state']>;
  const resumed = make();
  resumed.restore(saved);
  same(uninterrupted.slice(k), await take(resumed, m));
}

describe('DataLoader over a map dataset', () => {
  const ds = new SyntheticDataset(22);

  it('yields normalised NCHW batches with soft targets, and a shuffled permutation per epoch', async () => {
    const loader = new DataLoader(ds, trainOptions);
    expect(loader.batchesPerEpoch).toBe(6);
    const epoch0 = await take(loader, 6);
    expect(epoch0[0].shape).toEqual([4, 3, 8, 8]);
    expect(epoch0[5].shape).toEqual([2, 3, 8, 8]); // last partial batch kept
    expect(epoch0[0].targets).toHaveLength(4 * 5);
    const keys = epoch0.flatMap((b) => b.keys);
    expect([...keys].sort((a, b) => +a - +b)).toEqual(Array.from({ length: 22 }, (_, i) => String(i)));
    expect(keys).not.toEqual(Array.from({ length: 22 }, (_, i) => String(i)));
    expect(loader.state()).toMatchObject({ epoch: 1, index: 0 });
    const epoch1 = await take(loader, 6);
    expect(epoch1.flatMap((b) => b.keys)).not.toEqual(keys);
    for (const b of epoch0) for (const v of b.images) expect(Math.abs(v)).toBeLessThanOrEqual(1 + 1e-6);
  });

  it('is deterministic and independent of prefetch depth', async () => {
    const a = await take(new DataLoader(ds, { ...trainOptions, prefetch: 1 }), 8);
    const b = await take(new DataLoader(ds, { ...trainOptions, prefetch: 5 }), 8);
    same(a, b);
    const c = await take(new DataLoader(ds, { ...trainOptions, seed: 43 }), 1);
    expect(c[0].keys).not.toEqual(a[0].keys);
  });

  it('resumes exactly mid-epoch and across the epoch boundary', async () => {
    await checkResume(() => new DataLoader(ds, trainOptions), 3, 3);
    await checkResume(() => new DataLoader(ds, trainOptions), 6, 2);
  });

  it('drop_last drops the incomplete batch; no shuffle keeps order', async () => {
    const loader = new DataLoader(ds, { ...trainOptions, dropLast: true, shuffle: false, augment: undefined, mixup: undefined });
    expect(loader.batchesPerEpoch).toBe(5);
    const batches = await take(loader, 5);
    expect(batches.every((b) => b.shape[0] === 4 && b.targets === undefined)).toBe(true);
    expect(batches[0].keys).toEqual(['0', '1', '2', '3']);
    expect(loader.state().epoch).toBe(1);
  });

  it('rejects bad options and states by name', () => {
    expect(() => new DataLoader(ds, { ...trainOptions, batchSize: 0 })).toThrow(/option 'batchSize'/);
    const loader = new DataLoader(ds, trainOptions);
    expect(() => loader.restore({ epoch: 0, index: 23, rng: [1, 2, 3, 4] })).toThrow(/option 'loader.index'/);
  });
});

describe('DataLoader over streamed WebDataset shards', () => {
  const dir = mkdtempSync(join(tmpdir(), 'masksub-loader-'));
  let stream: AnyImageDataset;
  beforeAll(async () => {
    const shards: string[] = [];
    for (let s = 0; s < 3; s++) {
      const members: { name: string; data: Buffer }[] = [];
      for (let i = 0; i < 9; i++) {
        const n = s * 9 + i;
        const jpg = await sharp(Buffer.alloc(10 * 12 * 3).map((_, p) => (p * 3 + n * 9) % 256), { raw: { width: 12, height: 10, channels: 3 } })
          .jpeg()
          .toBuffer();
        members.push({ name: `k${n}.jpg`, data: jpg }, { name: `k${n}.cls`, data: Buffer.from(String(n % 4)) });
      }
      const p = join(dir, `s-${s}.tar.gz`);
      writeFileSync(p, gzipSync(buildTar(members)));
      shards.push(p);
    }
    stream = await WebDatasetStream.open(shards, { shuffleBuffer: 5 });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('resumes exactly from a saved state (shuffle buffer replayed, not decoded)', async () => {
    const options = { ...trainOptions, batchSize: 5 };
    expect(new DataLoader(stream, options).batchesPerEpoch).toBe(6);
    await checkResume(() => new DataLoader(stream, options), 3, 4);
  });

  it('covers every sample once per epoch', async () => {
    const loader = new DataLoader(stream, { ...trainOptions, batchSize: 5, augment: undefined });
    const keys = (await take(loader, 6)).flatMap((b) => b.keys);
    expect(new Set(keys).size).toBe(27);
    expect(loader.state()).toMatchObject({ epoch: 1, index: 0 });
  });
});
