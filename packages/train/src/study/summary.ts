/**
 * A cell's summary file: everything the aggregate needs from one finished run, small enough to
 * commit (final and best of every eval metric, short curves, the measured train losses, timing,
 * where and when it ran). A study is finished when every cell has one, on whatever machines.
 *
 * Eval metrics are read generically from metrics.jsonl: every numeric field of an `eval` record
 * other than step/epoch (and of a nested `metrics` object, if a task logs one), so image
 * (top1/top5), GLUE (accuracy, f1, matthews, pearson, ...) and contrastive tasks all work.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { FileFormatError, median, writeFileAtomic } from '@masksub/core';
import { METRICS_FILE } from '../report/metrics.js';
import type { TrainLossMeasurement } from './measure.js';

export const SUMMARY_VERSION = 1;
/** Curves in a summary are thinned to at most this many points (the file stays a few KB). */
export const MAX_CURVE_POINTS = 120;

export interface EvalPoint {
  step: number;
  metrics: Record<string, number | null>;
}

export interface TrainPoint {
  step: number;
  loss_main: number | null;
  loss_sub: number | null;
}

export interface RunHistory {
  evals: EvalPoint[];
  train: TrainPoint[];
  steps: number;
  /** Wall-clock seconds of training (carried across resumes by the trainer). */
  wallTime: number | null;
  /** Median over logged intervals (the first, compiling, steps do not drag it down). */
  imgPerSecond: number | null;
}

const RESERVED = new Set(['type', 'step', 'epoch']);
const numOrNull = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

function evalMetrics(record: Record<string, unknown>): Record<string, number | null> {
  const out: Record<string, number | null> = {};
  const take = (obj: Record<string, unknown>) => {
    for (const [k, v] of Object.entries(obj)) {
      if (RESERVED.has(k)) continue;
      // null is how metrics.jsonl writes a NaN (a diverged loss): keep the key.
      if (typeof v === 'number' || v === null) out[k] = numOrNull(v);
    }
  };
  take(record);
  const nested = record.metrics;
  if (nested !== null && typeof nested === 'object' && !Array.isArray(nested)) take(nested as Record<string, unknown>);
  return out;
}

/** Read a run folder's metrics.jsonl without assuming a task's metric names. */
export function readRunHistory(runDir: string): RunHistory {
  const file = join(runDir, METRICS_FILE);
  if (!existsSync(file)) throw new FileFormatError(file, 'no such metrics file: the run did not start');
  const lines = readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '');
  const evals: EvalPoint[] = [];
  const train: TrainPoint[] = [];
  const times: number[] = [];
  const rates: number[] = [];
  let steps = 0;
  lines.forEach((line, i) => {
    let r: unknown;
    try {
      r = JSON.parse(line);
    } catch {
      if (i === lines.length - 1) return; // a line torn by a kill
      throw new FileFormatError(file, `line ${i + 1} is not JSON`);
    }
    if (r === null || typeof r !== 'object') throw new FileFormatError(file, `line ${i + 1} is not a record`);
    const rec = r as Record<string, unknown>;
    const step = typeof rec.step === 'number' ? rec.step : 0;
    steps = Math.max(steps, step);
    if (rec.type === 'eval') evals.push({ step, metrics: evalMetrics(rec) });
    else if (rec.type === 'train') {
      train.push({ step, loss_main: numOrNull(rec.loss_main), loss_sub: numOrNull(rec.loss_sub) });
      const t = numOrNull(rec.time);
      if (t !== null) times.push(t);
      const ips = numOrNull(rec.img_per_s);
      if (ips !== null) rates.push(ips);
    }
  });
  return { evals, train, steps, wallTime: times.length ? Math.max(...times) : null, imgPerSecond: median(rates) };
}

/** Every k-th point and always the last, so curves keep their end. */
export function thin<T>(points: T[], max = MAX_CURVE_POINTS): T[] {
  if (points.length <= max) return points;
  const stride = Math.ceil(points.length / max);
  const out = points.filter((_, i) => i % stride === 0);
  if (out.at(-1) !== points.at(-1)) out.push(points.at(-1)!);
  return out;
}

