/** The first N samples of a dataset (quick runs, smoke tests, small evaluations). */
import type { AnyImageDataset } from './data/types.js';

export function limitDataset(ds: AnyImageDataset, limit: number | undefined): AnyImageDataset {
  if (limit === undefined || (ds.size !== undefined && ds.size <= limit)) return ds;
  const description = `${ds.description} (first ${limit})`;
  const source = ds.source && { ...ds.source, limit: Math.min(limit, ds.source.limit ?? limit) };
  if (ds.kind === 'map') {
    return { kind: 'map', size: limit, numClasses: ds.numClasses, description, source, raw: (i) => ds.raw(i), get: (i) => ds.get(i) };
  }
  return {
    kind: 'stream',
    size: limit,
    numClasses: ds.numClasses,
    description,
    source,
    async *samples(rng, shuffle) {
      let n = 0;
      for await (const s of ds.samples(rng, shuffle)) {
        if (n++ >= limit) return;
        yield s;
      }
    },
  };
}
