/**
 * `report.md` for one run folder, or a comparison of several (baseline vs MaskSub): a summary
 * table and SVG plots next to it, so a run can be judged from a file browser or a GitHub diff
 * without a notebook.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import { FileFormatError, OptionError, median } from '@masksub/core';
import { METRICS_FILE, PERCENT_METRICS, metricValue, primaryMetric, readMetrics, type EvalRecord, type MetricsRecord, type TrainRecord } from './metrics.js';
import { accuracySpec, comparisonSpec, learningRateSpec, lossSpec, renderSvg, svgToPng, type RunMetrics } from './plots.js';
import { formatDuration } from './progress.js';

export const REPORT_FILE = 'report.md';
export const PLOTS_DIR = 'plots';

/** The numbers of one run that the report shows. Null where the run has no such data. */
export interface RunSummary {
  name: string;
  /** Last logged step (train or eval). */
  steps: number;
  epochs: number;
  /** MaskSub runs log a sub loss; baselines do not. */
  masksub: boolean;
  /** Sub-model masking ratio at the last logged step. */
  ratio: number | null;
  evaluations: number;
  /** The metric that ranks runs (top1 for images, the GLUE task's main key for text); null without evaluations. */
  metric: string | null;
  finalMetric: number | null;
  bestMetric: number | null;
  bestMetricStep: number | null;
  finalTop1: number | null;
  finalTop5: number | null;
  finalEvalLoss: number | null;
  bestTop1: number | null;
  bestTop1Step: number | null;
  /** Mean over the last `lossWindow` logged steps: one step's loss is mostly batch noise. */
  lossMain: number | null;
  lossSub: number | null;
  lossWindow: number;
  wallTimeSeconds: number | null;
  /** Median over logged steps, so the slow first (compiling) steps do not drag it down. */
  imgPerSecond: number | null;
}

const finite = (v: number | null | undefined): v is number => v !== null && v !== undefined && Number.isFinite(v);

function mean(values: (number | null)[]): number | null {
  const f = values.filter(finite);
  return f.length === 0 ? null : f.reduce((a, b) => a + b, 0) / f.length;
}

export function summarizeRun(name: string, records: MetricsRecord[], lossWindow = 10): RunSummary {
  if (!(Number.isInteger(lossWindow) && lossWindow > 0)) throw new OptionError('lossWindow', `must be a positive integer, got ${lossWindow}`);
  const train = records.filter((r): r is TrainRecord => r.type === 'train');
  const evals = records.filter((r): r is EvalRecord => r.type === 'eval');
  const last = records.at(-1);
  const lastEval = evals.at(-1);
  const metric = lastEval ? primaryMetric(lastEval) : null;
  // Loss is the only metric where lower is better.
  const better = (a: number, b: number) => (metric === 'loss' ? a < b : a > b);
  let best: EvalRecord | undefined;
  for (const e of evals) {
    const v = metric === null ? undefined : metricValue(e, metric);
    if (finite(v) && (best === undefined || better(v, metricValue(best, metric as string) as number))) best = e;
  }
  let bestTop1: EvalRecord | undefined;
  for (const e of evals) if (finite(e.top1) && (bestTop1 === undefined || e.top1 > (bestTop1.top1 as number))) bestTop1 = e;
  const tail = train.slice(-lossWindow);
  const lastTrain = train.at(-1);
  return {
    name,
    steps: records.reduce((m, r) => Math.max(m, r.step), 0),
    epochs: last?.epoch ?? 0,
    masksub: train.some((r) => r.loss_sub !== null),
    ratio: lastTrain?.ratio ?? null,
    evaluations: evals.length,
    metric,
    finalMetric: lastEval && metric ? (metricValue(lastEval, metric) ?? null) : null,
    bestMetric: best && metric ? (metricValue(best, metric) ?? null) : null,
    bestMetricStep: best?.step ?? null,
    finalTop1: lastEval?.top1 ?? null,
    finalTop5: lastEval?.top5 ?? null,
    finalEvalLoss: lastEval?.loss ?? null,
    bestTop1: bestTop1?.top1 ?? null,
    bestTop1Step: bestTop1?.step ?? null,
    lossMain: mean(tail.map((r) => r.loss_main)),
    lossSub: mean(tail.map((r) => r.loss_sub)),
    lossWindow: tail.length,
    wallTimeSeconds: train.reduce<number | null>((m, r) => (finite(r.time) ? Math.max(m ?? 0, r.time) : m), null),
    imgPerSecond: median(train.map((r) => r.img_per_s)),
  };
}

