/**
 * The loader's worker thread loads no TensorFlow.js: its modules take errors and the RNG from
 * `@masksub/core/base`, so a worker starts in a fraction of the ~0.7 s the main entry's tfjs and
 * backends take (bench/pipeline.ts reports the first batch's wait).
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..', '..', '..');

/** Imports `modules` in a fresh process; reports whether tfjs' engine global exists afterwards. */
function tfjsLoadedAfter(modules: string[]): boolean {
  const imports = modules.map((m) => `await import(${JSON.stringify(m)});`).join(' ');
  const code = `${imports} process.stdout.write(String('_tfengine' in globalThis));`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--conditions=source', '--input-type=module', '-e', code], { cwd: repo, encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
  return r.stdout.trim() === 'true';
}

const workerGraph = ['loader.ts', 'spec.ts', 'worker-protocol.ts'].map((f) => pathToFileURL(join(here, f)).href);

describe('the loader worker module graph', () => {
  it('imports no tfjs (and the check sees tfjs when the main entry is imported)', () => {
    expect(tfjsLoadedAfter(workerGraph)).toBe(false);
    expect(tfjsLoadedAfter(['@masksub/core'])).toBe(true);
  });

  it('@masksub/core/base shares its error classes with the main entry', async () => {
    const base = await import('@masksub/core/base');
    const main = await import('@masksub/core');
    expect(base.OptionError).toBe(main.OptionError);
    expect(base.FileFormatError).toBe(main.FileFormatError);
    expect(base.Rng).toBe(main.Rng);
    expect(new base.OptionError('x', 'bad')).toBeInstanceOf(main.MaskSubError);
  });
});
