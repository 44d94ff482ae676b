/**
 * WebDataset shards: tars whose consecutive members `<key>.<ext>` form one sample, here an image
 * (`.jpg`/`.jpeg`/`.png`/`.webp`) and its class (`.cls`, ASCII digits).
 *
 * `.tar.gz` shards can only be read front to back, so they become a `StreamingImageDataset`:
 * each epoch streams the shards (in a seeded random order) through a seeded shuffle buffer, as
 * webdataset's `shuffle(n)` does. Uncompressed `.tar` shards are indexed once (headers only) and
 * become a random-access `ImageDataset`, which allows a full per-epoch permutation.
 */
import { open } from 'node:fs/promises';
import { FileFormatError, OptionError, type Rng } from '@masksub/core/base';
import { decodeSample } from './decode.js';
import { fileIsGzip, indexTar, MAX_TAR_MEMBER_BYTES, readTarMembers, type TarEntry } from './tar.js';
import type { ImageDataset, ImageSample, RawSample, StreamingImageDataset, WebDatasetOptions } from './types.js';

export const IMAGE_EXTENSIONS = ['jpg', 'jpeg', 'png', 'webp'] as const;

/**
 * Expand `{000000..000004}` ranges (zero padding kept from the first bound) and `{a,b}` lists,
 * as webdataset/braceexpand do: `train-{0..1}.tar` -> `train-0.tar`, `train-1.tar`.
 */
export function expandBraces(pattern: string): string[] {
  const m = /\{([^{}]*)\}/.exec(pattern);
  if (!m) return [pattern];
  const head = pattern.slice(0, m.index);
  const tail = pattern.slice(m.index + m[0].length);
  const range = /^(\d+)\.\.(\d+)$/.exec(m[1]);
  let options: string[];
  if (range) {
    const [from, to] = [parseInt(range[1], 10), parseInt(range[2], 10)];
    if (to < from) throw new OptionError('data', `brace range {${m[1]}} runs backwards`);
    const width = range[1].length;
    options = [];
    for (let i = from; i <= to; i++) options.push(String(i).padStart(width, '0'));
  } else {
    options = m[1].split(',');
  }
  return options.flatMap((o) => expandBraces(head + o + tail));
}

/** webdataset's split of a member name: key = path up to the first dot of the base name. */
export function splitMemberName(name: string): { key: string; ext: string } {
  const slash = name.lastIndexOf('/');
  const dot = name.indexOf('.', slash + 1);
  if (dot < 0) return { key: name, ext: '' };
  return { key: name.slice(0, dot), ext: name.slice(dot + 1).toLowerCase() };
}

/** A `.cls` holds a class index in ASCII digits: anything longer is not one (and is not read). */
export const MAX_CLS_BYTES = 32;

/** Member size limits for a shard: `.cls` a few bytes, everything else the tar reader's default. */
export function shardMemberLimit(name: string): number {
  return splitMemberName(name).ext === 'cls' ? MAX_CLS_BYTES : MAX_TAR_MEMBER_BYTES;
}

function parseClass(text: string, shard: string, key: string, numClasses?: number): number {
  const t = text.trim();
  if (!/^\d+$/.test(t)) throw new FileFormatError(shard, `sample '${key}': .cls is not a class index: '${t.slice(0, 20)}'`);
  const label = parseInt(t, 10);
  if (numClasses !== undefined && label >= numClasses) {
    throw new FileFormatError(shard, `sample '${key}': class ${label} is outside 0..${numClasses - 1} (${numClasses} classes)`);
  }
  return label;
}

function isImageExt(ext: string): boolean {
  return (IMAGE_EXTENSIONS as readonly string[]).includes(ext);
}

/** Group consecutive members of one shard into samples (encoded image + label). */
export async function* readShardSamples(shard: string, numClasses?: number): AsyncGenerator<RawSample & { kind: 'encoded' }> {
  let count = 0;
  let key: string | undefined;
  let bytes: Uint8Array | undefined;
  let label: number | undefined;
  const finish = (): (RawSample & { kind: 'encoded' }) | undefined => {
    if (key === undefined) return undefined;
    if (bytes === undefined) throw new FileFormatError(shard, `sample '${key}' has no image member (.${IMAGE_EXTENSIONS.join('/.')})`);
    if (label === undefined) throw new FileFormatError(shard, `sample '${key}' has no .cls member`);
    return { kind: 'encoded', key, bytes, label };
  };
  for await (const member of readTarMembers(shard, { maxMemberBytes: shardMemberLimit })) {
    const { key: k, ext } = splitMemberName(member.name);
    if (k !== key) {
      const done = finish();
      if (done) {
        count++;
        yield done;
      }
      key = k;
      bytes = undefined;
      label = undefined;
    }
    if (isImageExt(ext)) bytes = member.data;
    else if (ext === 'cls') label = parseClass(member.data.toString('ascii'), shard, k, numClasses);
  }
  const last = finish();
  if (last) yield last;
  else if (count === 0) throw new FileFormatError(shard, 'the shard holds no samples');
}

export type { WebDatasetOptions } from './types.js';

/** Streamed (gzipped) WebDataset shards. */
export class WebDatasetStream implements StreamingImageDataset {
  readonly kind = 'stream' as const;

  private constructor(
    readonly shards: string[],
    readonly shuffleBuffer: number,
    readonly size: number | undefined,
    readonly numClasses: number | undefined,
  ) {}

  get description(): string {
    return `webdataset ${this.shards.length === 1 ? this.shards[0] : `${this.shards[0]} (+${this.shards.length - 1} shards)`}`;
  }