const fmt = (v: number | null, digits: number): string => (v === null ? '–' : Number.isFinite(v) ? v.toFixed(digits) : String(v));
const signed = (v: number, digits: number): string => (v >= 0 ? '+' : '') + v.toFixed(digits);

/** How a metric key reads in a table header (top1 -> top-1; GLUE keys as they are). */
function metricLabel(key: string): string {
  return key === 'top1' ? 'top-1' : key === 'top5' ? 'top-5' : key;
}

/** Percent metrics get 2 decimals; fractions and correlations 4. */
function digitsOf(key: string | null): number {
  return key !== null && PERCENT_METRICS.has(key) ? 2 : 4;
}

/** One row per run; with several runs, a Δ column against the first (list the baseline first). */
export function summaryTable(summaries: RunSummary[]): string {
  const compare = summaries.length > 1;
  const reference = summaries[0]?.bestMetric ?? null;
  const metric = metricLabel(summaries.find((s) => s.metric !== null)?.metric ?? 'top1');
  const header = [
    'run', 'steps', 'epochs', `final ${metric}`, `best ${metric} (step)`, ...(compare ? [`Δ best ${metric}`] : []), 'final top-5', 'eval loss',
    'train loss main', 'train loss sub', 'mask ratio', 'wall time (h:mm:ss)', 'img/s',
  ];
  const align = header.map((_, i) => (i === 0 ? '---' : '---:'));
  const rows = summaries.map((s) => [
    s.name,
    String(s.steps),
    fmt(s.epochs, 2),
    fmt(s.finalMetric, digitsOf(s.metric)),
    s.bestMetric === null ? '–' : `${s.bestMetric.toFixed(digitsOf(s.metric))} (${s.bestMetricStep})`,
    ...(compare ? [s.bestMetric === null || reference === null ? '–' : signed(s.bestMetric - reference, digitsOf(s.metric))] : []),
    fmt(s.finalTop5, 2),
    fmt(s.finalEvalLoss, 4),
    fmt(s.lossMain, 4),
    s.masksub ? fmt(s.lossSub, 4) : '– (baseline)',
    fmt(s.ratio, 2),
    s.wallTimeSeconds === null ? '–' : formatDuration(s.wallTimeSeconds),
    fmt(s.imgPerSecond, 1),
  ]);
  return [header, align, ...rows].map((cells) => `| ${cells.join(' | ')} |`).join('\n');
}

/** Markdown table of a run's evaluations (the last `limit`, so a long run stays readable). */
export function evaluationTable(records: MetricsRecord[], limit = 40): string {
  const evals = records.filter((r): r is EvalRecord => r.type === 'eval');
  if (evals.length === 0) return '_No evaluations were logged._';
  const shown = evals.slice(-limit);
  const keys = [...new Set(shown.flatMap((e) => Object.keys(e).filter((k) => !['type', 'step', 'epoch', 'time'].includes(k))))];
  // loss last, as before
  keys.sort((a, b) => (a === 'loss' ? 1 : 0) - (b === 'loss' ? 1 : 0));
  const lines = [`| step | epoch | ${keys.map(metricLabel).join(' | ')} |`, `| ---: | ---: | ${keys.map(() => '---:').join(' | ')} |`];
  for (const e of shown) lines.push(`| ${e.step} | ${fmt(e.epoch, 2)} | ${keys.map((k) => fmt(metricValue(e, k) ?? null, k === 'loss' ? 4 : digitsOf(k))).join(' | ')} |`);
  if (shown.length < evals.length) lines.push('', `_Last ${shown.length} of ${evals.length} evaluations._`);
  return lines.join('\n');
}

export interface ReportOptions {
  /**
   * Where report.md and plots/ go. Default: the run folder for one run; for several, their
   * closest common parent folder.
   */
  outDir?: string;
  /** Heading of report.md. */
  title?: string;
  /** EMA smoothing of the loss curves (0 = raw), see PlotOptions. */
  smoothing?: number;
  /** Also write a PNG beside each SVG (for viewers without SVG support). */
  png?: boolean;
  /** Train losses in the table are averaged over this many last logged steps. Default 10. */
  lossWindow?: number;
}

export interface ReportResult {
  reportPath: string;
  /** Every file written: report.md, SVGs, PNGs. */
  files: string[];
  summaries: RunSummary[];
}

