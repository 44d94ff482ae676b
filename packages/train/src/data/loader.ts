/**
 * Batches for the trainer, reproducible and resumable.
 *
 * Determinism: the loader's Rng state at the start of an epoch (the "epoch seed") fixes that
 * epoch completely. The sample order comes from a stream derived from it, and batch `b` of the
 * epoch gets its own Rng derived from (epoch seed, b), so augmentations do not depend on how
 * many batches were prefetched or decoded concurrently. A checkpoint stores {epoch, index,
 * epoch seed}; restoring rebuilds the epoch's order, skips `index` samples (without decoding)
 * and continues with batch index/B, so the resumed batches equal the uninterrupted ones.
 *
 * Throughput: up to `prefetch` batches are assembled ahead while the trainer works; each batch
 * decodes its images concurrently (sharp runs on libuv's thread pool). Memory stays bounded by
 * `prefetch` batches (plus the shuffle buffer of a streamed source). With `worker`, all of it
 * (reading shards, decoding, augmenting) runs on a worker thread: the training step is
 * synchronous, and on the main thread the pipeline's JavaScript only moves between steps.
 */
import { FileFormatError, OptionError, Rng, type RngState } from '@masksub/core/base';
import { augmentImage, mixBatch, type AugmentOptions, type MixupOptions } from './augment.js';
import { decodeSample } from './decode.js';
import { applyGeometry, outputSize, writeNormalizedCHW, type PreprocessSpec } from './preprocess.js';
import type { AnyImageDataset, ImageBatch, ImageSample, LoaderState, RawSample } from './types.js';
import { randomErase, type RandomErasingOptions } from './random-erasing.js';
import { applyRecipeAugment, recipeAugmentActive, type RecipeAugmentOptions } from './recipe-augment.js';
import { repeatedEpochSize, repeatedOrder, type RepeatedAugmentation } from './repeat-sampler.js';
import { LoaderWorker } from './worker-client.js';

export interface DataLoaderOptions {
  batchSize: number;
  /** How images become model input (output size, normalisation, channels). */
  preprocess: PreprocessSpec;
  /** Shuffle every epoch (default true). */
  shuffle?: boolean;
  /** Drop the last incomplete batch (default false). */
  dropLast?: boolean;
  /** Seed or full Rng state (default 0). */
  seed?: number | RngState;
  /** Per-sample training augmentation; omit for evaluation. */
  augment?: AugmentOptions;
  /** RandAugment / ThreeAugment / colour jitter after the crop and flip (training only). */
  recipe?: RecipeAugmentOptions;
  /** timm random erasing on the normalised image (training only). */
  erasing?: RandomErasingOptions;
  /** Repeated augmentation: each image `count` times per epoch (training only). */
  repeat?: RepeatedAugmentation;
  /** Batch mixing and/or label smoothing (training only); produces `targets`. */
  mixup?: MixupOptions;
  /** Batches assembled ahead (default 2). */
  prefetch?: number;
  /** Overrides the dataset's class count (needed for targets). */
  numClasses?: number;
  /**
   * Assemble batches on a worker thread (default false). Needs a dataset that records how it was
   * opened (openDataSpec's `source`); others are assembled in this thread. Same batches either way.
   */
  worker?: boolean;
}

/** Mix of 32-bit words (murmur3 fmix32), for deriving independent streams from one state. */
function fmix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * An Rng determined by (state, stream, ...keys) alone: another stream or key gives an unrelated
 * sequence. (Used instead of Rng.fork so nothing depends on how many draws happened before.)
 */
export function deriveRng(state: RngState, stream: number, ...keys: number[]): Rng {
  let h = fmix32(stream + 0x632be5ab);
  for (const k of keys) h = fmix32((h ^ fmix32(k + 0x9e3779b9)) >>> 0);
  const words = state.map((w, i) => fmix32((w ^ h ^ fmix32(i + 1)) >>> 0)) as RngState;
  if ((words[0] | words[1] | words[2] | words[3]) === 0) words[0] = 1;
  return new Rng(words);
}

const ORDER_STREAM = 1;
const BATCH_STREAM = 2;
const NEXT_EPOCH_STREAM = 3;
const SAMPLE_STREAM = 4;

/** One batch worth of work: which samples, and its number within the epoch. */
type BatchJob = Promise<ImageBatch | null>;