  static async open(shards: string[], options: WebDatasetOptions = {}): Promise<WebDatasetStream> {
    if (shards.length === 0) throw new OptionError('data', 'no WebDataset shards given');
    const shuffleBuffer = options.shuffleBuffer ?? 2000;
    if (!Number.isInteger(shuffleBuffer) || shuffleBuffer < 1) throw new OptionError('shuffleBuffer', `must be a positive integer, got ${shuffleBuffer}`);
    let size: number | undefined = options.knownSize;
    let numClasses = options.numClasses;
    if (size !== undefined && (!Number.isInteger(size) || size < 1)) throw new OptionError('knownSize', `must be a positive integer, got ${size}`);
    if (size === undefined && (options.count ?? true)) {
      size = 0;
      let maxLabel = -1;
      for (const shard of shards) {
        for await (const s of readShardSamples(shard, numClasses)) {
          size++;
          if (s.label > maxLabel) maxLabel = s.label;
        }
      }
      numClasses ??= maxLabel + 1;
    }
    return new WebDatasetStream(shards, shuffleBuffer, size, numClasses);
  }

  async *samples(rng: Rng, shuffle: boolean): AsyncGenerator<RawSample> {
    const order = this.shards.slice();
    if (!shuffle) {
      for (const shard of order) yield* readShardSamples(shard, this.numClasses);
      return;
    }
    rng.shuffle(order);
    yield* shuffleBuffered(order, (shard) => readShardSamples(shard, this.numClasses), this.shuffleBuffer, rng);
  }
}

/**
 * webdataset's shuffle buffer over shards read in `order`: once full, emit a random resident and
 * put the newcomer in its place; drain at random. The same rng state gives the same order.
 */
export async function* shuffleBuffered<T>(order: readonly string[], read: (shard: string) => AsyncIterable<T>, size: number, rng: Rng): AsyncGenerator<T> {
  const buffer: T[] = [];
  for (const shard of order) {
    for await (const sample of read(shard)) {
      if (buffer.length < size) {
        buffer.push(sample);
        continue;
      }
      const j = rng.int(buffer.length);
      const out = buffer[j];
      buffer[j] = sample;
      yield out;
    }
  }
  while (buffer.length > 0) {
    const j = rng.int(buffer.length);
    const out = buffer[j];
    buffer[j] = buffer[buffer.length - 1];
    buffer.pop();
    yield out;
  }
}

interface IndexedSample {
  shard: string;
  key: string;
  image: TarEntry;
  label: number;
}

/** Uncompressed WebDataset shards, indexed for random access. */
export class IndexedWebDataset implements ImageDataset {
  readonly kind = 'map' as const;

  private constructor(
    readonly shards: string[],
    private readonly samples: IndexedSample[],
    readonly numClasses: number | undefined,
  ) {}

  get size(): number {
    return this.samples.length;
  }

  get description(): string {
    return `webdataset (indexed) ${this.shards[0]}${this.shards.length > 1 ? ` (+${this.shards.length - 1} shards)` : ''}`;
  }

  static async open(shards: string[], options: WebDatasetOptions = {}): Promise<IndexedWebDataset> {
    if (shards.length === 0) throw new OptionError('data', 'no WebDataset shards given');
    const samples: IndexedSample[] = [];
    let maxLabel = -1;
    for (const shard of shards) {
      const entries = await indexTar(shard, { maxMemberBytes: shardMemberLimit });
      if (entries.length === 0) throw new FileFormatError(shard, 'the shard holds no samples');
      const fh = await open(shard, 'r');
      try {
        let i = 0;
        while (i < entries.length) {
          const { key } = splitMemberName(entries[i].name);
          let image: TarEntry | undefined;
          let label: number | undefined;
          for (; i < entries.length && splitMemberName(entries[i].name).key === key; i++) {
            const { ext } = splitMemberName(entries[i].name);
            if (isImageExt(ext)) image = entries[i];
            else if (ext === 'cls') {
              const buf = Buffer.alloc(entries[i].size);
              await fh.read(buf, 0, buf.length, entries[i].offset);
              label = parseClass(buf.toString('ascii'), shard, key, options.numClasses);
            }
          }
          if (!image) throw new FileFormatError(shard, `sample '${key}' has no image member`);
          if (label === undefined) throw new FileFormatError(shard, `sample '${key}' has no .cls member`);
          if (label > maxLabel) maxLabel = label;
          samples.push({ shard, key, image, label });
        }
      } finally {
        await fh.close();
      }
    }
    return new IndexedWebDataset(shards, samples, options.numClasses ?? maxLabel + 1);
  }

  async raw(i: number): Promise<RawSample> {
    const s = this.samples[i];
    if (!s) throw new OptionError('index', `${i} is outside 0..${this.size - 1} of ${this.description}`);
    const fh = await open(s.shard, 'r');
    try {
      const bytes = Buffer.alloc(s.image.size);
      await fh.read(bytes, 0, bytes.length, s.image.offset);
      return { kind: 'encoded', key: s.key, bytes, label: s.label };
    } finally {
      await fh.close();
    }
  }

  async get(i: number): Promise<ImageSample> {
    return decodeSample(await this.raw(i));
  }
}

/**
 * Open WebDataset shards from paths or brace patterns: indexed random access when every shard is
 * an uncompressed tar (unless `stream`), streaming otherwise.
 */
export async function openWebDataset(patterns: string[], options: WebDatasetOptions = {}): Promise<WebDatasetStream | IndexedWebDataset> {
  const shards = patterns.flatMap(expandBraces);
  const gz = await Promise.all(shards.map(fileIsGzip));
  if (!options.stream && gz.every((g) => !g)) return IndexedWebDataset.open(shards, options);
  return WebDatasetStream.open(shards, options);
}

