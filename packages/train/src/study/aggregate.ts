/**
 * Aggregation of a study from its cell summaries alone (never from run folders), so a study
 * finished on several machines aggregates the same everywhere.
 *
 * Spread: mean ± sample standard deviation (n - 1) over seeds. A difference between two
 * settings "exceeds the spread" when |Δmean| > 2 × SE, with SE = sqrt(s_a²/n_a + s_b²/n_b) the
 * standard error of the difference of the means (about a 95 % interval for normal noise; with 3
 * seeds a t-test would ask for more, so treat a pass as "worth a look", not proof). With fewer
 * than 2 seeds on either side nothing is judged.
 */
import { OptionError } from '@masksub/core';
import { lowerIsBetter, type CellSummary } from './summary.js';
import { PERCENT_METRICS } from '../report/metrics.js';
import type { Study, StudySetting } from './schema.js';

export const SIGNIFICANCE_FACTOR = 2;
export const RULE = `|Δmean| > ${SIGNIFICANCE_FACTOR} × SE, SE = sqrt(s_a²/n_a + s_b²/n_b) (s: sample std over seeds)`;

export interface Stat {
  n: number;
  mean: number | null;
  /** Sample standard deviation (n - 1); null below 2 values. */
  std: number | null;
  values: number[];
}

export function stat(values: (number | null | undefined)[]): Stat {
  const v = values.filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
  const n = v.length;
  if (n === 0) return { n, mean: null, std: null, values: v };
  const mean = v.reduce((a, b) => a + b, 0) / n;
  const std = n < 2 ? null : Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1));
  return { n, mean, std, values: v };
}

export interface SettingResult {
  name: string;
  group: string | null;
  label: string | null;
  seeds: number[];
  missingSeeds: number[];
  steps: number | null;
  final: Stat;
  best: Stat;
  /** Final value of every other eval metric the task logs (e.g. top5, f1). */
  finalOther: Record<string, Stat>;
  trainLossClean: Stat;
  trainLossDrop: Stat;
  measure: { drop_kind: string; ratio: number; samples: number } | null;
  wallTime: Stat;
  imgPerSecond: Stat;
}

export interface Comparison {
  a: string;
  b: string;
  quantity: 'final' | 'best' | 'train_loss_clean' | 'train_loss_drop';
  /** mean(b) - mean(a). */
  delta: number | null;
  se: number | null;
  exceeds: boolean | null;
}

export interface Convergence {
  setting: string;
  /** Mean over seeds of (final metric - metric at the last eval at or before 3/4 of the run). */
  lastQuarterGain: Stat;
  /** Whether that gain exceeds 2 × its standard error (still improving) — null if unknown. */
  stillImproving: boolean | null;
  note: string;
}

export interface StudyAggregate {
  study: string;
  metric: string;
  higherIsBetter: boolean;
  seeds: number[];
  settings: SettingResult[];
  comparisons: Comparison[];
  convergence: Convergence | null;
  cells: { complete: number; total: number };
}

/** top1 when logged, else the first non-loss metric, else the first. */
export function primaryMetric(study: Study, summaries: CellSummary[]): string {
  if (study.metric) return study.metric;
  const keys = [...new Set(summaries.flatMap((s) => Object.keys(s.final)))];
  if (keys.length === 0) throw new OptionError('metric', `${study.source}: the cells logged no eval metrics (give the base config data.eval)`);
  if (keys.includes('top1')) return 'top1';
  return keys.find((k) => !lowerIsBetter(k)) ?? keys[0];
}

function seSum(a: Stat, b: Stat): number | null {
  if (a.std === null || b.std === null) return null;
  return Math.sqrt(a.std ** 2 / a.n + b.std ** 2 / b.n);
}

export function compareStats(a: Stat, b: Stat): { delta: number | null; se: number | null; exceeds: boolean | null } {
  if (a.mean === null || b.mean === null) return { delta: null, se: null, exceeds: null };
  const delta = b.mean - a.mean;
  const se = seSum(a, b);
  return { delta, se, exceeds: se === null ? null : Math.abs(delta) > SIGNIFICANCE_FACTOR * se };
}

function metricAtOrBefore(s: CellSummary, metric: string, step: number): number | null {
  let v: number | null = null;
  for (const e of s.curves.eval) if (e.step <= step) v = e.metrics[metric] ?? v;
  return v;
}

