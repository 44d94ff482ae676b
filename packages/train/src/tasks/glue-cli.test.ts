/**
 * BERT on GLUE from the command line, on the real task files: a small BERT (from config.json,
 * over the shared bert-base-uncased vocabulary: no pretrained BERT is available offline) trained
 * with MaskSub token masking on SST-2 and STS-B; the eval lines carry the GLUE keys, the training
 * loss goes down, the saved folder carries its tokenizer and re-evaluates to the logged metrics.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { describeShared, sharedPath } from '../../../core/src/testing/shared.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const cli = join(repo, 'packages/train/src/cli/main.ts');
const tmp = mkdtempSync(join(tmpdir(), 'masksub-glue-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function masksub(...args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', '--conditions=source', cli, ...args], { cwd: repo, encoding: 'utf8', timeout: 300_000 });
}

type Line = Record<string, number | string | null>;
const lines = (run: string): Line[] => readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Line);
const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;

function smallBert(numLabels: number): string {
  const file = join(tmp, `bert-${numLabels}.json`);
  writeFileSync(file, JSON.stringify({
    model_type: 'bert', architectures: ['BertForSequenceClassification'], vocab_size: 30522, hidden_size: 32, num_hidden_layers: 2,
    num_attention_heads: 4, intermediate_size: 64, max_position_embeddings: 128, type_vocab_size: 2, hidden_act: 'gelu',
    hidden_dropout_prob: 0, attention_probs_dropout_prob: 0, num_labels: numLabels,
  }));
  return file;
}

describeShared('data/glue', 'masksub train / eval on GLUE (BERT, token masking)', () => {
  const glue = sharedPath('data/glue');
  const tokenizer = sharedPath('data/tokenizers/bert-base-uncased');

  function train(task: string, numLabels: number, run: string, ...extra: string[]) {
    return masksub('train', '--model', smallBert(numLabels), '--data', `glue:${join(glue, task)}:train`, '--eval-data', `glue:${join(glue, task)}:dev`,
      '--set', `data.tokenizer=${tokenizer}`, '--set', 'data.train_limit=32', '--set', 'data.eval_limit=48', '--set', 'data.max_length=64',
      '--steps', '24', '--batch-size', '8', '--lr', '2e-3', '--set', 'run.log_every=1', '--run-dir', run, '--quiet', '--backend', 'wasm', ...extra);
  }

  it('SST-2: accuracy eval lines, falling loss, 15 % masks by default, a folder that re-evaluates', () => {
    const run = join(tmp, 'sst2');
    const r = train('SST-2', 2, run);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/masksub\s+accuracy 0\.\d{4}/);
    const all = lines(run);
    const trainLines = all.filter((l) => l.type === 'train');
    expect(trainLines[0].ratio).toBe(0.15); // token masking's paper ratio, not the image 0.5
    const losses = trainLines.map((l) => Number(l.loss_main));
    expect(mean(losses.slice(-6))).toBeLessThan(mean(losses.slice(0, 6)));
    const evalLine = all.filter((l) => l.type === 'eval').pop()!;
    expect(evalLine.top1, 'GLUE keys, not image accuracies').toBeUndefined();
    expect(typeof evalLine.accuracy).toBe('number');
    expect(Number(evalLine.accuracy)).toBeGreaterThanOrEqual(0);
    expect(Number(evalLine.accuracy)).toBeLessThanOrEqual(1);
    for (const f of ['vocab.txt', 'tokenizer_config.json', 'config.json', 'model.safetensors']) expect(existsSync(join(run, 'model', f)), f).toBe(true);
    expect(JSON.parse(readFileSync(join(run, 'model', 'config.json'), 'utf8'))).toMatchObject({ id2label: { '0': 'negative', '1': 'positive' }, label2id: { negative: 0, positive: 1 } });
    // The saved folder tokenizes by itself (no --tokenizer) and gives the logged metric.
    const e = masksub('eval', '--model', join(run, 'model'), '--data', `glue:${join(glue, 'SST-2')}:dev`, '--limit', '48', '--max-length', '64', '--backend', 'wasm');
    expect(e.status, e.stderr).toBe(0);
    expect(Number(/accuracy ([\d.]+)/.exec(e.stdout)?.[1])).toBeCloseTo(Number(evalLine.accuracy), 4);
    expect(Number(/loss ([\d.]+)/.exec(e.stdout)?.[1])).toBeCloseTo(Number(evalLine.loss), 3);
  });

  it('STS-B: regression with pearson / spearmanr, MSE main loss', () => {
    const run = join(tmp, 'stsb');
    const r = train('STS-B', 1, run);
    expect(r.status, r.stderr).toBe(0);
    const evalLine = lines(run).filter((l) => l.type === 'eval').pop()!;
    expect(typeof evalLine.pearson).toBe('number');
    expect(typeof evalLine.spearmanr).toBe('number');
    const losses = lines(run).filter((l) => l.type === 'train').map((l) => Number(l.loss_main));
    expect(mean(losses.slice(-6))).toBeLessThan(mean(losses.slice(0, 6)));
  });

  it('bad input: a folder that is not a GLUE task, a missing tokenizer, a head of the wrong size', () => {
    const notGlue = train('MNLI', 2, join(tmp, 'bad1'));
    expect(notGlue.status).toBe(2);
    expect(notGlue.stderr).toMatch(/not one of the five GLUE task folders/);
    expect(notGlue.stderr).not.toMatch(/\n\s+at /);
    const noTok = train('SST-2', 2, join(tmp, 'bad2'), '--set', `data.tokenizer=${tmp}`);
    expect(noTok.status).toBe(2);
    expect(noTok.stderr).toMatch(/has no tokenizer: expected tokenizer\.json or vocab\.txt/);
    const head = train('STS-B', 2, join(tmp, 'bad3'));
    expect(head.status).toBe(2);
    expect(head.stderr).toMatch(/num_labels/);
  });
});
