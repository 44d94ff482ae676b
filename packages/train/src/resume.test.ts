/**
 * A run killed with SIGKILL mid-epoch and resumed from its last checkpoint reaches the same
 * weights, bit for bit (cpu backend), as a run that was never interrupted.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const cli = join(repo, 'packages/train/src/cli/main.ts');
const nodeArgs = ['--import', 'tsx', '--conditions=source', cli];

const tmp = mkdtempSync(join(tmpdir(), 'masksub-resume-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function writeSetup(): string {
  const modelConfig = {
    model_type: 'vit', image_size: 28, patch_size: 7, num_channels: 1, hidden_size: 16, num_hidden_layers: 2,
    num_attention_heads: 2, intermediate_size: 32, hidden_act: 'gelu', layer_norm_eps: 1e-6, num_labels: 10,
  };
  writeFileSync(join(tmp, 'config.json'), JSON.stringify(modelConfig));
  const run = `model: ${join(tmp, 'config.json')}
data: { train: "mnist:train", train_limit: 160, mean: [0.13], std: [0.31] }
augment: { pad_crop: 2, mixup: 0.2, cutmix: 1.0, label_smoothing: 0.1 }
optimizer: { kind: adamw, lr: 0.003, warmup_steps: 3, clip_grad: 1.0 }
train: { batch_size: 16, steps: 30, seed: 7 }
masksub: { variant: masksub, ratio: 0.5 }
run: { log_every: 2, checkpoint_every: 4, keep_checkpoints: 2, quiet: true, backend: cpu }
`;
  writeFileSync(join(tmp, 'run.yaml'), run);
  return join(tmp, 'run.yaml');
}

function train(args: string[]): void {
  const r = spawnSync(process.execPath, [...nodeArgs, 'train', ...args], { cwd: repo, encoding: 'utf8', timeout: 240_000 });
  if (r.status !== 0) throw new Error(`masksub train ${args.join(' ')} failed (${r.status}):\n${r.stderr}\n${r.stdout}`);
}

describe('exact resume after SIGKILL', () => {
  it('reaches the uninterrupted run\'s final weights bit for bit', async () => {
    const config = writeSetup();
    const straight = join(tmp, 'straight');
    train(['--config', config, '--run-dir', straight]);

    const killed = join(tmp, 'killed');
    const child = spawn(process.execPath, [...nodeArgs, 'train', '--config', config, '--run-dir', killed], { cwd: repo, stdio: 'ignore' });
    // Kill it as soon as its second checkpoint (step 8, mid-epoch: 10 batches an epoch) is complete.
    const latest = join(killed, 'checkpoints', 'latest');
    await new Promise<void>((done, fail) => {
      const started = Date.now();
      const poll = setInterval(() => {
        if (existsSync(latest) && readFileSync(latest, 'utf8').includes('step-8')) {
          clearInterval(poll);
          child.kill('SIGKILL');
          done();
        } else if (Date.now() - started > 200_000 || child.exitCode !== null) {
          clearInterval(poll);
          fail(new Error(`the run ended (${child.exitCode}) before it could be killed`));
        }
      }, 5);
    });
    await new Promise((r) => child.once('exit', r));
    expect(existsSync(join(killed, 'model')), 'the killed run must not have finished').toBe(false);

    train(['--resume', killed]);
    const a = readFileSync(join(straight, 'model', 'model.safetensors'));
    const b = readFileSync(join(killed, 'model', 'model.safetensors'));
    expect(b.equals(a)).toBe(true);
    // The metrics log of the resumed run has each step once, in order.
    const steps = readFileSync(join(killed, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.type === 'train').map((r) => r.step);
    expect(steps).toEqual(Array.from({ length: 15 }, (_, i) => 2 * (i + 1)));
    const straightLog = readFileSync(join(straight, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const resumedLog = readFileSync(join(killed, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(resumedLog.map((r) => r.loss)).toEqual(straightLog.map((r) => r.loss));
    expect(readdirSync(join(killed, 'checkpoints')).filter((d) => d.startsWith('step-')).length).toBeLessThanOrEqual(2);
  });
});