function settingResult(setting: StudySetting, seeds: number[], cells: CellSummary[], metric: string): SettingResult {
  const others = [...new Set(cells.flatMap((c) => Object.keys(c.final)))].filter((k) => k !== metric);
  const finalOther: Record<string, Stat> = {};
  for (const k of others) finalOther[k] = stat(cells.map((c) => c.final[k]));
  const m = cells[0]?.train_loss;
  return {
    name: setting.name,
    group: setting.group,
    label: setting.label,
    seeds: cells.map((c) => c.seed),
    missingSeeds: seeds.filter((s) => !cells.some((c) => c.seed === s)),
    steps: cells.length ? Math.max(...cells.map((c) => c.steps)) : null,
    final: stat(cells.map((c) => c.final[metric])),
    best: stat(cells.map((c) => c.best[metric]?.value)),
    finalOther,
    trainLossClean: stat(cells.map((c) => c.train_loss.clean)),
    trainLossDrop: stat(cells.map((c) => c.train_loss.drop)),
    measure: m ? { drop_kind: m.drop_kind, ratio: m.ratio, samples: m.samples } : null,
    wallTime: stat(cells.map((c) => c.wall_time_s)),
    imgPerSecond: stat(cells.map((c) => c.img_per_s)),
  };
}

/** Aggregate the summaries of a study (cells of settings no longer in the study are ignored). */
export function aggregateStudy(study: Study, summaries: CellSummary[]): StudyAggregate {
  const metric = summaries.length ? primaryMetric(study, summaries) : (study.metric ?? 'top1');
  const higherIsBetter = study.higherIsBetter ?? !lowerIsBetter(metric);
  const bySetting = new Map(study.settings.map((s) => [s.name, summaries.filter((c) => c.setting === s.name && study.seeds.includes(c.seed)).sort((a, b) => a.seed - b.seed)]));
  const settings = study.settings.map((s) => settingResult(s, study.seeds, bySetting.get(s.name)!, metric));
  const byName = new Map(settings.map((s) => [s.name, s]));

  const pairs: [string, string][] = [];
  for (const s of study.settings) {
    const ref = study.referenceScope === 'group' ? groupReference(study, s.group) : study.reference;
    if (s.name !== ref) pairs.push([ref, s.name]);
  }
  for (const p of study.compare) if (!pairs.some(([a, b]) => a === p[0] && b === p[1])) pairs.push(p);
  const comparisons: Comparison[] = [];
  for (const [a, b] of pairs) {
    const A = byName.get(a)!;
    const B = byName.get(b)!;
    comparisons.push({ a, b, quantity: 'final', ...compareStats(A.final, B.final) });
    comparisons.push({ a, b, quantity: 'best', ...compareStats(A.best, B.best) });
    comparisons.push({ a, b, quantity: 'train_loss_clean', ...compareStats(A.trainLossClean, B.trainLossClean) });
    comparisons.push({ a, b, quantity: 'train_loss_drop', ...compareStats(A.trainLossDrop, B.trainLossDrop) });
  }

  const refCells = bySetting.get(study.reference) ?? [];
  let convergence: Convergence | null = null;
  if (refCells.length > 0) {
    const gains = refCells.map((c) => {
      const fin = c.final[metric];
      const at = metricAtOrBefore(c, metric, Math.floor((3 * c.steps) / 4));
      return fin === null || fin === undefined || at === null ? null : (higherIsBetter ? 1 : -1) * (fin - at);
    });
    const g = stat(gains);
    const se = g.std === null ? null : g.std / Math.sqrt(g.n);
    const stillImproving = g.mean === null ? null : se === null ? null : g.mean > SIGNIFICANCE_FACTOR * se;
    const note =
      g.mean === null
        ? 'unknown: the reference has no evaluation in the first 3/4 of its run (set run.eval_every)'
        : `the reference (${study.reference}) changed its final ${metric} by ${signed(g.mean, metricDigits(metric))} over the last quarter of its steps (mean over ${g.n} seeds${se === null ? '' : `, SE ${se.toFixed(metricDigits(metric))}`}): ${
            stillImproving === null ? 'cannot tell with one seed' : stillImproving ? 'still improving, NOT converged' : 'flat within noise (converged at this schedule)'
          }`;
    convergence = { setting: study.reference, lastQuarterGain: g, stillImproving, note };
  }
  const complete = [...bySetting.values()].reduce((n, c) => n + c.length, 0);
  return { study: study.name, metric, higherIsBetter, seeds: study.seeds, settings, comparisons, convergence, cells: { complete, total: study.settings.length * study.seeds.length } };
}

export const signed = (v: number, digits: number): string => (v >= 0 ? '+' : '') + v.toFixed(digits);

/** `mean ± std` (or the single value, or – when nothing was measured). */
export function pm(s: Stat, digits: number): string {
  if (s.mean === null) return '–';
  return s.std === null ? s.mean.toFixed(digits) : `${s.mean.toFixed(digits)} ± ${s.std.toFixed(digits)}`;
}

