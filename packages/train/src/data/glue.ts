/**
 * GLUE tasks in the layout of the official `glue_data` folder (`<dir>/<TASK>/<split>.tsv`).
 *
 * Parsing follows the GLUE files, not CSV: lines split on `\n`, fields on `\t`, no quote
 * handling (MRPC, RTE, STS-B and CoLA contain bare, unbalanced `"`). Columns are taken as
 * transformers' `glue` processors take them: CoLA has no header (label col 1, sentence col 3);
 * MRPC's header starts with a BOM; RTE and STS-B labels are the last column. Texts are trimmed
 * (SST-2 sentences end with a space before the tab).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FileFormatError, OptionError, requiredFolderFile } from '@masksub/core/base';

export type GlueTask = 'sst2' | 'cola' | 'rte' | 'mrpc' | 'stsb';

export interface GlueRow {
  text_a: string;
  text_b?: string;
  /** Class index, or the similarity score (0..5) for STS-B. */
  label: number;
}

interface TaskLayout {
  folder: string;
  header: boolean;
  /** Column of text_a, text_b and label (negative counts from the end). */
  a: number | string;
  b?: number | string;
  label: number | string;
  parse(label: string): number | undefined;
  /** Classes (1 for regression). */
  numLabels: number;
  /** The label names in index order, as HF's glue dataset has them (none for regression). */
  labelNames?: readonly string[];
}

const binary = (s: string): number | undefined => (s === '0' ? 0 : s === '1' ? 1 : undefined);

const LAYOUTS: Record<GlueTask, TaskLayout> = {
  sst2: { folder: 'SST-2', header: true, a: 'sentence', label: 'label', parse: binary, numLabels: 2, labelNames: ['negative', 'positive'] },
  cola: { folder: 'CoLA', header: false, a: 3, label: 1, parse: binary, numLabels: 2, labelNames: ['unacceptable', 'acceptable'] },
  mrpc: { folder: 'MRPC', header: true, a: '#1 String', b: '#2 String', label: 'Quality', parse: binary, numLabels: 2, labelNames: ['not_equivalent', 'equivalent'] },
  // HF glue: entailment = 0, not_entailment = 1.
  rte: {
    folder: 'RTE',
    header: true,
    a: 'sentence1',
    b: 'sentence2',
    label: -1,
    parse: (s) => (s === 'entailment' ? 0 : s === 'not_entailment' ? 1 : undefined),
    numLabels: 2,
    labelNames: ['entailment', 'not_entailment'],
  },
  stsb: {
    folder: 'STS-B',
    header: true,
    a: 'sentence1',
    b: 'sentence2',
    label: -1,
    parse: (s) => (/^\d+(\.\d+)?$/.test(s) ? parseFloat(s) : undefined),
    numLabels: 1,
  },
};

const ALIASES: Record<string, GlueTask> = { 'sst-2': 'sst2', sst2: 'sst2', cola: 'cola', mrpc: 'mrpc', rte: 'rte', 'sts-b': 'stsb', stsb: 'stsb' };

/** The task id for a name as GLUE or HF spell it (`SST-2`, `sst2`, `STS-B`, ...). */
export function glueTaskName(name: string): GlueTask {
  const t = ALIASES[name.toLowerCase()];
  if (!t) throw new OptionError('task', `unknown GLUE task '${name}'; known: SST-2, CoLA, MRPC, RTE, STS-B`);
  return t;
}

/** The label names of a classification task in index order (undefined for STS-B's regression). */
export function glueLabelNames(task: GlueTask): readonly string[] | undefined {
  return LAYOUTS[task].labelNames;
}

/** Number of labels of a task (1 = regression). */
export function glueNumLabels(task: GlueTask | string): number {
  return LAYOUTS[typeof task === 'string' ? glueTaskName(task) : task].numLabels;
}

/**
 * Read `<dir>/<TASK>/<split>.tsv` (split: `train`, `dev`, or for SST-2 `test_labeled`).
 * Every row must have a parseable label; a bad row throws naming file and line.
 */
export async function readGlueTask(dir: string, task: GlueTask | string, split: string): Promise<GlueRow[]> {
  const layout = LAYOUTS[glueTaskName(task)];
  if (!/^[\w-]+$/.test(split)) throw new OptionError('split', `'${split}' is not a split name`);
  // A data folder is untrusted: folderFile refuses a symlink out of it.
  const file = requiredFolderFile(join(dir, layout.folder), `${split}.tsv`);
  const text = await readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => {
    throw new FileFormatError(file, `cannot read: ${e.code ?? e.message}`);
  });
  const lines = text.replace(/^\ufeff/, '').split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  let first = 0;
  let names: string[] = [];
  if (layout.header) {
    if (lines.length === 0) throw new FileFormatError(file, 'empty file (expected a header line)');
    names = lines[0].replace(/\r$/, '').split('\t');
    first = 1;
  }
  const column = (c: number | string): number => {
    if (typeof c === 'number') return c;
    const i = names.indexOf(c);
    if (i < 0) throw new FileFormatError(file, `header has no column '${c}' (found: ${names.join(', ')})`);
    return i;
  };
  const [colA, colB, colLabel] = [column(layout.a), layout.b === undefined ? undefined : column(layout.b), column(layout.label)];
  const minFields = Math.max(colA, colB ?? 0, colLabel) + 1;
  const rows: GlueRow[] = [];
  for (let n = first; n < lines.length; n++) {
    const fields = lines[n].replace(/\r$/, '').split('\t');
    const at = (c: number): string => fields[c < 0 ? fields.length + c : c];
    if (fields.length < minFields) throw new FileFormatError(file, `line ${n + 1}: ${fields.length} fields, expected at least ${minFields}`);
    const label = layout.parse(at(colLabel).trim());
    if (label === undefined) throw new FileFormatError(file, `line ${n + 1}: bad label '${at(colLabel)}'`);
    const row: GlueRow = { text_a: at(colA).trim(), label };
    if (colB !== undefined) row.text_b = at(colB).trim();
    rows.push(row);
  }
  return rows;
}