export class DataLoader {
  readonly batchSize: number;
  private readonly shuffle: boolean;
  private readonly dropLast: boolean;
  private readonly prefetch: number;
  private readonly numClasses: number | undefined;
  private epochNumber = 0;
  private index = 0;
  private epochSeed: RngState;
  /** Bumped by restore() so an iteration in flight notices it is stale. */
  private generation = 0;
  /** The worker thread when `worker` is on (started with the loader, so it opens the data meanwhile). */
  private thread: LoaderWorker | null = null;

  constructor(
    readonly dataset: AnyImageDataset,
    private readonly options: DataLoaderOptions,
  ) {
    const { batchSize } = options;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new OptionError('batchSize', `must be a positive integer, got ${batchSize}`);
    this.batchSize = batchSize;
    this.shuffle = options.shuffle ?? true;
    this.dropLast = options.dropLast ?? false;
    this.prefetch = options.prefetch ?? 2;
    if (!Number.isInteger(this.prefetch) || this.prefetch < 1) throw new OptionError('prefetch', `must be a positive integer, got ${this.prefetch}`);
    this.numClasses = options.numClasses ?? dataset.numClasses;
    // With drop_last, fewer samples than one batch would never yield a batch: the loop would spin.
    if (this.dropLast && dataset.size !== undefined && dataset.size < batchSize) {
      throw new OptionError('batchSize', `${batchSize} is larger than the ${dataset.size} samples of ${dataset.description}, so no complete batch can be formed`);
    }
    if (options.mixup && this.numClasses === undefined) throw new OptionError('numClasses', `mixup/label smoothing needs the class count and ${dataset.description} does not know it`);
    this.epochSeed = new Rng(options.seed ?? 0).getState();
    // Started now: reopening (and for WebDataset counting) the data overlaps the trainer's set-up.
    if (options.worker && dataset.source) this.thread = this.startThread(dataset.source);
  }

  /** Samples per epoch, when the dataset knows its size (repeated augmentation changes it). */
  get size(): number | undefined {
    const n = this.dataset.size;
    if (n === undefined || !this.options.repeat) return n;
    return repeatedEpochSize(n, this.options.repeat);
  }

