/** `masksub recipes` and `masksub train --recipe` as a user runs them. */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { describeShared, fixturePath, sharedPath } from '../../../core/src/testing/shared.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const cli = join(repo, 'packages/train/src/cli/main.ts');
const tmp = mkdtempSync(join(tmpdir(), 'masksub-recipes-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function masksub(...args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', '--conditions=source', cli, ...args], { cwd: repo, encoding: 'utf8', timeout: 120_000 });
}

describe('masksub recipes', () => {
  it('lists every recipe with its description and source', () => {
    const r = masksub('recipes');
    expect(r.status, r.stderr).toBe(0);
    for (const name of ['deit3-400', 'deit3-800', 'rsb-a2', 'swin', 'mae-finetune', 'beitv2-finetune', 'ft-clip', 'glue']) {
      expect(r.stdout).toMatch(new RegExp(`^${name} +\\S.*\\n +source: .*Table B\\.1`, 'm'));
    }
    // train and compare both take the flag (study takes `recipe` as a config key).
    for (const command of ['train', 'compare']) expect(masksub(command, '--help').stdout, command).toMatch(/--recipe <name>/);
  });

  it('prints one recipe resolved as a run config, and refuses an unknown name with exit 2', () => {
    const r = masksub('recipes', 'swin');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^# swin: Swin Transformer/);
    const resolved = YAML.parse(r.stdout) as { recipe: string; optimizer: Record<string, unknown>; run: Record<string, unknown> };
    expect(resolved.recipe).toBe('swin');
    expect(resolved.optimizer).toMatchObject({ kind: 'adamw', clip_grad: 5, warmup_epochs: 20 });
    expect(resolved.run).toMatchObject({ log_every: 10 }); // schema defaults are filled in
    const bad = masksub('recipes', 'swim');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/error: option 'recipe': unknown recipe 'swim' \(known: .*swin\)/);
    expect(bad.stderr).not.toMatch(/at .*\.ts:\d+/); // no stack trace
  });
});

