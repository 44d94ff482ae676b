/**
 * A step that cannot fit the backend's memory fails before the first update, saying what to do;
 * and the train lines carry the share of time the loop waited for data.
 */
import '@masksub/vit';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { MEMORY_LIMIT_ENV, OptionError } from '@masksub/core';
import { configToYaml, parseRunConfig } from './config.js';
import { trainRun } from './trainer.js';

const tmp = mkdtempSync(join(tmpdir(), 'masksub-memory-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
afterEach(() => {
  delete process.env[MEMORY_LIMIT_ENV];
});

// Two layers: the last one computes only the CLS row, so a one-layer step is too small for 1 MiB to refuse batch 16.
const modelFile = join(tmp, 'vit.json');
writeFileSync(
  modelFile,
  JSON.stringify({ model_type: 'vit', image_size: 28, patch_size: 7, num_channels: 1, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 32, num_labels: 10 }),
);
let runs = 0;
const config = (run: Record<string, unknown> = {}) =>
  parseRunConfig({
    model: modelFile,
    data: { train: 'mnist:train', train_limit: 64, mean: [0.13], std: [0.31] },
    optimizer: { lr: 0.003 },
    train: { batch_size: 16, steps: 2, seed: 1 },
    run: { dir: join(tmp, `run-${runs++}`), log_every: 1, checkpoint_every: 2, quiet: true, backend: 'cpu', ...run },
  });
const quiet = { log: () => undefined, stream: { write: () => true } as unknown as NodeJS.WritableStream };

describe('the memory check before the first update', () => {
  it('refuses a batch whose measured step exceeds the limit, naming train.batch_size and the micro-batch that fits', async () => {
    process.env[MEMORY_LIMIT_ENV] = '1';
    const c = config();
    const err = await trainRun(c, quiet).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OptionError);
    expect((err as Error).message).toMatch(/train\.batch_size/);
    expect((err as Error).message).toMatch(/more than the 1 MiB MASKSUB_MEMORY_LIMIT_MIB allows\. .* or raise MASKSUB_MEMORY_LIMIT_MIB\./);
    expect((err as Error).message).toMatch(/train\.batch_size (\d+) with train\.accum_steps (\d+) \(the same 16 examples per update\)/);
    const [, micro, steps] = /train\.batch_size (\d+) with train\.accum_steps (\d+)/.exec((err as Error).message)!;
    expect(Number(micro) * Number(steps)).toBe(16);
    expect(Number(micro)).toBeLessThan(16);
    // Nothing was trained, and the start took back the folder it made (the suggested command
    // may reuse it without --force).
    expect(existsSync(c.run.dir)).toBe(false);
    // What it names runs under the same limit (its check counts the gradient sum it then holds).
    const logs: string[] = [];
    const base = config();
    const suggested = parseRunConfig({ ...JSON.parse(JSON.stringify(base)), train: { ...base.train, batch_size: Number(micro), accum_steps: Number(steps) } });
    const r = await trainRun(suggested, { ...quiet, log: (m) => logs.push(m) });
    expect(r.steps).toBe(2);
    expect(logs.find((l) => l.startsWith('memory:'))).toMatch(new RegExp(`at batch ${micro} needs about .* with the \\d+ [KM]iB gradient sum of train\\.accum_steps`));
  });

  it('from the CLI: exit code 2 with the message, and the process ends (the loader worker is stopped too)', () => {
    const c = config({ quiet: false });
    expect(c.data.loader_worker).toBe(true);
    const file = join(tmp, 'refused.yaml');
    writeFileSync(file, configToYaml(c));
    const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--conditions=source', join(repo, 'packages/train/src/cli/main.ts'), 'train', '--config', file], {
      cwd: repo,
      encoding: 'utf8',
      timeout: 120_000,
      env: { ...process.env, [MEMORY_LIMIT_ENV]: '0.05' },
    });
    // Before the loop's finally the error was printed and the worker kept the process alive: no exit code.
    expect(r.signal).toBeNull();
    expect(r.status).toBe(2);
    expect(r.stderr + r.stdout).toMatch(/error: option 'train\.batch_size': .*even one example per micro-batch does not fit/);
    expect(r.stderr + r.stdout).not.toMatch(/\n\s+at /);
  });

  it('says so when not even one example per micro-batch fits (the weights, optimizer state and gradient sum alone exceed the limit)', async () => {
    process.env[MEMORY_LIMIT_ENV] = '0.05';
    const err = await trainRun(config(), quiet).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OptionError);
    expect((err as Error).message).toMatch(/even one example per micro-batch does not fit/);
    // The limit is the environment variable's, and so is the way out.
    expect((err as Error).message).toMatch(/does not fit the 52 KiB MASKSUB_MEMORY_LIMIT_MIB allows\. Raise MASKSUB_MEMORY_LIMIT_MIB, or use a smaller model/);
  });

  it('lets the run through under a limit it fits, or with run.memory_check: false', async () => {
    process.env[MEMORY_LIMIT_ENV] = '4096';
    const logs: string[] = [];
    const r = await trainRun(config(), { ...quiet, log: (m) => logs.push(m) });
    expect(r.steps).toBe(2);
    expect(logs.some((l) => /^memory: a step at batch 16 needs about/.test(l))).toBe(true);
    process.env[MEMORY_LIMIT_ENV] = '0.05';
    expect((await trainRun(config({ memory_check: false }), quiet)).steps).toBe(2);
  });
});

describe('data wait', () => {
  it('every train line has the share of its interval spent waiting for the next batch', async () => {
    const c = config();
    await trainRun(c, quiet);
    const lines = readFileSync(join(c.run.dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.type === 'train');
    expect(lines.length).toBe(2);
    for (const l of lines) {
      expect(l.data_wait).toBeGreaterThanOrEqual(0);
      expect(l.data_wait).toBeLessThanOrEqual(1);
    }
  });
});
