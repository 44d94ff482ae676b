/**
 * SVG plots of metrics.jsonl: losses, evaluation accuracy and learning rate against step, for one
 * run or several side by side (baseline vs MaskSub).
 *
 * Specs are vega-lite (declarative, easy to tweak), compiled to vega and rendered headless with
 * `View.toSVG()` and renderer 'none': SVG output needs no canvas or browser, so this works in CI.
 */
import { writeFileSync } from 'node:fs';
import sharp from 'sharp';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { OptionError } from '@masksub/core';
import type { EvalRecord, MetricsRecord, TrainRecord } from './metrics.js';

/** The records of one run under the name shown in legends. */
export interface RunMetrics {
  name: string;
  records: MetricsRecord[];
}

export interface PlotOptions {
  /**
   * Exponential moving average of per-step train series, as TensorBoard's slider (0 = raw,
   * 0.9 = heavy). Per-step losses are noisy enough to hide a baseline-vs-MaskSub gap.
   */
  smoothing?: number;
  /** Size of one panel in pixels. */
  width?: number;
  height?: number;
}

/** Legend names of the series, also what tests and readers search for. */
export const SERIES = {
  lossMain: 'main loss',
  lossSub: 'sub loss (masked)',
  top1: 'top-1',
  top5: 'top-5',
  lr: 'learning rate',
} as const;

export const AXIS = {
  step: 'step',
  loss: 'loss',
  accuracy: 'accuracy (%)',
  lr: 'learning rate',
} as const;

/** One plotted point; null values leave a gap (vega-lite drops them) instead of a NaN path. */
interface Point {
  run: string;
  series: string;
  step: number;
  value: number | null;
}

const trainRecords = (records: MetricsRecord[]): TrainRecord[] => records.filter((r): r is TrainRecord => r.type === 'train');
const evalRecords = (records: MetricsRecord[]): EvalRecord[] => records.filter((r): r is EvalRecord => r.type === 'eval');

function checkSmoothing(smoothing: number): void {
  if (!(smoothing >= 0 && smoothing < 1)) throw new OptionError('smoothing', `must be in [0, 1), got ${smoothing}`);
}

/**
 * Debiased EMA (as TensorBoard): early points are not pulled toward 0. Non-finite values are
 * passed through as gaps and do not poison the average.
 */
export function smooth(values: (number | null)[], smoothing: number): (number | null)[] {
  checkSmoothing(smoothing);
  if (smoothing === 0) return values.map((v) => (v !== null && Number.isFinite(v) ? v : null));
  let ema = 0;
  let weight = 0;
  return values.map((v) => {
    if (v === null || !Number.isFinite(v)) return null;
    ema = smoothing * ema + (1 - smoothing) * v;
    weight = smoothing * weight + (1 - smoothing);
    return ema / weight;
  });
}

function trainSeries(run: RunMetrics, series: string, pick: (r: TrainRecord) => number | null, smoothing: number): Point[] {
  const train = trainRecords(run.records);
  const values = smooth(train.map(pick), smoothing);
  return train.map((r, i) => ({ run: run.name, series, step: r.step, value: values[i] }));
}

function lossPoints(run: RunMetrics, smoothing: number): Point[] {
  const main = trainSeries(run, SERIES.lossMain, (r) => r.loss_main, smoothing);
  const sub = trainSeries(run, SERIES.lossSub, (r) => r.loss_sub, smoothing);
  // A baseline run has no sub-model: leave its series out rather than plot an empty legend entry.
  return sub.some((p) => p.value !== null) ? [...main, ...sub] : main;
}

function accuracyPoints(run: RunMetrics): Point[] {
  const points: Point[] = [];
  for (const r of evalRecords(run.records)) {
    points.push({ run: run.name, series: SERIES.top1, step: r.step, value: r.top1 !== undefined && Number.isFinite(r.top1) ? r.top1 : null });
    points.push({ run: run.name, series: SERIES.top5, step: r.step, value: r.top5 !== undefined && Number.isFinite(r.top5) ? r.top5 : null });
  }
  return points;
}

const smoothingNote = (smoothing: number): string => (smoothing > 0 ? ` (EMA ${smoothing})` : '');

const quantitative = (field: string, title: string) => ({ field, type: 'quantitative' as const, title });

