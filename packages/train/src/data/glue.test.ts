import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { describeShared, sharedPath } from '../../../core/src/testing/shared.js';
import { glueNumLabels, readGlueTask, type GlueRow } from './glue.js';

function counts(rows: GlueRow[]): number[] {
  const c: number[] = [];
  for (const r of rows) c[r.label] = (c[r.label] ?? 0) + 1;
  return c;
}

describeShared('data/glue', 'GLUE TSV (real data, README table)', () => {
  const glue = sharedPath('data/glue');

  it.each([
    ['SST-2', 'train', 67_349, [29_780, 37_569]],
    ['SST-2', 'dev', 872, [428, 444]],
    ['SST-2', 'test_labeled', 1_821, [912, 909]],
    ['CoLA', 'train', 8_551, [2_528, 6_023]],
    ['CoLA', 'dev', 1_043, [322, 721]],
    ['RTE', 'train', 2_490, [1_249, 1_241]],
    ['RTE', 'dev', 277, [146, 131]],
    ['MRPC', 'train', 3_668, [1_194, 2_474]],
    ['MRPC', 'dev', 408, [129, 279]],
  ] as const)('%s %s: %i rows with the published label counts', async (task, split, rows, perLabel) => {
    const data = await readGlueTask(glue, task, split);
    expect(data).toHaveLength(rows);
    expect(counts(data)).toEqual(perLabel);
  });

  it('STS-B: scores in [0, 5] and two sentences per row', async () => {
    const train = await readGlueTask(glue, 'STS-B', 'train');
    const dev = await readGlueTask(glue, 'stsb', 'dev');
    expect([train.length, dev.length]).toEqual([5_749, 1_500]);
    expect(dev[0]).toEqual({ text_a: 'A man with a hard hat is dancing.', text_b: 'A man wearing a hard hat is dancing.', label: 5 });
    expect(train.every((r) => r.label >= 0 && r.label <= 5 && r.text_b !== undefined)).toBe(true);
    expect(glueNumLabels('STS-B')).toBe(1);
  });

  it('keeps bare quotes, strips the SST-2 trailing space and the MRPC BOM', async () => {
    const sst = await readGlueTask(glue, 'sst2', 'train');
    expect(sst[0]).toEqual({ text_a: 'hide new secretions from the parental units', label: 0 });
    const mrpc = await readGlueTask(glue, 'MRPC', 'dev');
    expect(mrpc[0].text_b?.startsWith('" The foodservice pie')).toBe(true);
    const rte = await readGlueTask(glue, 'RTE', 'dev');
    expect(rte[0]).toMatchObject({ text_b: 'Christopher Reeve had an accident.', label: 1 });
  });
});

describe('GLUE errors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'masksub-glue-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('names file and line of a bad label, and unknown tasks', async () => {
    mkdirSync(join(dir, 'SST-2'));
    writeFileSync(join(dir, 'SST-2', 'dev.tsv'), 'sentence\tlabel\ngood \t1\nbad \tx\n');
    await expect(readGlueTask(dir, 'SST-2', 'dev')).rejects.toThrow(/SST-2\/dev\.tsv: line 3: bad label 'x'/);
    await expect(readGlueTask(dir, 'QQP', 'dev')).rejects.toThrow(/option 'task'/);
    await expect(readGlueTask(dir, 'CoLA', 'dev')).rejects.toThrow(/CoLA\/dev\.tsv: cannot read/);
  });
  it('refuses a split file that is a symlink out of the task folder', async () => {
    writeFileSync(join(dir, 'elsewhere.tsv'), 'sentence\tlabel\nsecret \t1\n');
    symlinkSync(join(dir, 'elsewhere.tsv'), join(dir, 'SST-2', 'train.tsv'));
    await expect(readGlueTask(dir, 'SST-2', 'train')).rejects.toThrow(/SST-2\/train\.tsv: leads outside the folder/);
  });
});