describeShared('fixtures/hf-tiny', 'masksub train --recipe (hf-tiny ViT on CIFAR-10 test images, hf-tiny BERT on SST-2)', () => {
  it("the preset's values reach the resolved config and the optimizer; flags override it", () => {
    const runDir = join(tmp, 'deit3');
    const r = masksub('train', '--recipe', 'deit3-400', '--model', fixturePath('vit'), '--data', `webdataset:${sharedPath('data/cifar10/test-000000.tar.gz')}`,
      '--steps', '2', '--batch-size', '8', '--set', 'data.train_limit=32', '--set', 'augment.repeated_aug_round=0', '--set', 'run.log_every=1',
      '--run-dir', runDir, '--quiet', '--backend', 'cpu');
    expect(r.status, r.stderr).toBe(0);
    const resolved = YAML.parse(readFileSync(join(runDir, 'config.resolved.yaml'), 'utf8')) as Record<string, Record<string, unknown>>;
    expect(resolved.recipe).toBe('deit3-400');
    expect(resolved.optimizer).toMatchObject({ kind: 'lamb', lr: 3e-3, weight_decay: 0.03, warmup_epochs: 5, warmup_lr: 1e-6, min_lr: 1e-5 });
    expect(resolved.train).toMatchObject({ loss: 'bce', bce_target_thresh: 0, bce_target_thresh_on: 'main', batch_size: 8, steps: 2 }); // --batch-size and --steps over the recipe
    expect(resolved.train.epochs).toBeUndefined(); // --steps replaced the recipe's 400 epochs
    expect(resolved.augment).toMatchObject({ three_augment: true, color_jitter: 0.3, mixup: 0.8, cutmix: 1, repeated_aug: 3, repeated_aug_round: 0 });
    expect(resolved.masksub).toMatchObject({ variant: 'masksub', ratio: 0.5 });
    expect(resolved.train.ema_decay).toBe(0.99996);
    expect(resolved.model_config).toEqual({ drop_path_rate: 0.1, drop_path_rule: 'uniform' });
    // The model was built with the recipe's drop-path (the saved config.json shows it), and the EMA copy was kept.
    const saved = JSON.parse(readFileSync(join(runDir, 'model', 'config.json'), 'utf8')) as Record<string, Record<string, unknown>>;
    expect(saved).toMatchObject({ drop_path_rate: 0.1, drop_path_rule: 'uniform' });
    // The head's classes are named from classes.txt beside the shards (the fixture had LABEL_0..9).
    expect(saved.id2label).toMatchObject({ '0': 'airplane', '3': 'cat', '9': 'truck' });
    expect(saved.label2id).toMatchObject({ airplane: 0, truck: 9 });
    expect(JSON.parse(readFileSync(join(runDir, 'model-ema', 'config.json'), 'utf8')).id2label['1']).toBe('automobile');
    expect(existsSync(join(runDir, 'model-ema', 'model.safetensors'))).toBe(true);
    // 5 warm-up epochs of 4 steps do not fit a 2-step run: cut to 1, so step 1 runs at DeiT's warmup_lr and step 2 at the recipe's peak.
    expect(r.stderr).toMatch(/warm-up of 20 steps \(5 epochs x 4 steps\) is not shorter than the run's 2 steps: warming up over 1/);
    const train = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).filter((m) => m.type === 'train');
    expect(train.map((m) => m.lr)).toEqual([1e-6, 3e-3]);
    // The optimizer the trainer built is the recipe's LAMB (its kind is in the checkpoint).
    const ckpts = join(runDir, 'checkpoints');
    const step = readdirSync(ckpts).find((d) => d.startsWith('step-'))!;
    const state = JSON.parse(readFileSync(join(ckpts, step, 'state.json'), 'utf8')) as { optimizer: { kind: string } };
    expect(state.optimizer.kind).toBe('lamb');
  });

  it("MAE's lr rule: the recipe's blr scaled by the run's own batch (blr * 8 / 256) is the rate the optimizer steps with", () => {
    const runDir = join(tmp, 'mae');
    const r = masksub('train', '--recipe', 'mae-finetune', '--model', fixturePath('vit'), '--data', `webdataset:${sharedPath('data/cifar10/test-000000.tar.gz')}`,
      '--steps', '2', '--batch-size', '8', '--set', 'data.train_limit=16', '--set', 'run.log_every=1', '--run-dir', runDir, '--quiet', '--backend', 'cpu');
    expect(r.status, r.stderr).toBe(0);
    const resolved = YAML.parse(readFileSync(join(runDir, 'config.resolved.yaml'), 'utf8')) as Record<string, Record<string, unknown>>;
    expect(resolved.optimizer).toMatchObject({ blr: 5e-4, layer_decay: 0.65, weight_decay: 0.05 });
    expect(resolved.augment).toMatchObject({ rand_augment: 'rand-m9-mstd0.5-inc1', random_erasing: 0.25, mixup: 0.8, label_smoothing: 0.1 });
    const train = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).filter((m) => m.type === 'train');
    expect(train.map((m) => m.lr)).toEqual([0, (5e-4 * 8) / 256]);
  });

  it('GLUE: run_glue\'s linear decay, clipping 1.0 and 15 % token masking reach the run (hf-tiny BERT on SST-2)', () => {
    const runDir = join(tmp, 'glue');
    const r = masksub('train', '--recipe', 'glue', '--model', fixturePath('bert'), '--data', `glue:${sharedPath('data/glue/SST-2')}:train`,
      '--steps', '3', '--batch-size', '8', '--set', 'data.train_limit=24', '--set', 'data.max_length=32', '--set', 'run.log_every=1', '--run-dir', runDir, '--quiet', '--backend', 'cpu');
    expect(r.status, r.stderr).toBe(0);
    const resolved = YAML.parse(readFileSync(join(runDir, 'config.resolved.yaml'), 'utf8')) as Record<string, Record<string, unknown>>;
    expect(resolved.optimizer).toMatchObject({ lr: 2e-5, schedule: 'linear', weight_decay: 0, clip_grad: 1 });
    expect(resolved.data).toMatchObject({ max_length: 32 }); // --set over the recipe's 128
    const train = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).filter((m) => m.type === 'train');
    // Linear to 0 over 3 updates (a cosine would give 2e-5, 1.5e-5, 0.5e-5).
    const expected = [2e-5, (2e-5 * 2) / 3, 2e-5 / 3];
    expect(train).toHaveLength(3);
    train.forEach((m, i) => expect(m.lr as number).toBeCloseTo(expected[i], 15));
    expect(train.map((m) => m.ratio)).toEqual([0.15, 0.15, 0.15]);
  });
});
