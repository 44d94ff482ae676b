/**
 * Tests that read `../shared` (fixtures and data beside the repo) skip with a clear message in a
 * user's clone where it is absent, but fail under CI=true, so a broken path cannot pass CI.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe } from 'vitest';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');

/** Absolute path of `../shared/<rel>` next to the repository (MASKSUB_SHARED overrides). */
export function sharedPath(rel = ''): string {
  const base = process.env.MASKSUB_SHARED ?? join(repoRoot, '..', 'shared');
  return join(base, rel);
}

/** The hf-tiny fixture folder of one architecture. */
export function fixturePath(arch: string, file = ''): string {
  return sharedPath(join('fixtures/hf-tiny', arch, file));
}

/**
 * `describe` that runs when `../shared/<rel>` exists; otherwise skips (and says why), except
 * under CI=true where the absence itself is a failure.
 */
export function describeShared(rel: string, name: string, fn: () => void): void {
  const path = sharedPath(rel);
  if (existsSync(path)) {
    describe(name, fn);
  } else if (process.env.CI === 'true') {
    describe(name, () => {
      throw new Error(`CI=true but ${path} is missing: the shared fixtures/data must be beside the repo`);
    });
  } else {
    console.warn(`[skip] ${name}: ${path} is absent (shared fixtures/data are read from ../shared)`);
    describe.skip(name, fn);
  }
}