/** Shared frame of every panel: steps on x, a value on y, one line per (run, series). */
function lineLayer(points: Point[], title: string, yTitle: string, opts: PlotOptions, colorBy: 'series' | 'run', dashBy?: 'series') {
  return {
    title,
    width: opts.width ?? 460,
    height: opts.height ?? 260,
    data: { values: points },
    mark: { type: 'line' as const, point: points.length <= 60, strokeWidth: 1.5 },
    encoding: {
      // Every panel starts at step 0, so panels of one report line up and sparse evals are not stretched.
      x: { ...quantitative('step', AXIS.step), scale: { domainMin: 0 } },
      y: { ...quantitative('value', yTitle), scale: { zero: false } },
      color: { field: colorBy, type: 'nominal' as const, title: colorBy === 'run' ? 'run' : null },
      ...(dashBy ? { strokeDash: { field: dashBy, type: 'nominal' as const, title: null } } : {}),
      // Keep distinct runs/series as separate lines even when color is shared.
      detail: { field: colorBy === 'run' ? 'series' : 'run', type: 'nominal' as const },
    },
  };
}

const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';
const CONFIG = { font: 'DejaVu Sans, Helvetica, Arial, sans-serif', background: 'white' };

/** Main and sub loss against step for one run. */
export function lossSpec(run: RunMetrics, opts: PlotOptions = {}): TopLevelSpec {
  const smoothing = opts.smoothing ?? 0;
  return {
    $schema: SCHEMA,
    config: CONFIG,
    ...lineLayer(lossPoints(run, smoothing), `${run.name}: training loss${smoothingNote(smoothing)}`, AXIS.loss, opts, 'series'),
  };
}

/** Eval top-1/top-5 against step; null when the run has no evaluations. */
export function accuracySpec(run: RunMetrics, opts: PlotOptions = {}): TopLevelSpec | null {
  const points = accuracyPoints(run);
  if (points.length === 0) return null;
  return {
    $schema: SCHEMA,
    config: CONFIG,
    ...lineLayer(points, `${run.name}: eval accuracy`, AXIS.accuracy, opts, 'series'),
  };
}

export function learningRateSpec(run: RunMetrics, opts: PlotOptions = {}): TopLevelSpec {
  const points = trainSeries(run, SERIES.lr, (r) => r.lr, 0);
  const layer = lineLayer(points, `${run.name}: learning rate`, AXIS.lr, opts, 'series');
  return {
    $schema: SCHEMA,
    config: CONFIG,
    ...layer,
    encoding: {
      ...layer.encoding,
      color: { ...layer.encoding.color, legend: null },
      // Rates like 3e-4 with a warmup from 0: exponent notation and a zero-based axis.
      y: { ...quantitative('value', AXIS.lr), scale: { zero: true }, axis: { format: '.1e' } },
    },
  };
}

/**
 * Runs side by side: training losses (color = run, dash = main/sub) next to eval top-1
 * (color = run), one shared color legend. Eval panel omitted when no run has evaluations.
 */
export function comparisonSpec(runs: RunMetrics[], opts: PlotOptions = {}): TopLevelSpec {
  if (runs.length === 0) throw new OptionError('runs', 'at least one run is needed for a comparison');
  const names = new Set(runs.map((r) => r.name));
  if (names.size !== runs.length) throw new OptionError('runs', `run names must be distinct: ${runs.map((r) => r.name).join(', ')}`);
  const smoothing = opts.smoothing ?? 0;
  const loss = runs.flatMap((r) => lossPoints(r, smoothing));
  const top1 = runs.flatMap((r) => accuracyPoints(r).filter((p) => p.series === SERIES.top1));
  const panels = [lineLayer(loss, `training loss${smoothingNote(smoothing)}`, AXIS.loss, opts, 'run', 'series')];
  if (top1.length > 0) panels.push(lineLayer(top1, `eval ${SERIES.top1}`, AXIS.accuracy, opts, 'run'));
  return {
    $schema: SCHEMA,
    // Legends below the panels: on the right they would sit in the gap between the two panels.
    config: { ...CONFIG, legend: { orient: 'bottom' as const } },
    title: runs.map((r) => r.name).join(' vs '),
    hconcat: panels,
    resolve: { scale: { color: 'shared', strokeDash: 'independent' } },
  };
}

/** Renders a vega-lite spec to an SVG string, headless. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Rasterizes an SVG (librsvg via sharp) for places that do not show SVG. */
export async function svgToPng(svg: string, file: string, density = 144): Promise<void> {
  const png = await sharp(Buffer.from(svg), { density }).png().toBuffer();
  writeFileSync(file, png);
}
