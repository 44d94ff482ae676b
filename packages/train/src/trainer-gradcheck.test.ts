/**
 * The update check's second branch: a finite loss whose gradient is not finite (an overflow in
 * the backward, which a loss check alone misses). A real model reaches it only by chance, so the
 * gradient norm the trainer computes is replaced for one update: everything else (the step, the
 * checkpoint of the last finite state, the error) is the trainer's own.
 */
import '@masksub/vit';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { OptionError } from '@masksub/core';
import { parseRunConfig } from './config.js';
import { trainRun } from './trainer.js';

/** Which call of globalGradNormValue (1-based) reports an infinite norm; 0: none. */
const overflow = vi.hoisted(() => ({ atCall: 0, calls: 0 }));
vi.mock('@masksub/core', async (importOriginal) => {
  const core = await importOriginal<typeof import('@masksub/core')>();
  return {
    ...core,
    globalGradNormValue: (grads: Parameters<typeof core.globalGradNormValue>[0]) => {
      overflow.calls++;
      const norm = core.globalGradNormValue(grads);
      return overflow.calls === overflow.atCall ? Number.POSITIVE_INFINITY : norm;
    },
  };
});

const tmp = mkdtempSync(join(tmpdir(), 'masksub-gradcheck-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const modelFile = join(tmp, 'vit.json');
writeFileSync(
  modelFile,
  JSON.stringify({ model_type: 'vit', image_size: 28, patch_size: 7, num_channels: 1, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 32, num_labels: 10 }),
);
const quiet = { log: () => undefined, stream: { write: () => true } as unknown as NodeJS.WritableStream };

function run(name: string) {
  return parseRunConfig({
    model: modelFile,
    data: { train: 'mnist:train', train_limit: 64, mean: [0.13], std: [0.31] },
    optimizer: { kind: 'sgd', lr: 0.01 },
    masksub: { variant: 'none' },
    train: { batch_size: 8, steps: 5, seed: 3 },
    run: { dir: join(tmp, name), log_every: 1, checkpoint_every: 100, quiet: true, backend: 'cpu' },
  });
}

describe('update check: finite loss, non-finite gradient norm', () => {
  it('skips that update, names the gradient norm and the finite loss, and keeps the last finite step', async () => {
    overflow.atCall = 3;
    overflow.calls = 0;
    const config = run('overflow');
    const failure = await trainRun(config, quiet).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(OptionError);
    expect((failure as OptionError).option).toBe('optimizer.lr');
    expect(String((failure as Error).message)).toMatch(/update 3 diverged: the gradient norm is Infinity \(loss \d+\.\d+\).*skipped.*step 2/s);
    expect(readFileSync(join(config.run.dir, 'checkpoints', 'latest'), 'utf8').trim()).toBe('step-2');
    expect(readdirSync(join(config.run.dir, 'checkpoints')).filter((d) => d.startsWith('step-'))).toEqual(['step-2']);
    const steps = readFileSync(join(config.run.dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type: string; step: number }).filter((r) => r.type === 'train').map((r) => r.step);
    expect(steps).toEqual([1, 2]);
  });

  it('trains through when every norm is finite (the replacement itself changes nothing)', async () => {
    overflow.atCall = 0;
    overflow.calls = 0;
    const config = run('finite');
    await trainRun(config, quiet);
    expect(overflow.calls).toBe(5);
    expect(readFileSync(join(config.run.dir, 'checkpoints', 'latest'), 'utf8').trim()).toBe('step-5');
  });
});
