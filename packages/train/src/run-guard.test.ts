/** Data-loss and bad-input protections of `masksub train` / `eval` (issue 11 cases 4, 6, 7, 9, 13, 14). */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import '@masksub/vit';
import { afterAll, describe, expect, it } from 'vitest';
import { initBackend, OptionError } from '@masksub/core';
import { parseRunConfig } from './config.js';
import { checkResumeChanges, configChanges } from './run-guard.js';
import { RESOLVED_CONFIG, readRunConfig, trainRun } from './trainer.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const cli = join(repo, 'packages/train/src/cli/main.ts');
const tmp = mkdtempSync(join(tmpdir(), 'masksub-guard-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const masksub = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', '--conditions=source', cli, ...args], { cwd: repo, encoding: 'utf8', timeout: 120_000 });

const vitConfig = (extra: Record<string, unknown> = {}) => {
  const p = join(tmp, `vit-${Object.keys(extra).join('-') || 'plain'}.json`);
  writeFileSync(p, JSON.stringify({ model_type: 'vit', image_size: 28, patch_size: 14, num_channels: 1, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 16, num_labels: 10, ...extra }));
  return p;
};
const run = (dir: string, over: Record<string, unknown> = {}) =>
  parseRunConfig({
    model: vitConfig(),
    data: { train: 'mnist:train', train_limit: 16, mean: [0.1], std: [0.3] },
    optimizer: { lr: 1e-3 },
    train: { batch_size: 8, steps: 2, seed: 1 },
    run: { dir, quiet: true, backend: 'cpu', checkpoint_every: 1, log_every: 1 },
    ...over,
  });
const quiet = { log: () => {}, stream: { write: () => true } as unknown as NodeJS.WritableStream };

describe('run folders and resume (in process)', () => {
  it('refuses a non-empty run folder, replaces a run with force, refuses an edited recipe on resume', async () => {
    await initBackend({ prefer: 'cpu', log: () => {} });
    const dir = join(tmp, 'run');
    await trainRun(run(dir), quiet);
    const first = readFileSync(join(dir, 'metrics.jsonl'), 'utf8');
    await expect(trainRun(run(dir), quiet)).rejects.toThrow(/option 'run\.dir': .*run is not empty \(it holds a masksub run\): continue it with --resume/);
    expect(readFileSync(join(dir, 'metrics.jsonl'), 'utf8')).toBe(first); // nothing was touched

    const other = join(tmp, 'not-a-run');
    mkdirSync(other);
    writeFileSync(join(other, 'notes.txt'), 'mine');
    await expect(trainRun(run(other), { ...quiet, force: true })).rejects.toThrow(/not a masksub run folder: --force only replaces a run/);
    expect(readFileSync(join(other, 'notes.txt'), 'utf8')).toBe('mine');

    // An edited config.resolved.yaml of a run is refused on resume, naming the key.
    const file = join(dir, RESOLVED_CONFIG);
    writeFileSync(file, readFileSync(file, 'utf8').replace(/lr: 0\.001/, 'lr: 5').replace(/steps: 2/, 'steps: 4'));
    await expect(trainRun(readRunConfig(dir), { ...quiet, resume: true })).rejects.toThrow(/optimizer\.lr 0\.001 -> 5.*|train\.steps 2 -> 4/);
    await trainRun(run(dir, { train: { batch_size: 8, steps: 1, seed: 2 } }), { ...quiet, force: true });
    expect(readFileSync(join(dir, 'metrics.jsonl'), 'utf8')).not.toBe(first);
  }, 120_000);

  it('a batch larger than the dataset fails at start; diverged weights are never checkpointed', async () => {
    const bigBatch = join(tmp, 'big-batch');
    await expect(trainRun(run(bigBatch, { train: { batch_size: 17, steps: 1, seed: 0 } }), quiet)).rejects.toThrow(
      /option 'train\.batch_size': 17 is larger than the 16 samples/,
    );
    // A fresh start that failed before its first update takes back its folder: the corrected
    // command runs there without --force.
    expect(existsSync(bigBatch)).toBe(false);
    await trainRun(run(bigBatch, { train: { batch_size: 8, steps: 1, seed: 0 } }), quiet);
    expect(readFileSync(join(bigBatch, 'metrics.jsonl'), 'utf8')).toMatch(/"type":"train"/);
    // A folder that was there before (empty) stays, emptied of what the start wrote.
    const mine = join(tmp, 'made-by-user');
    mkdirSync(mine);
    await expect(trainRun(run(mine, { train: { batch_size: 17, steps: 1, seed: 0 } }), quiet)).rejects.toThrow(/train\.batch_size/);
    expect(readdirSync(mine)).toEqual([]);
    const dir = join(tmp, 'diverge');
    const err = await trainRun(run(dir, { optimizer: { kind: 'sgd', lr: 1e300, weight_decay: 0 }, train: { batch_size: 8, steps: 1, seed: 0 } }), quiet).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/weights diverged at step 1|loss diverged/);
    expect(() => readFileSync(join(dir, 'checkpoints', 'latest'))).toThrow();
    // Update 1 was made (its weights were what diverged): its record stays.
    expect(readFileSync(join(dir, 'metrics.jsonl'), 'utf8')).toMatch(/"type":"train","step":1/);
  }, 120_000);

  it('a resume may change how the run reports and writes its model, nothing that moves the weights', () => {
    const safe = [{ key: 'run.model_format', from: 'safetensors', to: 'source' }, { key: 'run.quiet', from: false, to: true }];
    expect(checkResumeChanges(safe, '--set')).toEqual(safe);
    expect(() => checkResumeChanges([...safe, { key: 'optimizer.lr', from: 0.001, to: 0.002 }], '--set')).toThrow(/option 'resume': --set would change the recipe .*optimizer\.lr 0\.001 -> 0\.002/);
  });

  it('configChanges lists leaf differences', () => {
    expect(configChanges({ a: { b: 1, c: [1] } }, { a: { b: 2, c: [1] }, d: true })).toEqual([
      { key: 'a.b', from: 1, to: 2 },
      { key: 'd', from: undefined, to: true },
    ]);
    expect(() => parseRunConfig({ ...run('x'), run: { dir: 'x', stop_after: 3 } })).toThrow(/unknown key 'run\.stop_after'/);
  });
});

