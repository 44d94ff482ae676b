/**
 * CLIP from the command line on the real CIFAR-10 shards (no pretrained CLIP is available
 * offline: a tiny random CLIPModel over the real CLIP BPE vocabulary):
 * - contrastive training with template captions over classes.txt: eval lines with the retrieval
 *   and zero-shot keys, the main loss falls, the saved folder carries its tokenizer and
 *   preprocessor, and `masksub eval --zero-shot` / `masksub eval` on it alone give the logged
 *   zero-shot top-1 / the whole logged eval line;
 * - contrastive training on `.txt` captions (a shard written from real CIFAR JPEGs);
 * - FT-CLIP (`architecture: CLIPForImageClassification` on a CLIPModel folder): num_labels from
 *   classes.txt, a CLIPForImageClassification folder that re-evaluates to the logged top-1;
 * - `masksub compare` on the contrastive workload;
 * - bad input: a caption missing for an image, a class file that disagrees with num_labels.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Rng, saveModel, tf } from '@masksub/core';
import { ClipModel } from '@masksub/clip';
import { describeShared, sharedPath } from '../../../core/src/testing/shared.js';
import { masksub } from '../../../core/src/testing/parity.js';
import { readTarMembers } from '../data/tar.js';
import { buildTar, type TarInput } from '../data/tar-writer.js';

const tmp = mkdtempSync(join(tmpdir(), 'masksub-clip-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

type Line = Record<string, number | string | null>;
const lines = (run: string): Line[] => readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Line);
const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;

const TINY_CLIP = {
  model_type: 'clip',
  architectures: ['CLIPModel'],
  projection_dim: 16,
  text_config: { vocab_size: 49408, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 16, eos_token_id: 49407 },
  vision_config: { image_size: 32, patch_size: 8, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32 },
};

describeShared('data/cifar10', 'masksub train / eval / compare on CLIP (contrastive, zero-shot, FT-CLIP)', () => {
  const train = `webdataset:${sharedPath('data/cifar10/train-000000.tar.gz')}`;
  const test = `webdataset:${sharedPath('data/cifar10/test-000000.tar.gz')}`;
  const tokenizer = sharedPath('data/tokenizers/clip');
  const configFile = join(tmp, 'clip.json');
  const clipDir = join(tmp, 'clip-model');
  const captioned = join(tmp, 'captioned.tar');
  const uncaptioned = join(tmp, 'uncaptioned.tar');

  beforeAll(async () => {
    writeFileSync(configFile, JSON.stringify(TINY_CLIP));
    await tf.setBackend('cpu');
    const model = new ClipModel(TINY_CLIP, { rng: new Rng(4) });
    saveModel(model, clipDir); // a CLIPModel checkpoint folder without a head (and without a tokenizer)
    model.dispose();
    // Real CIFAR-10 JPEGs with `.txt` captions (WebDataset convention), and a copy missing one.
    const classes = readFileSync(sharedPath('data/cifar10/classes.txt'), 'utf8').trim().split('\n');
    const members: TarInput[] = [];
    let n = 0;
    let label = '';
    for await (const m of readTarMembers(sharedPath('data/cifar10/test-000000.tar.gz'))) {
      if (m.name.endsWith('.cls')) {
        label = classes[Number(m.data.toString('ascii'))];
        members.push({ name: m.name.replace(/\.cls$/, '.txt'), data: Buffer.from(`a small picture of a ${label}\n`) });
        if (++n === 40) break;
      } else members.push({ name: m.name, data: m.data });
    }
    writeFileSync(captioned, buildTar(members));
    writeFileSync(uncaptioned, buildTar(members.filter((m, i) => !(i === 21 && m.name.endsWith('.txt')))));
  });

  const common = ['--set', `data.tokenizer=${tokenizer}`, '--set', 'run.log_every=1', '--quiet', '--backend', 'wasm'];

  it('contrastive on template captions: retrieval + zero-shot keys, falling loss, a folder that zero-shot-evaluates alone', () => {
    const run = join(tmp, 'contrastive');
    const r = masksub('train', '--model', configFile, '--data', train, '--eval-data', test, '--set', 'data.train_limit=32', '--set', 'data.eval_limit=32',
      '--steps', '16', '--batch-size', '16', '--lr', '3e-3', '--set', 'optimizer.weight_decay=0', '--run-dir', run, ...common);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/masksub\s+zero-shot top-1 [\d.]+%.*i2t R@1 [\d.]+%/);
    const all = lines(run);
    const trainLines = all.filter((l) => l.type === 'train');
    expect(trainLines[0].ratio).toBe(0.5);
    const losses = trainLines.map((l) => Number(l.loss_main));
    expect(mean(losses.slice(-4))).toBeLessThan(mean(losses.slice(0, 4)));
    const evalLine = all.filter((l) => l.type === 'eval').pop()!;
    for (const k of ['i2t_r1', 'i2t_r5', 't2i_r1', 't2i_r5', 'zero_shot_top1', 'zero_shot_top5', 'loss']) {
      expect(typeof evalLine[k], k).toBe('number');
    }
    expect(evalLine.top1, 'no classification keys').toBeUndefined();
    expect(Number(evalLine.i2t_r5)).toBeGreaterThanOrEqual(Number(evalLine.i2t_r1));
    // 10 distinct eval captions (one per class): R@5 of a random ranking is near 50 %, R@1 near 10 %.
    expect(Number(evalLine.t2i_r1) % 10).toBe(0);
    for (const f of ['config.json', 'model.safetensors', 'bpe_simple_vocab_16e6.txt.gz', 'preprocessor_config.json']) expect(existsSync(join(run, 'model', f)), f).toBe(true);
    expect(JSON.parse(readFileSync(join(run, 'model', 'preprocessor_config.json'), 'utf8')).image_processor_type).toBe('CLIPImageProcessor');
    // No --tokenizer, no --mean/--std: the folder carries both; the same images give the logged number.
    const e = masksub('eval', '--zero-shot', '--model', join(run, 'model'), '--data', test, '--limit', '32', '--batch-size', '16', '--backend', 'wasm');
    expect(e.status, e.stderr).toBe(0);
    expect(e.stdout).toContain(`zero-shot top-1 ${Number(evalLine.zero_shot_top1).toFixed(2)}%  top-5 ${Number(evalLine.zero_shot_top5).toFixed(2)}%`);
    // Plain `masksub eval` on the folder: the whole eval line (retrieval, zero-shot, loss) again.
    const pct = (k: string) => Number(evalLine[k]).toFixed(2);
    const again = masksub('eval', '--model', join(run, 'model'), '--data', test, '--limit', '32', '--batch-size', '16', '--backend', 'wasm');
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).toContain(
      `zero-shot top-1 ${pct('zero_shot_top1')}%  top-5 ${pct('zero_shot_top5')}%  i2t R@1 ${pct('i2t_r1')}%  R@5 ${pct('i2t_r5')}%  t2i R@1 ${pct('t2i_r1')}%  R@5 ${pct('t2i_r5')}%  loss ${Number(evalLine.loss).toFixed(4)}  (32 images, 10 captions)`,
    );
  });

  it('contrastive on .txt captions: groups by caption text, retrieval keys only; a missing caption names shard and key', () => {
    const run = join(tmp, 'txt');
    const r = masksub('train', '--model', configFile, '--data', `webdataset:${captioned}`, '--eval-data', `webdataset:${captioned}`, '--set', 'data.eval_limit=24',
      '--steps', '6', '--batch-size', '8', '--lr', '3e-3', '--run-dir', run, ...common);
    expect(r.status, r.stderr).toBe(0);
    const evalLine = lines(run).filter((l) => l.type === 'eval').pop()!;
    expect(typeof evalLine.i2t_r1).toBe('number');
    expect(evalLine.zero_shot_top1, 'no class names: no zero-shot').toBeUndefined();
    expect(r.stdout).toMatch(/\(24 images, \d+ captions\)/);
    const bad = masksub('train', '--model', configFile, '--data', `webdataset:${uncaptioned}`, '--steps', '2', '--batch-size', '8', '--run-dir', join(tmp, 'bad-caption'), ...common);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/uncaptioned\.tar.*sample 'test_\w+' has no caption/);
    expect(bad.stderr).not.toMatch(/\n\s+at /);
  });

  it('FT-CLIP: CLIPModel folder -> CLIPForImageClassification with num_labels from classes.txt; the folder re-evaluates to the logged top-1', () => {
    const run = join(tmp, 'ft-clip');
    const r = masksub('train', '--model', clipDir, '--data', train, '--eval-data', test, '--set', 'architecture=CLIPForImageClassification', '--set', 'data.train_limit=32',
      '--set', 'data.eval_limit=32', '--steps', '8', '--batch-size', '16', '--lr', '1e-3', '--run-dir', run, '--quiet', '--backend', 'wasm', '--set', 'run.log_every=1');
    expect(r.status, r.stderr).toBe(0);
    const evalLine = lines(run).filter((l) => l.type === 'eval').pop()!;
    expect(typeof evalLine.top1).toBe('number');
    const cfg = JSON.parse(readFileSync(join(run, 'model', 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(cfg.architectures).toEqual(['CLIPForImageClassification']);
    expect(cfg.num_labels).toBe(10);
    const e = masksub('eval', '--model', join(run, 'model'), '--data', test, '--limit', '32', '--batch-size', '16', '--backend', 'wasm');
    expect(e.status, e.stderr).toBe(0);
    expect(e.stdout).toContain(`top-1 ${Number(evalLine.top1).toFixed(2)}%`);
    // A class file of 3 names against 10 labels: the file and the key are named.
    const three = join(tmp, 'three.txt');
    writeFileSync(three, 'cat\ndog\nbird\n');
    const bad = masksub('train', '--model', clipDir, '--data', train, '--set', 'architecture=CLIPForImageClassification', '--set', 'num_labels=10', '--set', `data.classes=${three}`,
      '--steps', '1', '--batch-size', '4', '--run-dir', join(tmp, 'bad-classes'), '--quiet', '--backend', 'wasm');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/three\.txt.*3 class names, but num_labels is 10/);
  });

  it('masksub compare on the contrastive workload: both runs, the zero-shot difference in points', () => {
    const run = join(tmp, 'compare');
    const r = masksub('compare', '--model', configFile, '--data', train, '--eval-data', test, '--set', 'data.train_limit=16', '--set', 'data.eval_limit=16',
      '--steps', '3', '--batch-size', '8', '--run-dir', run, ...common);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/baseline\s+zero-shot top-1/);
    expect(r.stdout).toMatch(/MaskSub - baseline zero_shot_top1: [+-][\d.]+ points/);
    expect(readFileSync(join(run, 'report.md'), 'utf8')).toMatch(/zero_shot_top1/);
  });
});
