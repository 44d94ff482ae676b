import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileFormatError, OptionError } from '@masksub/core';
import { formatRecord, type MetricsRecord } from './metrics.js';
import { summarizeRun, writeReport } from './report.js';
import { syntheticMetrics } from './synthetic.js';

const train = (step: number, loss_main: number, loss_sub: number | null, img_per_s: number, time: number): MetricsRecord => ({
  type: 'train', step, epoch: step / 4, lr: 1e-3, loss: loss_main + (loss_sub ?? 0), loss_main, loss_sub, ratio: loss_sub === null ? null : 0.5, img_per_s, data_wait: null, time,
});
const evaluation = (step: number, top1: number, top5: number, loss: number): MetricsRecord => ({ type: 'eval', step, epoch: step / 4, top1, top5, loss });

/** Small enough to know every number the report must show. */
const RECORDS: MetricsRecord[] = [
  train(1, 2.0, 2.5, 10, 5),
  train(2, 1.5, 2.0, 30, 7),
  evaluation(2, 41.25, 80.5, 1.75),
  train(3, 1.25, 1.5, 32, 9),
  train(4, 1.0, 1.25, 40, 3725),
  evaluation(4, 39.5, 82.125, 1.5),
];

function writeRun(dir: string, records: MetricsRecord[]): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'metrics.jsonl'), records.map(formatRecord).join(''));
  return dir;
}

describe('summarizeRun', () => {
  it('takes final/best accuracy, windowed losses, wall time and median img/s', () => {
    const s = summarizeRun('r', RECORDS, 2);
    expect(s).toMatchObject({
      steps: 4, epochs: 1, masksub: true, ratio: 0.5, evaluations: 2,
      finalTop1: 39.5, finalTop5: 82.125, finalEvalLoss: 1.5, bestTop1: 41.25, bestTop1Step: 2,
      lossWindow: 2, wallTimeSeconds: 3725, imgPerSecond: 31,
    });
    expect(s.lossMain).toBeCloseTo(1.125);
    expect(s.lossSub).toBeCloseTo(1.375);
    expect(() => summarizeRun('r', RECORDS, 0)).toThrow(OptionError);
  });

  it('a baseline without evaluations has nulls, not zeros', () => {
    const s = summarizeRun('b', [train(1, 2, null, 5, 1)]);
    expect(s.masksub).toBe(false);
    expect(s.lossSub).toBeNull();
    expect(s.bestTop1).toBeNull();
    expect(s.finalTop1).toBeNull();
  });
});

describe('writeReport', () => {
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'masksub-report-'));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('writes report.md with the run numbers and links to SVGs that exist', async () => {
    const dir = writeRun(join(root, 'single'), RECORDS);
    const result = await writeReport(dir, { png: true });
    expect(result.reportPath).toBe(join(dir, 'report.md'));
    const md = readFileSync(result.reportPath, 'utf8');
    // summary row: steps, epochs, final top-1, best (step), top-5, eval loss, losses (mean of 4), ratio, wall time, img/s
    expect(md).toContain('| single | 4 | 1.00 | 39.50 | 41.25 (2) | 82.13 | 1.5000 | 1.4375 | 1.8125 | 0.50 | 1:02:05 | 31.0 |');
    // evaluation table
    expect(md).toContain('| 2 | 0.50 | 41.25 | 80.50 | 1.7500 |');
    expect(md).toContain('| 4 | 1.00 | 39.50 | 82.13 | 1.5000 |');
    const links = [...md.matchAll(/!\[[^\]]*\]\(([^)]+)\)/g)].map((m) => m[1]);
    expect(links).toEqual(['plots/loss.svg', 'plots/accuracy.svg', 'plots/lr.svg']);
    for (const link of links) {
      const svg = readFileSync(join(dir, link), 'utf8');
      expect(svg.startsWith('<svg')).toBe(true);
    }
    const png = await sharp(join(dir, 'plots/loss.png')).metadata();
    expect(png.format).toBe('png');
    expect(result.files).toContain(join(dir, 'plots/lr.png'));
  });

  it('compares runs with a Δ against the first and one comparison plot', async () => {
    const base = writeRun(join(root, 'cmp/baseline'), syntheticMetrics({ steps: 40, evalEvery: 20, masksub: false, finalTop1: 70, seed: 1 }));
    const ms = writeRun(join(root, 'cmp/masksub'), syntheticMetrics({ steps: 40, evalEvery: 20, masksub: true, finalTop1: 75, seed: 2 }));
    const result = await writeReport([base, ms]);
    expect(result.reportPath).toBe(join(root, 'cmp/report.md'));
    const md = readFileSync(result.reportPath, 'utf8');
    const [b, m] = result.summaries;
    expect(md).toContain('# Comparison: baseline vs masksub');
    expect(md).toContain('Δ best top-1');
    expect(md).toContain(`| baseline | 40 | 0.80 | ${b.finalTop1!.toFixed(2)} |`);
    expect(md).toContain(`| +${(m.bestTop1! - b.bestTop1!).toFixed(2)} |`);
    expect(md).toContain('– (baseline)');
    expect(md).toContain('](plots/comparison.svg)');
    expect(md).toContain('](plots/masksub-loss.svg)');
    expect(existsSync(join(root, 'cmp/plots/comparison.svg'))).toBe(true);
    expect(existsSync(join(root, 'cmp/plots/baseline-lr.svg'))).toBe(true);
  });

  it('tells runs with the same folder name apart by their path', async () => {
    const a = writeRun(join(root, 'dup/seed1/vit'), RECORDS);
    const b = writeRun(join(root, 'dup/seed2/vit'), RECORDS);
    const out = join(root, 'dup-out');
    const result = await writeReport([a, b], { outDir: out, title: 'Seeds' });
    expect(result.summaries.map((s) => s.name)).toEqual(['seed1/vit', 'seed2/vit']);
    const md = readFileSync(join(out, 'report.md'), 'utf8');
    expect(md.startsWith('# Seeds\n')).toBe(true);
    expect(md).toContain('](plots/seed1_vit-loss.svg)');
    expect(existsSync(join(out, 'plots/seed2_vit-accuracy.svg'))).toBe(true);
  });

  it('names the metrics file that is missing or empty', async () => {
    await expect(writeReport(join(root, 'nothing'))).rejects.toThrow(/nothing\/metrics\.jsonl: no such metrics file/);
    const empty = writeRun(join(root, 'empty'), []);
    await expect(writeReport(empty)).rejects.toThrow(FileFormatError);
    await expect(writeReport([])).rejects.toThrow(OptionError);
  });
});
