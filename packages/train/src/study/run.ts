/**
 * `masksub study`: run every cell of a study that has no summary yet (resuming a cell whose run
 * folder has a checkpoint), measure it, write its summary, then aggregate all summaries into
 * README.md (table, findings), plots/ and results.json under the study's results folder.
 *
 * Several processes (or machines sharing the folder) may work on one study at once: a cell is
 * claimed with an exclusive lock file beside its run folder; a lock whose process is gone on
 * this host is taken over.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { cpus, hostname, totalmem, type as osType, release } from 'node:os';
import { basename, dirname, join, relative } from 'node:path';
import { MaskSubError, OptionError } from '@masksub/core';
import { latestCheckpoint } from '../checkpoint/checkpoint.js';
import { renderSvg } from '../report/plots.js';
import { readRunConfig, trainRun, type TrainRunOptions } from '../trainer.js';
import { aggregateStudy, comparisonTable, findings, RULE, studyTable, type StudyAggregate } from './aggregate.js';
import { CELLS_DIR, recipeDifferences, recipeOf, studyCells, type Cell } from './cells.js';
import { checkMeasureSpec, measureTrainLoss, type TrainLossMeasurement } from './measure.js';
import { lossBandSpec, metricBandSpec } from './plots.js';
import type { Study } from './schema.js';
import { buildSummary, readRunHistory, readSummary, writeSummary, type CellSummary, type Provenance } from './summary.js';

export const STUDY_REPORT = 'README.md';
export const STUDY_RESULTS = 'results.json';

export interface StudyRunOptions {
  /** Only these settings (others are left as they are and still aggregated). */
  only?: string[];
  /** Stop after this many cells were trained in this process (time-boxed sessions). */
  maxCells?: number;
  /** Aggregate the existing summaries without training. */
  aggregateOnly?: boolean;
  /** The command line, recorded in the report. */
  command?: string;
  log?: (message: string) => void;
  /** Passed to the trainer (progress stream, its log). */
  train?: TrainRunOptions;
  /** Provenance override (tests). */
  provenance?: Provenance;
}

export interface StudyRunResult {
  trained: string[];
  skipped: string[];
  /** Claimed by another live process. */
  busy: string[];
  aggregate: StudyAggregate;
  files: string[];
}

function git(args: string[], cwd?: string): string | null {
  try {
    return execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], cwd }).trim();
  } catch {
    return null;
  }
}

export function machineDescription(): string {
  const c = cpus();
  return `${c.length} x ${c[0]?.model.trim() ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, ${osType()} ${release()}, node ${process.version}, host ${hostname()}`;
}

/**
 * The commit a cell ran on and whether the checkout had uncommitted changes. `exclude` names
 * paths whose changes do not count: the study's own results folder, which every finished cell
 * changes (its summary, the report), so that a study run on a clean commit is not reported as
 * run "with uncommitted changes" from its second cell on.
 */
export function currentProvenance(options: { exclude?: readonly string[]; cwd?: string } = {}): Provenance {
  const pathspec = (options.exclude ?? []).map((p) => `:(exclude)${p}`);
  const status = git(['status', '--porcelain', '--untracked-files=no', '--', ':/', ...pathspec], options.cwd);
  return { commit: git(['rev-parse', 'HEAD'], options.cwd) ?? 'unknown', dirty: status === null ? false : status !== '', machine: machineDescription(), date: new Date().toISOString() };
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Claim a cell; false when a live process holds it. */
function claim(lockPath: string): boolean {
  mkdirSync(dirname(lockPath), { recursive: true });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lockPath, 'wx');
      writeSync(fd, JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString() }));
      closeSync(fd);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let holder: { pid?: number; host?: string } = {};
      try {
        holder = JSON.parse(readFileSync(lockPath, 'utf8')) as typeof holder;
      } catch {
        // Torn lock (killed between create and write): treat as stale.
      }
      const stale = holder.host === undefined || (holder.host === hostname() && (holder.pid === undefined || !processAlive(holder.pid)));
      if (!stale) return false;
      rmSync(lockPath, { force: true });
    }
  }
  return false;
}

/** Read every summary of the study's results folder (also of cells no longer in the file). */
export function readSummaries(study: Study): CellSummary[] {
  const root = join(study.results, CELLS_DIR);
  if (!existsSync(root)) return [];
  const out: CellSummary[] = [];
  for (const setting of readdirSync(root, { withFileTypes: true })) {
    if (!setting.isDirectory()) continue;
    for (const f of readdirSync(join(root, setting.name))) if (f.endsWith('.json')) out.push(readSummary(join(root, setting.name, f)));
  }
  return out;
}

function checkRecipe(cell: Cell, recipe: unknown, where: string): void {
  const changed = recipeDifferences(recipe, recipeOf(cell.config));
  if (changed.length > 0) {
    throw new OptionError(
      cell.setting.name,
      `${where} was made with another recipe than the study now gives cell ${cell.id} (${changed.join(', ')} changed in the study file or its base); delete it to rerun the cell, or give the changed setting a new name`,
    );
  }
}