describe('the CLI: messages and exit code 2, no stack traces', () => {
  const expectRefusal = (r: ReturnType<typeof masksub>, message: RegExp) => {
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  };
  it('resume with recipe flags, eval --limit abc', () => {
    // Two processes only (each start costs seconds): the other CLI refusals share their code paths
    // (OptionError -> message + exit 2), tested in process above and in core.
    const dir = join(tmp, 'run');
    expectRefusal(masksub('train', '--resume', dir, '--steps', '8', '--lr', '5'), /the flags given with --resume would change the recipe .*optimizer\.lr .* -> 5.*train\.steps 1 -> 8/);
    expectRefusal(
      masksub('eval', '--model', dir, '--data', 'mnist:test', '--limit', 'abc'),
      /option 'limit': expected a positive integer, got 'abc'/,
    );
  }, 120_000);
});

// Keep OptionError imported for readers of the assertions above: every refusal here is one.
void OptionError;

describe('bad values that used to be stack traces (in process)', () => {
  it('unknown hidden_act and bad --set JSON are OptionErrors naming the key', async () => {
    const { buildFromConfig } = await import('@masksub/core');
    expect(() => buildFromConfig(vitConfig({ hidden_act: 'swish' }))).toThrow(/option 'hidden_act': config\.json: 'swish' is not supported/);
    const { rawConfig } = await import('./cli/main.js');
    expect(() => rawConfig({ set: ['optimizer.betas=[0.9'] })).toThrow(/option 'set': 'optimizer\.betas=\[0\.9': the value is not valid JSON/);
    expect(rawConfig({ set: ['optimizer.betas=[0.9,0.99]'] })).toEqual({ optimizer: { betas: [0.9, 0.99] } });
  });
});
