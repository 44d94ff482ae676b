/** DataLoader with `worker`: the same batches and positions as in-thread, errors by name. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { limitDataset } from '../subset.js';
import { DataLoader, type DataLoaderOptions } from './loader.js';
import { explicitPreprocessSpec } from './preprocess.js';
import { recipeLoaderOptions } from './recipe-augment.js';
import { openDataSpec } from './spec.js';
import { buildTar } from './tar-writer.js';
import type { AnyImageDataset, ImageBatch, LoaderState } from './types.js';

const options: DataLoaderOptions = {
  batchSize: 4,
  seed: 7,
  shuffle: true,
  dropLast: true,
  preprocess: explicitPreprocessSpec({ size: 8, channels: 3, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] }),
  augment: { padCrop: 2, hflip: 0.5 },
  mixup: { mixupAlpha: 0.8, cutmixAlpha: 1, labelSmoothing: 0.1 },
  numClasses: 4,
};

/** `n` batches, across epochs, with the loader's position after each. */
async function run(loader: DataLoader, n: number): Promise<{ batches: ImageBatch[]; states: LoaderState[] }> {
  const batches: ImageBatch[] = [];
  const states: LoaderState[] = [];
  while (batches.length < n) {
    for await (const b of loader.epochBatches()) {
      batches.push(b);
      states.push(loader.state());
      if (batches.length === n) break;
    }
  }
  return { batches, states };
}

function expectSame(a: { batches: ImageBatch[]; states: LoaderState[] }, b: { batches: ImageBatch[]; states: LoaderState[] }): void {
  expect(b.states).toEqual(a.states);
  expect(b.batches.map((x) => x.keys)).toEqual(a.batches.map((x) => x.keys));
  for (let i = 0; i < a.batches.length; i++) {
    expect(b.batches[i].labels).toEqual(a.batches[i].labels);
    expect(b.batches[i].images).toEqual(a.batches[i].images);
    expect(b.batches[i].targets).toEqual(a.batches[i].targets);
  }
}

/** `n` batches from a worker-thread loader equal `n` from an in-thread one (then the worker is stopped). */
async function expectWorkerMatches(ds: AnyImageDataset, opts: DataLoaderOptions, n: number): Promise<void> {
  const here = await run(new DataLoader(ds, opts), n);
  const threaded = new DataLoader(ds, { ...opts, worker: true });
  try {
    expectSame(here, await run(threaded, n));
  } finally {
    await threaded.close();
  }
}

describe('DataLoader on a worker thread', () => {
  const dir = mkdtempSync(join(tmpdir(), 'masksub-worker-'));
  let stream: AnyImageDataset;
  let folder: AnyImageDataset;

  beforeAll(async () => {
    // Two gzipped WebDataset shards of 11 JPEGs each (streamed) and a class folder (random access).
    let n = 0;
    for (let s = 0; s < 2; s++) {
      const members = [];
      for (let i = 0; i < 11; i++, n++) {
        const jpg = await sharp({ create: { width: 10, height: 10, channels: 3, background: { r: (n * 23) % 256, g: (n * 57) % 256, b: 90 } } }).jpeg().toBuffer();
        members.push({ name: `k${n}.jpg`, data: jpg }, { name: `k${n}.cls`, data: Buffer.from(String(n % 4)) });
      }
      writeFileSync(join(dir, `shard-${s}.tar.gz`), gzipSync(buildTar(members)));
    }
    for (let c = 0; c < 4; c++) {
      mkdirSync(join(dir, 'folder', `class${c}`), { recursive: true });
      for (let i = 0; i < 5; i++) {
        const png = await sharp({ create: { width: 9, height: 11, channels: 3, background: { r: c * 60, g: i * 40, b: 10 } } }).png().toBuffer();
        writeFileSync(join(dir, 'folder', `class${c}`, `${i}.png`), png);
      }
    }
    stream = await openDataSpec(`webdataset:${dir}/shard-{0..1}.tar.gz`, { shuffleBuffer: 5 });
    folder = await openDataSpec(`folder:${join(dir, 'folder')}`);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const kind of ['stream', 'folder'] as const) {
    it(`${kind}: the same batches and positions as in-thread, over three epochs`, async () => {
      const ds = kind === 'stream' ? stream : folder;
      expect(ds.source).toBeDefined();
      // The stream was counted when opened: the worker opens it with that count instead of counting again.
      if (kind === 'stream') expect(ds.source?.options).toMatchObject({ knownSize: 22, numClasses: 4 });
      await expectWorkerMatches(ds, options, 14);
    });
  }

  it('resumes from a saved position, and an early break keeps the position of the last batch taken', async () => {
    const reference = await run(new DataLoader(stream, options), 9);
    const first = new DataLoader(stream, { ...options, worker: true });
    const second = new DataLoader(stream, { ...options, worker: true });
    try {
      const head = await run(first, 3); // breaks out of the first epoch after 3 of 5 batches
      expect(first.state()).toEqual(reference.states[2]);
      second.restore(first.state());
      const tail = await run(second, 6);
      expectSame({ batches: reference.batches.slice(3), states: reference.states.slice(3) }, tail);
      expectSame({ batches: reference.batches.slice(0, 3), states: reference.states.slice(0, 3) }, head);
    } finally {
      await Promise.all([first.close(), second.close()]);
    }
  });

  it("a recipe's augmentations (RandAugment, colour jitter, random erasing, repeats) cross to the worker and give the same batches", async () => {
    const recipe = recipeLoaderOptions(
      {
        rand_augment: 'rand-m9-mstd0.5-inc1',
        rand_augment_interpolation: 'random',
        three_augment: false,
        color_jitter: 0.3,
        random_erasing: 0.25,
        random_erasing_mode: 'pixel',
        random_erasing_count: 1,
        repeated_aug: 2,
        repeated_aug_round: 1,
      },
      options.preprocess,
    );
    expect(recipe.recipe && recipe.erasing && recipe.repeat).toBeTruthy();
    await expectWorkerMatches(folder, { ...options, ...recipe }, 6);
  });

  it('a limit is reopened in the worker too', async () => {
    await expectWorkerMatches(limitDataset(stream, 9), options, 5);
  });

  it('a corrupt image fails with a FileFormatError naming it, as in-thread', async () => {
    const bad = join(dir, 'bad.tar.gz');
    const members = [];
    for (let i = 0; i < 4; i++) {
      const data = i === 2 ? Buffer.from('not a jpeg') : await sharp({ create: { width: 8, height: 8, channels: 3, background: 'gray' } }).jpeg().toBuffer();
      members.push({ name: `b${i}.jpg`, data }, { name: `b${i}.cls`, data: Buffer.from('1') });
    }
    writeFileSync(bad, gzipSync(buildTar(members)));
    const ds = await openDataSpec(`webdataset:${bad}`);
    const loader = new DataLoader(ds, { ...options, shuffle: false, worker: true });
    try {
      await expect(run(loader, 1)).rejects.toMatchObject({ name: 'FileFormatError', message: expect.stringMatching(/b2/) });
    } finally {
      await loader.close();
    }
  });
});