const QUANTITY_NAMES: Record<Comparison['quantity'], string> = {
  final: 'final',
  best: 'best',
  train_loss_clean: 'train loss (original)',
  train_loss_drop: 'train loss (drop)',
};

/** Percent metrics read well at 2 decimals; fractions, correlations and losses need 4. */
function metricDigits(metric: string): number {
  return PERCENT_METRICS.has(metric) ? 2 : 4;
}

/** The setting a group's rows are compared with: the study's reference if in the group, else the group's first. */
function groupReference(study: Study, group: string | null): string {
  const members = study.settings.filter((s) => s.group === group);
  return members.some((s) => s.name === study.reference) ? study.reference : members[0].name;
}

/** The table, in the layout of the paper's ablation tables: group, setting, losses, metric. */
export function studyTable(agg: StudyAggregate): string {
  const d = metricDigits(agg.metric);
  const hasGroups = agg.settings.some((s) => s.group !== null);
  const otherKeys = [...new Set(agg.settings.flatMap((s) => Object.keys(s.finalOther)))].filter((k) => k !== 'loss');
  const header = [
    ...(hasGroups ? ['drop type'] : []),
    'setting',
    'seeds',
    'steps',
    'train loss (original)',
    'train loss (drop)',
    `final ${agg.metric}`,
    `best ${agg.metric}`,
    ...otherKeys.map((k) => `final ${k}`),
    'eval loss',
    'wall time / run (s)',
    'img/s',
  ];
  const rows = agg.settings.map((s) => [
    ...(hasGroups ? [s.group ?? ''] : []),
    s.label ? `${s.name} (${s.label})` : s.name,
    s.missingSeeds.length ? `${s.final.n} (missing ${s.missingSeeds.join(', ')})` : String(s.final.n),
    s.steps === null ? '–' : String(s.steps),
    pm(s.trainLossClean, 4),
    s.measure ? `${pm(s.trainLossDrop, 4)} (${s.measure.drop_kind} ${s.measure.ratio})` : '–',
    pm(s.final, d),
    pm(s.best, d),
    ...otherKeys.map((k) => (s.finalOther[k] ? pm(s.finalOther[k], metricDigits(k)) : '–')),
    s.finalOther.loss ? pm(s.finalOther.loss, 4) : '–',
    pm(s.wallTime, 0),
    pm(s.imgPerSecond, 1),
  ]);
  const align = header.map((_, i) => (i < (hasGroups ? 2 : 1) ? '---' : '---:'));
  return [header, align, ...rows].map((cells) => `| ${cells.join(' | ')} |`).join('\n');
}

export function comparisonTable(agg: StudyAggregate): string {
  const lines = ['| a | b | quantity | Δ (b − a) | 2 × SE | exceeds the spread? |', '| --- | --- | --- | ---: | ---: | --- |'];
  for (const c of agg.comparisons) {
    const digits = c.quantity === 'final' || c.quantity === 'best' ? metricDigits(agg.metric) : 4;
    const q = c.quantity === 'final' || c.quantity === 'best' ? `${QUANTITY_NAMES[c.quantity]} ${agg.metric}` : QUANTITY_NAMES[c.quantity];
    lines.push(
      `| ${c.a} | ${c.b} | ${q} | ${c.delta === null ? '–' : signed(c.delta, digits)} | ${c.se === null ? '–' : (SIGNIFICANCE_FACTOR * c.se).toFixed(digits)} | ${
        c.exceeds === null ? 'cannot tell (< 2 seeds)' : c.exceeds ? '**yes**' : 'no (within noise)'
      } |`,
    );
  }
  return lines.join('\n');
}

/** Plain sentences for the report: which differences of the primary metric exceed the spread. */
export function findings(agg: StudyAggregate): string[] {
  const out: string[] = [];
  const d = metricDigits(agg.metric);
  for (const c of agg.comparisons.filter((x) => x.quantity === 'final')) {
    if (c.delta === null) continue;
    const better = agg.higherIsBetter ? c.delta > 0 : c.delta < 0;
    const verdict = c.exceeds === null ? 'cannot be judged (fewer than 2 seeds)' : c.exceeds ? `exceeds the spread: ${c.b} is ${better ? 'better' : 'worse'}` : 'is within the noise';
    out.push(`${c.b} vs ${c.a}: final ${agg.metric} ${signed(c.delta, d)}${c.se === null ? '' : ` (2 × SE ${(SIGNIFICANCE_FACTOR * c.se).toFixed(d)})`} — ${verdict}.`);
  }
  return out;
}
