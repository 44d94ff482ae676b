/**
 * Shapes shared by every data source, the preprocessing and the loader.
 *
 * Two kinds of source exist because the data does: an image folder, an IDX file or an
 * uncompressed tar can be read at any index (`ImageDataset`), while a gzipped WebDataset shard can
 * only be read front to back (`StreamingImageDataset`). The `DataLoader` accepts both.
 */
import type { Rng, RngState } from '@masksub/core/base';

/** One decoded image: `pixels` is HWC, row-major, uint8, with 1 (gray) or 3 (RGB) channels. */
export interface DecodedImage {
  pixels: Uint8Array;
  height: number;
  width: number;
  channels: 1 | 3;
}

/** A decoded image and its class index. */
export interface ImageSample extends DecodedImage {
  label: number;
}

/**
 * A sample as a source yields it, before decoding: either still encoded (JPEG/PNG bytes, decoded
 * later by the loader's workers) or already raw (IDX). Keeping encoded bytes until the batch is
 * assembled lets the loader decode a whole batch concurrently.
 */
export type RawSample = (
  | { kind: 'encoded'; key: string; bytes: Uint8Array; label: number }
  | ({ kind: 'decoded'; key: string } & ImageSample)
) & {
  /** The image's caption (image-text sources: WebDataset `<key>.txt`), carried to the batch. */
  caption?: string;
};

/** A parsed data spec string (see spec.ts for the grammar). */
export type DataSpec =
  | { kind: 'webdataset'; shards: string[] }
  | { kind: 'folder'; root: string }
  | { kind: 'idx'; images: string; labels: string }
  | { kind: 'mnist'; split: 'train' | 'test' }
  | { kind: 'idx-folder'; dir: string; split: 'train' | 'test' };

/** How WebDataset shards are opened (openDataSpec passes these on). */
export interface WebDatasetOptions {
  /** Shuffle buffer size for streamed shards (default 2000 samples). */
  shuffleBuffer?: number;
  /** Count the samples (and classes) at open time with one streaming pass (default true). */
  count?: boolean;
  /** Known class count; otherwise max label + 1 from the counting pass. */
  numClasses?: number;
  /** Stream even uncompressed tars instead of indexing them. */
  stream?: boolean;
  /** Samples of the streamed shards, counted by an earlier open of them: no counting pass. */
  knownSize?: number;
}

/**
 * How a dataset was opened, as plain data: enough for another thread (the loader's worker) to
 * open the same samples again. Set by openDataSpec; wrappers that change the samples (a limit)
 * record themselves here or drop it.
 */
export interface DatasetSource {
  spec: DataSpec;
  /** The options to open it with (with what the first open counted, so it is not counted again). */
  options: WebDatasetOptions & { mnistFrom?: string[] };
  /** Only the first `limit` samples (limitDataset). */
  limit?: number;
}

/** Random access source (map-style, as a PyTorch `Dataset`). */
export interface ImageDataset {
  readonly kind: 'map';
  /** Number of samples. */
  readonly size: number;
  /** Number of classes when the source knows it (folder class count, 10 for MNIST). */
  readonly numClasses?: number;
  /** Where the data comes from, for messages. */
  readonly description: string;
  /** How to open it again elsewhere (absent for datasets built in code). */
  source?: DatasetSource;
  /** The raw (possibly still encoded) sample `i`, 0 <= i < size. */
  raw(i: number): Promise<RawSample>;
  /** The decoded sample `i`. */
  get(i: number): Promise<ImageSample>;
}

/** Front-to-back source (iterable-style, as a WebDataset pipeline). */
export interface StreamingImageDataset {
  readonly kind: 'stream';
  /** Number of samples per epoch when known (counted at open time). */
  readonly size?: number;
  readonly numClasses?: number;
  readonly description: string;
  /** How to open it again elsewhere (absent for datasets built in code). */
  source?: DatasetSource;
  /**
   * The samples of one epoch. With `shuffle`, shard order and a shuffle buffer are drawn from
   * `rng`; the same rng state gives the same order, which is what makes resuming exact.
   */
  samples(rng: Rng, shuffle: boolean): AsyncIterable<RawSample>;
}

export type AnyImageDataset = ImageDataset | StreamingImageDataset;

/** What the trainer consumes. */
export interface ImageBatch {
  /** NCHW float32, normalised. */
  images: Float32Array;
  shape: [number, number, number, number];
  /** Hard labels (the first of each mixed pair when mixup/cutmix is on). */
  labels: Int32Array;
  /** Soft targets [B, numClasses] when mixup, cutmix or label smoothing is active. */
  targets?: Float32Array;
  /** The mixing weight of this batch (1 when nothing was mixed), for logging. */
  lam?: number;
  /** Source keys/indices of the samples, for debugging and tests. */
  keys: string[];
  /** Captions, in sample order, when the source has them (image-text data). */
  captions?: string[];
}

/** A loader position: restoring it makes the loader continue exactly where it was saved. */
export interface LoaderState {
  /** 0-based epoch. */
  epoch: number;
  /** Samples of this epoch already handed out (a multiple of the batch size except at the end). */
  index: number;
  /** Loader Rng state at the start of `epoch`; the epoch's order and augmentations derive from it. */
  rng: RngState;
}