/**
 * A measurement problem named by the study file and setting: the `measure` keys belong to the
 * study, not to the run config the error would otherwise point at.
 */
function measureError(study: Study, cell: Cell, e: unknown): unknown {
  if (!(e instanceof MaskSubError)) return e;
  return new MaskSubError(`${study.source}, setting '${cell.setting.name}' (measure: drop ${cell.setting.measure.drop}), cell ${cell.id}: ${e.message}`);
}

async function runCell(study: Study, cell: Cell, opts: StudyRunOptions, log: (m: string) => void): Promise<CellSummary> {
  try {
    checkMeasureSpec(cell.config, cell.setting.measure);
  } catch (e) {
    throw measureError(study, cell, e);
  }
  const resumable = existsSync(join(cell.runDir, 'config.resolved.yaml')) && (await latestCheckpoint(cell.runDir)) !== null;
  if (resumable) {
    checkRecipe(cell, recipeOf(readRunConfig(cell.runDir)), `run folder ${cell.runDir}`);
    log(`${cell.id}: resuming ${cell.runDir}`);
  } else {
    // A run folder without a checkpoint (killed in its first steps) holds nothing to keep, and
    // the trainer refuses to start a fresh run in a non-empty folder.
    if (existsSync(cell.runDir)) rmSync(cell.runDir, { recursive: true, force: true });
    log(`${cell.id}: training (${cell.runDir})`);
  }
  await trainRun(cell.config, { ...opts.train, resume: resumable, log: opts.train?.log ?? (() => undefined) });
  let trainLoss: TrainLossMeasurement;
  try {
    trainLoss = await measureTrainLoss(cell.config, cell.setting.measure);
  } catch (e) {
    throw measureError(study, cell, e);
  }
  const summary = buildSummary({
    study: study.name,
    setting: cell.setting.name,
    seed: cell.seed,
    recipe: recipeOf(cell.config) as unknown as Record<string, unknown>,
    history: readRunHistory(cell.runDir),
    trainLoss,
    provenance: opts.provenance ?? currentProvenance({ exclude: [study.results] }),
  });
  writeSummary(cell.summaryPath, summary);
  return summary;
}

export async function runStudy(study: Study, opts: StudyRunOptions = {}): Promise<StudyRunResult> {
  const log = opts.log ?? ((m: string) => process.stderr.write(`${m}\n`));
  const cells = studyCells(study);
  if (opts.only) {
    const names = new Set(study.settings.map((s) => s.name));
    for (const o of opts.only) if (!names.has(o)) throw new OptionError('only', `no setting '${o}' in ${study.source} (settings: ${[...names].join(', ')})`);
  }
  const trained: string[] = [];
  const skipped: string[] = [];
  const busy: string[] = [];
  if (!opts.aggregateOnly) {
    // Seed-major order: a study stopped early has every setting at its first seeds, not some
    // settings complete and others absent.
    const order = [...cells].sort((a, b) => study.seeds.indexOf(a.seed) - study.seeds.indexOf(b.seed));
    for (const cell of order) {
      if (opts.only && !opts.only.includes(cell.setting.name)) continue;
      if (existsSync(cell.summaryPath)) {
        checkRecipe(cell, readSummary(cell.summaryPath).recipe, `summary ${cell.summaryPath}`);
        skipped.push(cell.id);
        continue;
      }
      if (opts.maxCells !== undefined && trained.length >= opts.maxCells) break;
      const lock = `${cell.runDir}.lock`;
      if (!claim(lock)) {
        log(`${cell.id}: busy (another process holds ${lock})`);
        busy.push(cell.id);
        continue;
      }
      try {
        if (existsSync(cell.summaryPath)) {
          skipped.push(cell.id); // finished by another process while we waited
          continue;
        }
        const started = performance.now();
        const s = await runCell(study, cell, opts, log);
        trained.push(cell.id);
        log(`${cell.id}: done in ${((performance.now() - started) / 1000).toFixed(0)} s, final ${Object.entries(s.final).map(([k, v]) => `${k} ${v?.toFixed(3)}`).join(', ')}; train loss clean ${s.train_loss.clean.toFixed(4)}, drop ${s.train_loss.drop.toFixed(4)}`);
      } finally {
        rmSync(lock, { force: true });
      }
    }
  }
  const summaries = readSummaries(study).filter((s) => s.study === study.name);
  const { aggregate, files } = await writeStudyOutputs(study, summaries, opts.command ?? `masksub study --config ${study.source}`);
  return { trained, skipped, busy, aggregate, files };
}