function commonParent(dirs: string[]): string {
  const parts = dirs.map((d) => dirname(d).split(sep));
  const common: string[] = [];
  for (let i = 0; ; i++) {
    const p = parts[0][i];
    if (p === undefined || !parts.every((q) => q[i] === p)) break;
    common.push(p);
  }
  return common.join(sep) || sep;
}

/** Legend names: folder names, or paths below the common parent when folder names repeat. */
function runNames(dirs: string[], parent: string): string[] {
  const base = dirs.map((d) => basename(d));
  if (new Set(base).size === base.length) return base;
  return dirs.map((d) => relative(parent, d) || basename(d));
}

/** Plot file names must not carry path separators or spaces from run names. */
const fileSafe = (name: string): string => name.replace(/[^A-Za-z0-9._-]+/g, '_');

export async function writeReport(runDirs: string | string[], options: ReportOptions = {}): Promise<ReportResult> {
  const dirs = (Array.isArray(runDirs) ? runDirs : [runDirs]).map((d) => resolve(d));
  if (dirs.length === 0) throw new OptionError('runDirs', 'no run folder given');
  if (new Set(dirs).size !== dirs.length) throw new OptionError('runDirs', `a run folder is listed twice: ${dirs.join(', ')}`);
  const parent = commonParent(dirs);
  const outDir = resolve(options.outDir ?? (dirs.length === 1 ? dirs[0] : parent));
  const names = runNames(dirs, parent);
  const runs: RunMetrics[] = dirs.map((dir, i) => {
    const records = readMetrics(dir);
    if (records.length === 0) throw new FileFormatError(join(dir, METRICS_FILE), 'no metrics records: nothing to report');
    return { name: names[i], records };
  });
  const summaries = runs.map((r) => summarizeRun(r.name, r.records, options.lossWindow ?? 10));
  const plotOptions = { smoothing: options.smoothing ?? 0 };

  const plotsDir = join(outDir, PLOTS_DIR);
  mkdirSync(plotsDir, { recursive: true });
  const files: string[] = [];
  const link = async (spec: TopLevelSpec, file: string, alt: string): Promise<string> => {
    const svg = await renderSvg(spec);
    const path = join(plotsDir, `${file}.svg`);
    writeFileSync(path, svg);
    files.push(path);
    if (options.png === true) {
      await svgToPng(svg, join(plotsDir, `${file}.png`));
      files.push(join(plotsDir, `${file}.png`));
    }
    return `![${alt}](${PLOTS_DIR}/${file}.svg)`;
  };

  const single = runs.length === 1;
  const md: string[] = [`# ${options.title ?? (single ? `Run report: ${runs[0].name}` : `Comparison: ${runs.map((r) => r.name).join(' vs ')}`)}`, ''];
  md.push(
    single
      ? `From \`${join(relative(outDir, dirs[0]), METRICS_FILE)}\`.`
      : `Runs: ${dirs.map((d, i) => `\`${names[i]}\`${relative(outDir, d) === names[i] ? '' : ` (\`${relative(outDir, d)}\`)`}`).join(', ')}. Δ is against the first run.`,
    '',
    '## Summary',
    '',
    summaryTable(summaries),
    '',
    `Accuracies in percent; train losses are the mean of the last ${Math.max(...summaries.map((s) => s.lossWindow))} logged steps; img/s is the median over logged steps.`,
    '',
  );

  if (!single) {
    md.push('## Comparison', '', await link(comparisonSpec(runs, plotOptions), 'comparison', 'training loss and eval top-1 of each run'), '');
  }
  for (const run of runs) {
    const prefix = single ? '' : `${fileSafe(run.name)}-`;
    md.push(single ? '## Training' : `## ${run.name}`, '');
    md.push(await link(lossSpec(run, plotOptions), `${prefix}loss`, `${run.name}: training loss vs step`), '');
    const accuracy = accuracySpec(run, plotOptions);
    if (accuracy !== null) md.push(await link(accuracy, `${prefix}accuracy`, `${run.name}: eval accuracy vs step`), '');
    md.push(await link(learningRateSpec(run, plotOptions), `${prefix}lr`, `${run.name}: learning rate vs step`), '');
    md.push('### Evaluations', '', evaluationTable(run.records), '');
  }

  const reportPath = join(outDir, REPORT_FILE);
  writeFileSync(reportPath, md.join('\n'));
  files.unshift(reportPath);
  return { reportPath, files, summaries };
}
