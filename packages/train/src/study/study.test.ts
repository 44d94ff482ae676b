/**
 * `masksub study` on a tiny grid (2 settings x 2 seeds, 4 steps, a 1-layer ViT on 64 MNIST
 * images): cells run as run folders, a rerun skips complete cells, a deleted summary reruns only
 * its cell, the aggregate equals a hand computation from the summaries, and bad study files
 * name the key.
 */
import '@masksub/vit';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MaskSubError } from '@masksub/core';
import { describeShared, sharedPath } from '../../../core/src/testing/shared.js';
import { aggregateStudy, compareStats, stat, studyTable } from './aggregate.js';
import { recipeDifferences, studyCells } from './cells.js';
import { readStudy, parseStudy } from './schema.js';
import { readRunHistory, readSummary, type CellSummary } from './summary.js';
import { runStudy } from './run.js';

const tmp = mkdtempSync(join(tmpdir(), 'masksub-study-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const provenance = { commit: 'test', dirty: false, machine: 'test machine', date: '2026-01-01T00:00:00.000Z' };

function setup(extraStudy = ''): string {
  writeFileSync(
    join(tmp, 'vit.json'),
    JSON.stringify({ model_type: 'vit', image_size: 28, patch_size: 7, num_channels: 1, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, num_labels: 10 }),
  );
  writeFileSync(
    join(tmp, 'base.yaml'),
    `model: ${join(tmp, 'vit.json')}
data: { train: "mnist:train", train_limit: 64, eval: "mnist:test", eval_limit: 32, mean: [0.13], std: [0.31] }
optimizer: { lr: 0.003, warmup_steps: 1 }
train: { batch_size: 16, steps: 4 }
run: { log_every: 1, eval_every: 2, checkpoint_every: 2, quiet: true, backend: cpu }
`,
  );
  const file = join(tmp, 'tiny.yaml');
  writeFileSync(
    file,
    `base: ${join(tmp, 'base.yaml')}
seeds: [0, 1]
results: ${join(tmp, 'results')}
runs: ${join(tmp, 'runs')}
measure: { drop: token-removal, ratio: 0.5, samples: 32, batch_size: 16 }
settings:
  - name: baseline
    set: { masksub.variant: none, masksub.main_weight: 1 }
  - name: masksub
    set: { masksub.variant: masksub, masksub.drop: token-removal }
${extraStudy}`,
  );
  return file;
}

const quiet = { log: () => undefined, train: { stream: { write: () => true } as unknown as NodeJS.WritableStream }, provenance };

const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
const sampleStd = (v: number[]) => Math.sqrt(v.reduce((a, b) => a + (b - mean(v)) ** 2, 0) / (v.length - 1));

describe('masksub study on a tiny grid', () => {
  it('runs every cell, skips complete ones on a rerun, and aggregates exactly the summaries', async () => {
    const study = readStudy(setup());
    const first = await runStudy(study, quiet);
    expect(first.trained.sort()).toEqual(['baseline/seed-0', 'baseline/seed-1', 'masksub/seed-0', 'masksub/seed-1']);
    for (const id of first.trained) {
      const [setting, seed] = id.split('/');
      expect(existsSync(join(tmp, 'runs', setting, seed, 'metrics.jsonl'))).toBe(true);
      expect(existsSync(join(tmp, 'runs', setting, seed, 'model', 'model.safetensors'))).toBe(true);
      expect(existsSync(join(tmp, 'results', 'cells', setting, `${seed}.json`))).toBe(true);
    }

    // Hand computation from the summary files alone.
    const read = (setting: string, seed: number): CellSummary => readSummary(join(tmp, 'results', 'cells', setting, `seed-${seed}.json`));
    const cells = { baseline: [read('baseline', 0), read('baseline', 1)], masksub: [read('masksub', 0), read('masksub', 1)] };
    // The baseline and MaskSub runs of one seed differ (MaskSub has a sub pass); seeds differ too.
    expect(cells.masksub[0].final.top1 !== cells.baseline[0].final.top1 || cells.masksub[0].train_loss.clean !== cells.baseline[0].train_loss.clean).toBe(true);
    expect(cells.baseline[0].recipe).not.toEqual(cells.baseline[1].recipe);
    const agg = first.aggregate;
    expect(agg.metric).toBe('top1');
    expect(agg.cells).toEqual({ complete: 4, total: 4 });
    for (const name of ['baseline', 'masksub'] as const) {
      const s = agg.settings.find((x) => x.name === name)!;
      const top1 = cells[name].map((c) => c.final.top1!);
      expect(s.final.mean).toBeCloseTo(mean(top1), 10);
      expect(s.final.std).toBeCloseTo(sampleStd(top1), 10);
      const best = cells[name].map((c) => c.best.top1.value);
      expect(s.best.mean).toBeCloseTo(mean(best), 10);
      const clean = cells[name].map((c) => c.train_loss.clean);
      const drop = cells[name].map((c) => c.train_loss.drop);
      expect(s.trainLossClean.mean).toBeCloseTo(mean(clean), 10);
      expect(s.trainLossClean.std).toBeCloseTo(sampleStd(clean), 10);
      expect(s.trainLossDrop.mean).toBeCloseTo(mean(drop), 10);
      expect(s.wallTime.mean).toBeCloseTo(mean(cells[name].map((c) => c.wall_time_s!)), 10);
      expect(s.imgPerSecond.mean).toBeCloseTo(mean(cells[name].map((c) => c.img_per_s!)), 10);
      expect(s.finalOther.top5.mean).toBeCloseTo(mean(cells[name].map((c) => c.final.top5!)), 10);
      // Dropping half the tokens changes the loss: the drop pass really used the operator.
      for (const c of cells[name]) expect(c.train_loss.drop).not.toBeCloseTo(c.train_loss.clean, 6);
      // The summary's final metrics are the run's last eval record.
      for (const c of cells[name]) {
        const h = readRunHistory(join(tmp, 'runs', name, `seed-${c.seed}`));
        expect(c.final).toEqual(h.evals.at(-1)!.metrics);
        expect(c.steps).toBe(4);
      }
    }
    const b = cells.baseline.map((c) => c.final.top1!);
    const m = cells.masksub.map((c) => c.final.top1!);
    const cmp = agg.comparisons.find((c) => c.quantity === 'final' && c.a === 'baseline' && c.b === 'masksub')!;
    expect(cmp.delta).toBeCloseTo(mean(m) - mean(b), 10);
    const se = Math.sqrt(sampleStd(b) ** 2 / 2 + sampleStd(m) ** 2 / 2);
    expect(cmp.se).toBeCloseTo(se, 10);
    expect(cmp.exceeds).toBe(Math.abs(mean(m) - mean(b)) > 2 * se);

    const results = JSON.parse(readFileSync(join(tmp, 'results', 'results.json'), 'utf8')) as { settings: { name: string; final: { mean: number } }[]; cells: unknown[] };
    expect(results.settings.find((s) => s.name === 'masksub')!.final.mean).toBeCloseTo(mean(m), 10);
    expect(results.cells).toHaveLength(4);
    const report = readFileSync(join(tmp, 'results', 'README.md'), 'utf8');
    expect(report).toContain(`| masksub | 2 | 4 |`);
    expect(report).toContain('2 settings × 2 seeds');
    expect(report).toMatch(/Rule: \|Δmean\| > 2 × SE/);
    for (const f of ['plots/metric.svg', 'plots/loss.svg', 'study.yaml', 'base-base.yaml']) expect(existsSync(join(tmp, 'results', f)), f).toBe(true);
    expect(readFileSync(join(tmp, 'results', 'plots', 'metric.svg'), 'utf8')).toContain('<svg');

    // A rerun trains nothing.
    const again = await runStudy(study, quiet);
    expect(again.trained).toEqual([]);
    expect(again.skipped).toHaveLength(4);

    // A cell whose summary is gone (e.g. killed after training) resumes its run folder, alone.
    const lost = join(tmp, 'results', 'cells', 'masksub', 'seed-1.json');
    const before = readSummary(lost);
    rmSync(lost);
    const third = await runStudy(study, quiet);
    expect(third.trained).toEqual(['masksub/seed-1']);
    expect(readSummary(lost).final).toEqual(before.final);
    expect(readSummary(lost).train_loss).toEqual(before.train_loss);

    // Changing a recipe under an existing summary is an error naming the cell, not a silent mix.
    const changed = readStudy(setup('set: { optimizer.lr: 0.001 }'));
    await expect(runStudy(changed, quiet)).rejects.toThrow(/cell baseline\/seed-0 \(optimizer\.lr changed/);
  }, 180_000);
});

const base = () => ({ base: join(tmp, 'base.yaml'), seeds: [0], results: join(tmp, 'r'), measure: { drop: 'token-removal', ratio: 0.5 }, settings: [{ name: 'a', set: {} }] });

describe('study files: errors name the key', () => {
  it.each([
    [{ ...base(), setings: [] }, /unknown key 'setings'/],
    [{ ...base(), settings: [{ name: 'a', sett: {} }] }, /unknown key 'settings\.0\.sett'/],
    [{ ...base(), seeds: 'all' }, /'seeds'/],
    [{ ...base(), measure: { drop: 'cutout', ratio: 0.5 } }, /'measure\.drop'/],
    [{ ...base(), measure: { drop: 'dropout', ratio: 1.5 } }, /'measure\.ratio'/],
    [{ ...base(), base: undefined }, /'base' is required/],
    [{ ...base(), settings: [{ name: 'a b' }] }, /'settings\.0\.name'/],
    [{ ...base(), settings: [{ name: 'a' }, { name: 'a' }] }, /'a' is used twice/],
    [{ ...base(), reference: 'zzz' }, /'reference': no setting named 'zzz'/],
    [{ ...base(), compare: [['a', 'zzz']] }, /'compare\.0': no setting named 'zzz'/],
    [{ ...base(), seeds: [1, 1] }, /lists a seed twice/],
    [{ ...base(), settings: undefined }, /give 'settings'/],
  ])('%#', (input, message) => {
    expect(() => parseStudy(input, 'bad.yaml')).toThrow(MaskSubError);
    expect(() => parseStudy(input, 'bad.yaml')).toThrow(message);
  });

  it('a bad run-config key in a setting names the key and the setting before anything runs', () => {
    setup();
    const study = parseStudy({ ...base(), settings: [{ name: 'typo', set: { 'masksub.varient': 'none' } }] }, 'bad.yaml');
    expect(() => studyCells(study)).toThrow(/setting 'typo'.*\n?.*unknown key 'masksub\.varient'/s);
  });

  it('recipe differences ignore keys only one side has (schema defaults added later)', () => {
    expect(recipeDifferences({ a: { b: 1, c: [1, 2] } }, { a: { b: 1, c: [1, 2], d: 3 } })).toEqual([]);
    expect(recipeDifferences({ a: { b: 1, c: [1, 2] } }, { a: { b: 2, c: [1, 3] } })).toEqual(['a.b', 'a.c']);
  });

  it('a grid expands into named settings and measures the drop loss at each ratio', () => {
    const s = parseStudy({ ...base(), settings: undefined, grid: { 'masksub.ratio': [0.25, 0.75] } }, 'g.yaml');
    expect(s.settings.map((x) => x.name)).toEqual(['ratio-0.25', 'ratio-0.75']);
    expect(s.settings.map((x) => x.measure.ratio)).toEqual([0.25, 0.75]);
    expect(s.settings[1].set).toEqual({ 'masksub.ratio': 0.75 });
  });
});

describe('generic metrics and statistics', () => {
  it('reads any task\'s eval metrics from metrics.jsonl (flat or nested), not only top-1', () => {
    const dir = join(tmp, 'glue-run');
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, 'metrics.jsonl'),
      [
        { type: 'train', step: 1, epoch: 0, lr: 1, loss: 1, loss_main: 0.9, loss_sub: null, ratio: null, img_per_s: 10, time: 1 },
        { type: 'eval', step: 1, epoch: 0, accuracy: 0.5, f1: 0.4, loss: 0.7 },
        { type: 'train', step: 2, epoch: 0, lr: 1, loss: 1, loss_main: 0.8, loss_sub: null, ratio: null, img_per_s: 30, time: 2 },
        { type: 'eval', step: 2, epoch: 0, metrics: { matthews: 0.2 }, loss: null },
      ].map((r) => JSON.stringify(r)).join('\n') + '\n{"type":"tra',
    );
    const h = readRunHistory(dir);
    expect(h.evals.map((e) => e.metrics)).toEqual([{ accuracy: 0.5, f1: 0.4, loss: 0.7 }, { matthews: 0.2, loss: null }]);
    expect(h.steps).toBe(2);
    expect(h.wallTime).toBe(2);
    expect(h.imgPerSecond).toBe(20);
  });

  it('mean, sample std and the 2 x SE rule', () => {
    const a = stat([1, 2, 3]);
    expect(a).toMatchObject({ n: 3, mean: 2, std: 1 });
    const b = stat([4, 5, 6, null]);
    const c = compareStats(a, b);
    expect(c.delta).toBe(3);
    expect(c.se).toBeCloseTo(Math.sqrt(1 / 3 + 1 / 3), 12);
    expect(c.exceeds).toBe(true);
    expect(compareStats(stat([1, 2, 3]), stat([1.5, 2.5, 3.5])).exceeds).toBe(false);
    expect(compareStats(stat([1]), stat([5])).exceeds).toBeNull();
  });

  it('reference_scope: group compares each row with its own group\'s first setting, and fractions keep 4 decimals', () => {
    const study = parseStudy(
      {
        ...base(),
        seeds: [0, 1],
        metric: 'accuracy',
        reference_scope: 'group',
        settings: [
          { name: 'sst2-base', group: 'SST-2' },
          { name: 'sst2-ms', group: 'SST-2' },
          { name: 'rte-base', group: 'RTE' },
          { name: 'rte-ms', group: 'RTE' },
        ],
      },
      's.yaml',
    );
    const cell = (setting: string, seed: number, v: number): CellSummary => ({
      version: 1, study: study.name, setting, seed, recipe: {}, steps: 2, final: { accuracy: v }, best: { accuracy: { value: v, step: 2 } },
      train_loss: { clean: 1, drop: 2, drop_kind: 'token-masking', ratio: 0.15, samples: 4, seed: 0 }, wall_time_s: 1, img_per_s: 1,
      curves: { eval: [{ step: 2, metrics: { accuracy: v } }], train: [] }, provenance,
    });
    const agg = aggregateStudy(study, [cell('sst2-base', 0, 0.741), cell('sst2-base', 1, 0.743), cell('sst2-ms', 0, 0.749), cell('sst2-ms', 1, 0.751), cell('rte-base', 0, 0.52), cell('rte-base', 1, 0.53), cell('rte-ms', 0, 0.53), cell('rte-ms', 1, 0.54)]);
    const pairs = [...new Set(agg.comparisons.map((c) => `${c.a}>${c.b}`))];
    expect(pairs).toEqual(['sst2-base>sst2-ms', 'rte-base>rte-ms']);
    expect(studyTable(agg)).toContain('0.7420 ± 0.0014');
    expect(parseStudy({ ...base(), settings: [{ name: 'a' }, { name: 'b' }] }, 's.yaml').referenceScope).toBe('all');
  });

  it('aggregates with a primary metric the study names (GLUE-style) and loss-like metrics downwards', () => {
    const study = parseStudy({ ...base(), seeds: [0, 1], metric: 'eval_mse', settings: [{ name: 'a' }] }, 's.yaml');
    const cell = (seed: number, v: number): CellSummary => ({
      version: 1, study: study.name, setting: 'a', seed, recipe: {}, steps: 2, final: { eval_mse: v }, best: { eval_mse: { value: v - 1, step: 1 } },
      train_loss: { clean: 1, drop: 2, drop_kind: 'dropout', ratio: 0.1, samples: 4, seed: 0 }, wall_time_s: 1, img_per_s: 1,
      curves: { eval: [{ step: 1, metrics: { eval_mse: v + 1 } }, { step: 2, metrics: { eval_mse: v } }], train: [] }, provenance,
    });
    const agg = aggregateStudy(study, [cell(0, 3), cell(1, 5)]);
    expect(agg.metric).toBe('eval_mse');
    expect(agg.higherIsBetter).toBe(false);
    expect(agg.settings[0].final).toMatchObject({ mean: 4, std: Math.SQRT2 });
    // Improvement of a lower-is-better metric counts as positive gain.
    expect(agg.convergence?.lastQuarterGain.mean).toBe(1);
  });
});

describeShared('data/glue/SST-2', 'masksub study on a GLUE task', () => {
  it('runs text cells and measures the train loss on clean and [MASK]ed rows with the saved tokenizer', async () => {
    await import('@masksub/bert');
    const dir = join(tmp, 'glue');
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, 'bert.json'),
      JSON.stringify({ model_type: 'bert', vocab_size: 30522, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 64, num_labels: 2 }),
    );
    writeFileSync(
      join(dir, 'base.yaml'),
      `model: ${join(dir, 'bert.json')}
data: { train: "glue:${sharedPath('data/glue/SST-2')}:train", eval: "glue:${sharedPath('data/glue/SST-2')}:dev", tokenizer: ${sharedPath('data/tokenizers/bert-base-uncased')}, train_limit: 32, eval_limit: 16, max_length: 32 }
optimizer: { lr: 0.001, warmup_steps: 1 }
train: { batch_size: 8, steps: 2 }
run: { log_every: 1, eval_every: 2, checkpoint_every: 2, quiet: true, backend: cpu }
`,
    );
    writeFileSync(
      join(dir, 'study.yaml'),
      `base: ${join(dir, 'base.yaml')}
seeds: [0]
results: ${join(dir, 'results')}
runs: ${join(dir, 'runs')}
metric: accuracy
measure: { drop: token-masking, ratio: 0.5, samples: 16, batch_size: 8 }
settings:
  - name: baseline
    set: { masksub.variant: none }
  - name: masksub
    set: { masksub.variant: masksub }
`,
    );
    const r = await runStudy(readStudy(join(dir, 'study.yaml')), quiet);
    expect(r.trained.sort()).toEqual(['baseline/seed-0', 'masksub/seed-0']);
    const summary = readSummary(join(dir, 'results', 'cells', 'masksub', 'seed-0.json'));
    expect(summary.final.accuracy).toBeGreaterThanOrEqual(0);
    expect(summary.train_loss).toMatchObject({ drop_kind: 'token-masking', samples: 16 });
    expect(Number.isFinite(summary.train_loss.clean) && Number.isFinite(summary.train_loss.drop)).toBe(true);
    // Half the real tokens replaced by [MASK] changes what the model sees, so the loss moves.
    expect(summary.train_loss.drop).not.toBe(summary.train_loss.clean);
  });
});