export interface MetricBest {
  value: number;
  step: number;
}

export interface Provenance {
  commit: string;
  dirty: boolean;
  machine: string;
  date: string;
}

export interface CellSummary {
  version: number;
  study: string;
  setting: string;
  seed: number;
  /** The cell's run config without its `run` block: what decides the result. */
  recipe: Record<string, unknown>;
  steps: number;
  final: Record<string, number | null>;
  /** Best of each eval metric over the run (max, or min for loss-like names). */
  best: Record<string, MetricBest>;
  train_loss: TrainLossMeasurement;
  wall_time_s: number | null;
  img_per_s: number | null;
  curves: { eval: EvalPoint[]; train: TrainPoint[] };
  provenance: Provenance;
}

/** Loss-like metrics improve downwards. */
export function lowerIsBetter(metric: string): boolean {
  return /loss|error|mse|mae|rmse|perplexity/i.test(metric);
}

export function buildSummary(args: {
  study: string;
  setting: string;
  seed: number;
  recipe: Record<string, unknown>;
  history: RunHistory;
  trainLoss: TrainLossMeasurement;
  provenance: Provenance;
}): CellSummary {
  const { history } = args;
  const final = history.evals.at(-1)?.metrics ?? {};
  const best: Record<string, MetricBest> = {};
  for (const e of history.evals) {
    for (const [k, v] of Object.entries(e.metrics)) {
      if (v === null) continue;
      const cur = best[k];
      const better = cur === undefined || (lowerIsBetter(k) ? v < cur.value : v > cur.value);
      if (better) best[k] = { value: v, step: e.step };
    }
  }
  return {
    version: SUMMARY_VERSION,
    study: args.study,
    setting: args.setting,
    seed: args.seed,
    recipe: args.recipe,
    steps: history.steps,
    final,
    best,
    train_loss: args.trainLoss,
    wall_time_s: history.wallTime,
    img_per_s: history.imgPerSecond,
    curves: { eval: thin(history.evals), train: thin(history.train) },
    provenance: args.provenance,
  };
}

const summarySchema = z
  .object({
    version: z.literal(SUMMARY_VERSION),
    study: z.string(),
    setting: z.string(),
    seed: z.number().int(),
    recipe: z.record(z.string(), z.unknown()),
    steps: z.number().int().nonnegative(),
    final: z.record(z.string(), z.number().nullable()),
    best: z.record(z.string(), z.object({ value: z.number(), step: z.number() })),
    train_loss: z.object({
      clean: z.number(),
      drop: z.number(),
      drop_kind: z.string(),
      ratio: z.number(),
      samples: z.number(),
      seed: z.number(),
    }),
    wall_time_s: z.number().nullable(),
    img_per_s: z.number().nullable(),
    curves: z.object({
      eval: z.array(z.object({ step: z.number(), metrics: z.record(z.string(), z.number().nullable()) })),
      train: z.array(z.object({ step: z.number(), loss_main: z.number().nullable(), loss_sub: z.number().nullable() })),
    }),
    provenance: z.object({ commit: z.string(), dirty: z.boolean(), machine: z.string(), date: z.string() }),
  })
  .strict();

export function readSummary(path: string): CellSummary {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new FileFormatError(path, `not a readable JSON summary (${(e as Error).message})`);
  }
  const r = summarySchema.safeParse(value);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new FileFormatError(path, `not a study cell summary: '${i.path.join('.') || '(root)'}': ${i.message}`);
  }
  return r.data as CellSummary;
}

/** Atomic: a summary is either absent or complete, so a kill never marks a cell done by mistake. */
export function writeSummary(path: string, summary: CellSummary): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileAtomic(path, new TextEncoder().encode(`${JSON.stringify(summary, null, 2)}\n`));
}