  /** Batches per epoch (respecting dropLast), when the size is known. */
  get batchesPerEpoch(): number | undefined {
    const n = this.size;
    if (n === undefined) return undefined;
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  get epoch(): number {
    return this.epochNumber;
  }

  /** The position after the last batch handed out; save it in a checkpoint. */
  state(): LoaderState {
    return { epoch: this.epochNumber, index: this.index, rng: [...this.epochSeed] as RngState };
  }

  /** Continue from a saved position. Iterations started before become invalid. */
  restore(state: LoaderState): void {
    if (!Number.isInteger(state.epoch) || state.epoch < 0) throw new OptionError('loader.epoch', `must be a non-negative integer, got ${state.epoch}`);
    if (!Number.isInteger(state.index) || state.index < 0) throw new OptionError('loader.index', `must be a non-negative integer, got ${state.index}`);
    const size = this.size;
    if (size !== undefined && state.index > size) throw new OptionError('loader.index', `${state.index} is past the ${size} samples of ${this.dataset.description}`);
    new Rng(state.rng); // validates the words
    this.epochNumber = state.epoch;
    this.index = state.index;
    this.epochSeed = [...state.rng] as RngState;
    this.generation++;
  }

  /**
   * The remaining batches of the current epoch; when it is exhausted the loader moves to the
   * next epoch (so calling this again yields the next epoch). Breaking out early keeps the
   * position of the last batch received.
   */
  async *epochBatches(): AsyncGenerator<ImageBatch> {
    // A position saved right after the last batch of an epoch belongs to the next epoch.
    if (this.epochComplete(this.index)) this.advanceEpoch();
    if (this.options.worker && this.dataset.source) {
      yield* this.workerBatches(this.dataset.source);
      return;
    }
    const generation = this.generation;
    const seed = this.epochSeed;
    const start = this.index;
    const producer = this.dataset.kind === 'map' ? this.mapProducer(seed, start) : this.streamProducer(seed, start);
    const queue: BatchJob[] = [];
    let exhausted = false;
    let advanced = false;
    try {
      for (;;) {
        while (!exhausted && queue.length < this.prefetch) {
          const job = producer.next();
          if (job === null) exhausted = true;
          else {
            job.catch(() => undefined); // surfaced when awaited; avoids unhandled rejections meanwhile
            queue.push(job);
          }
        }
        const job = queue.shift();
        if (job === undefined) break;
        const batch = await job;
        if (batch === null) break;
        if (generation !== this.generation) throw new OptionError('loader', 'restore() was called while an epoch was being iterated; start a new epochBatches()');
        this.index += batch.labels.length;
        // Move on before handing out the last batch, so state() taken after it resumes in the next epoch.
        if (this.epochComplete(this.index)) {
          this.advanceEpoch();
          advanced = true;
        }
        yield batch;
        if (advanced) return;
      }
    } finally {
      await producer.close();
    }
    // Streams of unknown size only learn here that the epoch is over.
    if (!advanced && generation === this.generation) this.advanceEpoch();
  }

  /** The same epoch as the in-thread path, assembled by the worker; its positions become ours. */
  private async *workerBatches(source: NonNullable<AnyImageDataset['source']>): AsyncGenerator<ImageBatch> {
    this.thread ??= this.startThread(source); // after close()
    const generation = this.generation;
    for await (const { batch, state } of this.thread.epoch(this.state(), this.prefetch)) {
      if (generation !== this.generation) throw new OptionError('loader', 'restore() was called while an epoch was being iterated; start a new epochBatches()');
      this.epochNumber = state.epoch;
      this.index = state.index;
      this.epochSeed = [...state.rng] as RngState;
      if (batch) yield batch;
    }
  }

  /** The worker runs an in-thread loader with the same options. */
  private startThread(source: NonNullable<AnyImageDataset['source']>): LoaderWorker {
    return new LoaderWorker(source, { ...this.options, worker: false });
  }

  /** Stops the worker thread, if one was started (an idle one does not keep the process alive either). */
  async close(): Promise<void> {
    const thread = this.thread;
    this.thread = null;
    await thread?.close();
  }

  /** Whether no batch is left in the epoch after `index` samples (only decidable with a known size). */
  private epochComplete(index: number): boolean {
    const size = this.size;
    if (size === undefined) return false;
    return this.dropLast ? size - index < this.batchSize : index >= size;
  }

  private advanceEpoch(): void {
    this.epochNumber++;
    this.index = 0;
    this.epochSeed = deriveRng(this.epochSeed, NEXT_EPOCH_STREAM).getState();
  }

  /** Random-access source: a permutation of the indices, cut into batches. */
  private mapProducer(seed: RngState, start: number): { next(): BatchJob | null; close(): Promise<void> } {
    const dataset = this.dataset;
    if (dataset.kind !== 'map') throw new Error('unreachable');
    let order: Int32Array = new Int32Array(dataset.size);
    for (let i = 0; i < order.length; i++) order[i] = i;
    if (this.shuffle) deriveRng(seed, ORDER_STREAM).shuffle(order);
    if (this.options.repeat) order = repeatedOrder(order, this.options.repeat);
    const n = order.length;
    let pos = start;
    return {
      next: () => {
        const take = Math.min(this.batchSize, n - pos);
        if (take <= 0 || (this.dropLast && take < this.batchSize)) return null;
        const indices = Array.from(order.subarray(pos, pos + take));
        const batchNumber = Math.floor(pos / this.batchSize);
        pos += take;
        return Promise.all(indices.map((i) => dataset.raw(i))).then((raws) => this.assemble(raws, seed, batchNumber));
      },
      close: async () => undefined,
    };
  }

  /** Streaming source: pulls are serialised (the stream is sequential), decoding is not. */
  private streamProducer(seed: RngState, start: number): { next(): BatchJob | null; close(): Promise<void> } {
    const dataset = this.dataset;
    if (dataset.kind !== 'stream') throw new Error('unreachable');
    const iterator = dataset.samples(deriveRng(seed, ORDER_STREAM), this.shuffle)[Symbol.asyncIterator]();
    let ended = false;
    // Repeated augmentation on a stream: each sample is handed out `count` times in a row, up to
    // the epoch size when it is known (as the map-style order does).
    const repeats = this.options.repeat?.count ?? 1;
    const limit = this.size;
    let pending: RawSample[] = [];
    let emitted = 0;
    const pull = async (count: number): Promise<RawSample[]> => {
      const out: RawSample[] = [];
      while (out.length < count && (limit === undefined || emitted < limit)) {
        if (pending.length === 0) {
          if (ended) break;
          const r = await iterator.next();
          if (r.done) {
            ended = true;
            break;
          }
          pending = Array.from({ length: repeats }, () => r.value);
        }
        out.push(pending.shift()!);
        emitted++;
      }
      return out;
    };
    // Skip the samples a restored position has already consumed, without decoding them.
    let chain: Promise<unknown> = (async () => {
      let skipped = 0;
      while (skipped < start) {
        const got = await pull(Math.min(1024, start - skipped));
        if (got.length === 0) break;
        skipped += got.length;
      }
    })();
    let pos = start;
    let done = false;
    return {
      next: () => {
        if (done) return null;
        const batchNumber = Math.floor(pos / this.batchSize);
        pos += this.batchSize;
        const raws = chain.then(() => pull(this.batchSize));
        chain = raws;
        return raws.then((rs) => {
          if (rs.length === 0 || (this.dropLast && rs.length < this.batchSize)) {
            done = true;
            return null;
          }
          if (rs.length < this.batchSize) done = true;
          return this.assemble(rs, seed, batchNumber);
        });
      },
      close: async () => {
        await chain.catch(() => undefined);
        await iterator.return?.();
      },
    };
  }

  /** Decode, transform and normalise one batch; mixing and targets use the batch's own Rng. */
  private async assemble(raws: RawSample[], seed: RngState, batchNumber: number): Promise<ImageBatch> {
    const rng = deriveRng(seed, BATCH_STREAM, batchNumber);
    const sampleRngs = raws.map((_, k) => deriveRng(seed, SAMPLE_STREAM, batchNumber, k));
    const samples: ImageSample[] = await Promise.all(raws.map(decodeSample));
    const spec = this.options.preprocess;
    const augment = this.options.augment;
    const recipe = recipeAugmentActive(this.options.recipe) ? this.options.recipe : undefined;
    const images = samples.map((s, i) => {
      const img = augment ? augmentImage(s, spec, augment, sampleRngs[i]) : applyGeometry(s, spec);
      return recipe ? applyRecipeAugment(img, recipe, sampleRngs[i]) : img;
    });
    const size = outputSize(spec, samples[0].height, samples[0].width);
    const first = images[0];
    const B = images.length;
    const C = spec.channels;
    const plane = first.height * first.width;
    const data = new Float32Array(B * C * plane);
    const labels = new Int32Array(B);
    for (let i = 0; i < B; i++) {
      const img = images[i];
      if (img.height !== size.height || img.width !== size.width) {
        throw new OptionError('preprocess', `${raws[i].key} in ${this.dataset.description} became ${img.height}x${img.width} but the batch is ${size.height}x${size.width}; set a resize/crop size so images agree`);
      }
      writeNormalizedCHW(img, spec, data, i * C * plane);
      if (this.options.erasing && this.options.erasing.prob > 0) randomErase(data, i * C * plane, [C, size.height, size.width], this.options.erasing, sampleRngs[i]);
      const label = samples[i].label;
      // A label past the head would make that row's loss silently 0 (one-hot of nothing). An
      // image-text pair has no class (label -1); its caption is the target.
      const captioned = raws[i].caption !== undefined && label === -1;
      if (!captioned && (!Number.isInteger(label) || label < 0 || (this.numClasses !== undefined && label >= this.numClasses))) {
        throw new FileFormatError(this.dataset.description, `sample '${raws[i].key}': label ${label} is outside 0..${(this.numClasses ?? 0) - 1} (${this.numClasses} classes)`);
      }
      labels[i] = label;
    }
    const shape: [number, number, number, number] = [B, C, size.height, size.width];
    const batch: ImageBatch = { images: data, shape, labels, keys: raws.map((r) => r.key) };
    if (raws.some((r) => r.caption !== undefined)) batch.captions = raws.map((r) => r.caption ?? '');
    const mix = this.options.mixup;
    if (mix && this.numClasses !== undefined) {
      // Mixing happens after normalisation, as timm does on the device; since normalisation is
      // affine per channel and the weights sum to 1, this equals mixing raw pixels.
      const result = mixBatch(data, shape, labels, this.numClasses, mix, rng);
      batch.targets = result.targets;
      batch.lam = result.lam;
    }
    return batch;
  }
}