function provenanceLines(summaries: CellSummary[]): string[] {
  const commits = [...new Set(summaries.map((s) => `${s.provenance.commit.slice(0, 12)}${s.provenance.dirty ? ' (with uncommitted changes)' : ''}`))];
  const machines = [...new Set(summaries.map((s) => s.provenance.machine))];
  const dates = summaries.map((s) => s.provenance.date).sort();
  return [
    `- cells ran on commit${commits.length > 1 ? 's' : ''}: ${commits.join(', ') || '–'}`,
    `- machine${machines.length > 1 ? 's' : ''}: ${machines.join('; ') || '–'}`,
    `- dates: ${dates.length ? `${dates[0]} … ${dates.at(-1)}` : '–'}`,
  ];
}

/** README.md, plots/*.svg, results.json and a copy of the study file and its base. */
export async function writeStudyOutputs(study: Study, summaries: CellSummary[], command: string): Promise<{ aggregate: StudyAggregate; files: string[] }> {
  const agg = aggregateStudy(study, summaries);
  const dir = study.results;
  mkdirSync(join(dir, 'plots'), { recursive: true });
  const files: string[] = [];
  const write = (name: string, text: string) => {
    writeFileSync(join(dir, name), text);
    files.push(join(dir, name));
  };
  copyFileSync(study.source, join(dir, 'study.yaml'));
  copyFileSync(study.base, join(dir, `base-${basename(study.base)}`));
  files.push(join(dir, 'study.yaml'), join(dir, `base-${basename(study.base)}`));

  const names = study.settings.map((s) => s.name);
  const inStudy = summaries.filter((s) => names.includes(s.setting) && study.seeds.includes(s.seed));
  const md: string[] = [`# Study: ${study.title}`, ''];
  if (study.paper) md.push(`Tests: ${study.paper}`, '');
  md.push(
    `Written by \`${command}\` from the ${agg.cells.complete} cell summaries in \`${CELLS_DIR}/\` (${agg.cells.complete} of ${agg.cells.total} cells complete: ${study.settings.length} settings × ${study.seeds.length} seeds [${study.seeds.join(', ')}]). Numbers are not edited by hand.`,
    '',
    ...provenanceLines(inStudy),
    `- report written: ${new Date().toISOString()}`,
    `- study file: [study.yaml](study.yaml), base run config: [base-${basename(study.base)}](base-${basename(study.base)})`,
    '',
    '## Results',
    '',
    studyTable(agg),
    '',
    `Values are mean ± sample std over seeds (n − 1). Eval metric: \`${agg.metric}\` (${agg.higherIsBetter ? 'higher' : 'lower'} is better), final = at the last step, best = best evaluation during the run. ` +
      `Train losses are the recipe loss of each final model on the first ${agg.settings.find((s) => s.measure)?.measure?.samples ?? '–'} training samples (no augmentation), on clean inputs and through the drop operator named in the column (same masks for every setting), measured for every setting whatever it trained on. ` +
      'Wall time and img/s come from a machine shared with other jobs: they show the order of the cost, not a benchmark.',
    '',
  );
  if (agg.convergence) md.push(`Convergence: ${agg.convergence.note}.`, '');
  md.push('## Which differences exceed the spread', '', `Rule: ${RULE}. Δ is b − a.`, '');
  const f = findings(agg);
  if (f.length) md.push(...f.map((x) => `- ${x}`), '');
  md.push(comparisonTable(agg), '');
  md.push('## Plots', '');
  if (inStudy.length) {
    const svgA = await renderSvg(metricBandSpec(names, inStudy, agg.metric, study.seeds.length));
    writeFileSync(join(dir, 'plots', 'metric.svg'), svgA);
    const svgL = await renderSvg(lossBandSpec(names, inStudy, study.seeds.length));
    writeFileSync(join(dir, 'plots', 'loss.svg'), svgL);
    files.push(join(dir, 'plots', 'metric.svg'), join(dir, 'plots', 'loss.svg'));
    md.push(`![eval ${agg.metric} vs step](plots/metric.svg)`, '', '![training loss vs step](plots/loss.svg)', '');
  } else {
    md.push('_No complete cells yet._', '');
  }
  md.push('## Reproduce', '', '```sh', command, '```', '', `Cells with a summary in \`${CELLS_DIR}/\` are skipped; delete a summary to rerun its cell. Raw run folders go to \`${study.runs}\` (not committed).`, '');
  write(STUDY_REPORT, md.join('\n'));

  const { cells: cellCounts, study: _name, ...aggRest } = agg;
  const results = {
    study: study.name,
    title: study.title,
    paper: study.paper,
    command,
    written: new Date().toISOString(),
    rule: RULE,
    cell_counts: cellCounts,
    cells: inStudy.map((s) => ({ setting: s.setting, seed: s.seed, summary: relative(dir, join(dir, CELLS_DIR, s.setting, `seed-${s.seed}.json`)), commit: s.provenance.commit, machine: s.provenance.machine, date: s.provenance.date })),
    ...aggRest,
  };
  write(STUDY_RESULTS, `${JSON.stringify(results, null, 2)}\n`);
  return { aggregate: agg, files };
}
