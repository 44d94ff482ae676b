/**
 * GLUE metrics as the GLUE benchmark and HF `evaluate`'s `glue` metric define them:
 * SST-2 / RTE accuracy; MRPC accuracy and F1 (positive class 1 = paraphrase); CoLA Matthews
 * correlation; STS-B Pearson and Spearman (Pearson of the ranks, ties given their average rank,
 * as scipy.stats.spearmanr). All in PERCENT (100 x the fraction), as the GLUE leaderboard and the
 * MaskSub paper report them, and as top-1 is reported for images.
 *
 * Degenerate inputs give a defined number, never NaN: where sklearn / scipy divide by zero
 * (MCC when predictions or labels are all one class, F1 with no predicted and no true positive,
 * a correlation with a constant side) the value is 0 (sklearn's zero_division / MCC convention;
 * scipy would return NaN for a constant input, which a metrics log cannot compare).
 */
import type { GlueTask } from '../data/glue.js';
import type { MetricSpec } from './types.js';

const pct = (fraction: number): number => 100 * fraction;

export function accuracy(predictions: ArrayLike<number>, labels: ArrayLike<number>): number {
  checkLengths(predictions, labels);
  let hits = 0;
  for (let i = 0; i < labels.length; i++) if (predictions[i] === labels[i]) hits++;
  return labels.length ? pct(hits / labels.length) : 0;
}

/** Binary F1 of class 1 (sklearn f1_score, average='binary', zero_division=0). */
export function binaryF1(predictions: ArrayLike<number>, labels: ArrayLike<number>): number {
  checkLengths(predictions, labels);
  let tp = 0;
  let fp = 0;
  let fn = 0;
  for (let i = 0; i < labels.length; i++) {
    if (predictions[i] === 1 && labels[i] === 1) tp++;
    else if (predictions[i] === 1) fp++;
    else if (labels[i] === 1) fn++;
  }
  const denominator = 2 * tp + fp + fn;
  return denominator === 0 ? 0 : pct((2 * tp) / denominator);
}

/** Matthews correlation of binary predictions (sklearn matthews_corrcoef: 0 when undefined). */
export function matthewsCorrelation(predictions: ArrayLike<number>, labels: ArrayLike<number>): number {
  checkLengths(predictions, labels);
  let tp = 0;
  let tn = 0;
  let fp = 0;
  let fn = 0;
  for (let i = 0; i < labels.length; i++) {
    const p = predictions[i] === 1;
    const t = labels[i] === 1;
    if (p && t) tp++;
    else if (!p && !t) tn++;
    else if (p) fp++;
    else fn++;
  }
  const denominator = Math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn));
  return denominator === 0 ? 0 : pct((tp * tn - fp * fn) / denominator);
}

/** Pearson's r (scipy.stats.pearsonr's statistic); 0 when either side is constant. */
export function pearson(x: ArrayLike<number>, y: ArrayLike<number>): number {
  checkLengths(x, y);
  const n = x.length;
  if (n === 0) return 0;
  let mx = 0;
  let my = 0;
  for (let i = 0; i < n; i++) {
    mx += x[i];
    my += y[i];
  }
  mx /= n;
  my /= n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = x[i] - mx;
    const dy = y[i] - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  if (sxx === 0 || syy === 0) return 0;
  // Clamp float noise (|r| may exceed 1 by an ulp), as scipy does.
  return pct(Math.max(-1, Math.min(1, sxy / Math.sqrt(sxx * syy))));
}

/** 1-based ranks, tied values sharing their average rank (scipy.stats.rankdata 'average'). */
export function averageRanks(values: ArrayLike<number>): Float64Array {
  const order = Array.from({ length: values.length }, (_, i) => i).sort((a, b) => values[a] - values[b]);
  const ranks = new Float64Array(values.length);
  for (let start = 0; start < order.length; ) {
    let end = start + 1;
    while (end < order.length && values[order[end]] === values[order[start]]) end++;
    const rank = (start + 1 + end) / 2; // mean of ranks start+1 .. end
    for (let k = start; k < end; k++) ranks[order[k]] = rank;
    start = end;
  }
  return ranks;
}

/** Spearman's rho: Pearson's r of the average ranks; 0 when either side is constant. */
export function spearman(x: ArrayLike<number>, y: ArrayLike<number>): number {
  checkLengths(x, y);
  return pearson(averageRanks(x), averageRanks(y));
}

function checkLengths(a: ArrayLike<number>, b: ArrayLike<number>): void {
  if (a.length !== b.length) throw new RangeError(`${a.length} predictions for ${b.length} labels`);
}

const spec = (name: string, label: string): MetricSpec => ({ name, label, higherIsBetter: true, unit: 'percent' });

/** The metrics of each GLUE task, keys as HF evaluate's glue metric names them; the first is the task's headline. */
export const GLUE_METRICS: Readonly<Record<GlueTask, readonly MetricSpec[]>> = {
  sst2: [spec('accuracy', 'accuracy')],
  rte: [spec('accuracy', 'accuracy')],
  mrpc: [spec('f1', 'F1'), spec('accuracy', 'accuracy')],
  cola: [spec('matthews_correlation', 'MCC')],
  stsb: [spec('pearson', 'Pearson'), spec('spearmanr', 'Spearman')],
};

/** The task's metrics from predictions (class ids, or scores for STS-B) and labels. */
export function glueMetrics(task: GlueTask, predictions: ArrayLike<number>, labels: ArrayLike<number>): Record<string, number> {
  switch (task) {
    case 'sst2':
    case 'rte':
      return { accuracy: accuracy(predictions, labels) };
    case 'mrpc':
      return { f1: binaryF1(predictions, labels), accuracy: accuracy(predictions, labels) };
    case 'cola':
      return { matthews_correlation: matthewsCorrelation(predictions, labels) };
    case 'stsb':
      return { pearson: pearson(predictions, labels), spearmanr: spearman(predictions, labels) };
  }
}
