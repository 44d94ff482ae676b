/**
 * A real crash: a child process saves checkpoints in a loop and is SIGKILLed at a random moment
 * (mid-write, mid-rename, mid-prune...). Whatever the moment, the run must load its newest
 * complete checkpoint, at least as new as the last one the child reported finished.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Rng } from '@masksub/core';
import { disposeCheckpoint, latestCheckpoint, loadCheckpoint } from './checkpoint.js';

const here = dirname(fileURLToPath(import.meta.url));
/** tsx's loader, run inside the writer's own node process (the tsx CLI would put a wrapper
 * process in between, and killing the wrapper would leave the writer running). */
const tsxLoader = resolve(here, '../../../../../node_modules/tsx/dist/loader.mjs');

/** Child: saves step start, start+1, ... (a 1 MB model, so a kill often lands mid-save). */
function writerScript(runDir: string, start: number): string {
  return `(async () => {
    const { saveCheckpoint } = await import(${JSON.stringify(join(here, 'checkpoint.ts'))});
    const { tf } = await import(${JSON.stringify(join(here, '../../tf.ts'))});
    const w = tf.variable(tf.randomNormal([512, 512], 0, 1, 'float32', 1));
    for (let s = ${start}; ; s++) {
      await saveCheckpoint(${JSON.stringify(runDir)}, { step: s, epoch: 0, model: new Map([['w', w]]), config: { s } }, { keepLast: 2 });
      process.stdout.write('saved ' + s + '\\n');
    }
  })();`;
}

/** Runs the writer until it has reported `saves` saves, lets it run `extraMs` more, kills it. */
function runAndKill(runDir: string, start: number, saves: number, extraMs: number): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['--import', pathToFileURL(tsxLoader).href, '-e', writerScript(runDir, start)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let lastSaved = -1;
    let count = 0;
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      for (const m of d.toString().matchAll(/saved (\d+)/g)) {
        lastSaved = Number(m[1]);
        if (++count === saves) setTimeout(() => child.kill('SIGKILL'), extraMs);
      }
    });
    child.on('exit', (code, signal) => {
      if (signal === 'SIGKILL') resolvePromise(lastSaved);
      else reject(new Error(`writer exited (${code}) before it was killed:\n${stderr}`));
    });
  });
}

describe.skipIf(!existsSync(tsxLoader))('checkpoints survive a SIGKILL at any moment', () => {
  it('three kills at random points', async () => {
    const runDir = await mkdtemp(join(tmpdir(), 'masksub-kill-'));
    const rng = new Rng(2024);
    try {
      let next = 1;
      for (let round = 0; round < 3; round++) {
        const lastReported = await runAndKill(runDir, next, 2 + rng.int(3), rng.int(25));
        const dir = await latestCheckpoint(runDir);
        expect(dir, `round ${round}`).not.toBeNull();
        const c = await loadCheckpoint(dir!);
        expect(c.step).toBeGreaterThanOrEqual(lastReported);
        expect(c.config).toEqual({ s: c.step });
        expect(c.model.get('w')!.shape).toEqual([512, 512]);
        disposeCheckpoint(c);
        // Only complete checkpoints, the pointer and (maybe) the dead writer's temp entries remain.
        const left = await readdir(join(runDir, 'checkpoints'));
        expect(left.filter((e) => e.startsWith('step-')).length).toBeLessThanOrEqual(3);
        next = c.step + 1;
      }
    } finally {
      await rm(runDir, { recursive: true, force: true });
    }
  });
});
