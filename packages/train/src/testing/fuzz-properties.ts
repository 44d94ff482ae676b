/**
 * The fast-check properties of the data and run-state parsers (issue 11 case 15): tar/tar.gz +
 * WebDataset grouping, IDX, the run config and the checkpoint manifest. Arbitrary and mutated
 * inputs end in a MaskSubError or a valid result, never another exception. Defined once: the
 * suite (data/parsers.fuzz.test.ts) runs them with fixed seeds, scripts/fuzz-soak.ts longer.
 * Plain `Error`s (no vitest), so the soak script runs them outside the test runner.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { MaskSubError } from '@masksub/core';
import { loadCheckpoint } from '../checkpoint/checkpoint.js';
import { parseRunConfig } from '../config.js';
import { parseIdx } from '../data/idx.js';
import { buildTar } from '../data/tar-writer.js';
import { readShardSamples } from '../data/webdataset.js';

import type { FuzzProperty, FuzzRun } from '../../../core/src/testing/fuzz-properties.js';

export type { FuzzProperty, FuzzRun };

async function refusesOrWorks(run: () => Promise<unknown> | unknown): Promise<void> {
  try {
    await run();
  } catch (e) {
    if (!(e instanceof MaskSubError)) throw e;
  }
}

/** The synchronous form: a non-MaskSubError propagates to fast-check as a failure. */
function refusesOrWorksSync(run: () => unknown): void {
  try {
    run();
  } catch (e) {
    if (!(e instanceof MaskSubError)) throw e;
  }
}

function mutate(good: Uint8Array, edits: [number, number][], cut: number | null): Uint8Array {
  const b = good.slice();
  for (const [i, v] of edits) b[i % b.length] = v;
  return cut === null ? b : b.subarray(0, cut % (b.length + 1));
}
const edits = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 });
const cut = fc.option(fc.nat(), { nil: null });

async function inTempDir(run: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'masksub-fuzz-'));
  try {
    await run(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const DATA_FUZZ_PROPERTIES: readonly FuzzProperty[] = [
  {
    name: 'tar, tar.gz and WebDataset grouping: mutated shards',
    defaults: { seed: 21, numRuns: 150 },
    run: (o) =>
      inTempDir(async (dir) => {
        const good = buildTar([
          { name: 'a.png', data: new Uint8Array([1, 2, 3]) },
          { name: 'a.cls', data: Buffer.from('1') },
          { name: 'b.png', data: new Uint8Array([4]) },
          { name: 'b.cls', data: Buffer.from('0') },
        ]).subarray(0, 10 * 512);
        let n = 0;
        await fc.assert(
          fc.asyncProperty(edits, cut, fc.boolean(), async (e, c, gz) => {
            const bytes = mutate(good, e, c);
            const p = join(dir, `s${n++}.tar${gz ? '.gz' : ''}`);
            writeFileSync(p, gz ? gzipSync(bytes) : bytes);
            await refusesOrWorks(async () => {
              for await (const s of readShardSamples(p)) if (!Number.isInteger(s.label)) throw new Error(`${p}: sample '${s.key}' has label ${String(s.label)}`);
            });
          }),
          o,
        );
      }),
  },
  {
    name: 'IDX: arbitrary bytes',
    defaults: { seed: 22, numRuns: 300 },
    run: (o) => fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (b) => refusesOrWorksSync(() => parseIdx(b, 'f.idx'))), o),
  },
  {
    name: 'IDX: mutated valid file',
    defaults: { seed: 22, numRuns: 300 },
    run: (o) => {
      const good = new Uint8Array([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 1, 1, 2, 3, 4]);
      fc.assert(fc.property(edits, cut, (e, c) => refusesOrWorksSync(() => parseIdx(mutate(good, e, c), 'f.idx'))), o);
    },
  },
  {
    name: 'run config: arbitrary JSON',
    defaults: { seed: 23, numRuns: 400 },
    run: (o) => {
      const config = fc.record({ model: fc.oneof(fc.string(), fc.integer()), data: fc.oneof(fc.json(), fc.record({ train: fc.string(), mean: fc.array(fc.double()) })), train: fc.option(fc.object()) });
      fc.assert(fc.property(fc.oneof(fc.jsonValue(), config), (v) => refusesOrWorksSync(() => parseRunConfig(v, 'fuzz.yaml'))), o);
    },
  },
  {
    name: 'checkpoint manifest: arbitrary state.json',
    defaults: { seed: 24, numRuns: 200 },
    run: (o) =>
      inTempDir(async (dir) => {
        const ck = join(dir, 'step-1');
        const manifest = fc.record({
          format: fc.constantFrom('masksub-checkpoint', 'x'),
          version: fc.constantFrom(1, 2),
          sequence: fc.oneof(fc.nat(), fc.string()),
          step: fc.nat(),
          epoch: fc.nat(),
          files: fc.oneof(fc.json(), fc.constant({ 'model.safetensors': { bytes: 8, sha256: 'x', tensors: [] } })),
          rng: fc.oneof(fc.json(), fc.constant({})),
        });
        mkdirSync(ck, { recursive: true });
        writeFileSync(join(ck, 'model.safetensors'), new Uint8Array(8));
        await fc.assert(
          fc.asyncProperty(fc.oneof(manifest, fc.jsonValue()), async (m) => {
            writeFileSync(join(ck, 'state.json'), JSON.stringify(m));
            await refusesOrWorks(() => loadCheckpoint(ck));
          }),
          o,
        );
      }),
  },
];
