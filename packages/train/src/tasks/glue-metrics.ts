/**
 * GLUE metrics as the GLUE benchmark and HF `evaluate`'s `glue` metric define them, as fractions
 * in [0, 1] (correlations in [-1, 1]) — the same scale everywhere in metrics.jsonl and reports.
 * SST-2, RTE: accuracy; MRPC: accuracy and F1 of the positive class; CoLA: Matthews correlation;
 * STS-B: Pearson and Spearman correlation (average ranks for ties).
 *
 * Degenerate inputs follow scikit-learn (what `evaluate` calls): F1 with no predicted and no true
 * positives is 0; Matthews correlation with a constant prediction or a constant truth is 0. A
 * correlation with constant predictions or scores is undefined: it is reported as 0 (the
 * prediction carries no information) rather than NaN, so a collapsed regressor is visible as a
 * number and never breaks aggregation.
 */
import { OptionError } from '@masksub/core';
import type { GlueTask } from '../data/glue.js';

function sameLength(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new OptionError('metrics', `predictions (${a.length}) and labels (${b.length}) differ in length`);
  if (a.length === 0) throw new OptionError('metrics', 'no examples to score');
  return a.length;
}

export function accuracy(pred: ArrayLike<number>, label: ArrayLike<number>): number {
  const n = sameLength(pred, label);
  let hits = 0;
  for (let i = 0; i < n; i++) if (pred[i] === label[i]) hits++;
  return hits / n;
}

interface Confusion {
  tp: number;
  tn: number;
  fp: number;
  fn: number;
}

function confusion(pred: ArrayLike<number>, label: ArrayLike<number>): Confusion {
  const n = sameLength(pred, label);
  const c = { tp: 0, tn: 0, fp: 0, fn: 0 };
  for (let i = 0; i < n; i++) {
    const p = pred[i] === 1;
    const t = label[i] === 1;
    if (p && t) c.tp++;
    else if (p) c.fp++;
    else if (t) c.fn++;
    else c.tn++;
  }
  return c;
}

/** F1 of class 1 (sklearn's binary F1): 2 tp / (2 tp + fp + fn); 0 when that is 0 / 0. */
export function f1Binary(pred: ArrayLike<number>, label: ArrayLike<number>): number {
  const { tp, fp, fn } = confusion(pred, label);
  const d = 2 * tp + fp + fn;
  return d === 0 ? 0 : (2 * tp) / d;
}

/** Matthews correlation of binary predictions; 0 when any margin is empty (sklearn). */
export function matthewsCorrelation(pred: ArrayLike<number>, label: ArrayLike<number>): number {
  const { tp, tn, fp, fn } = confusion(pred, label);
  const d = Math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn));
  return d === 0 ? 0 : (tp * tn - fp * fn) / d;
}

/** Pearson correlation; 0 when either side is constant (undefined there). */
export function pearson(x: ArrayLike<number>, y: ArrayLike<number>): number {
  const n = sameLength(x, y);
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
  const d = Math.sqrt(sxx * syy);
  return d === 0 ? 0 : Math.max(-1, Math.min(1, sxy / d));
}

/** 1-based ranks, tied values sharing the average of their ranks (scipy's rankdata 'average'). */
export function averageRanks(x: ArrayLike<number>): Float64Array {
  const order = Array.from({ length: x.length }, (_, i) => i).sort((a, b) => x[a] - x[b]);
  const ranks = new Float64Array(x.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && x[order[j + 1]] === x[order[i]]) j++;
    const rank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) ranks[order[k]] = rank;
    i = j + 1;
  }
  return ranks;
}

/** Spearman's rank correlation: Pearson of the average ranks. */
export function spearman(x: ArrayLike<number>, y: ArrayLike<number>): number {
  sameLength(x, y);
  return pearson(averageRanks(x), averageRanks(y));
}

/** The metric keys each task reports, its main one first (what `best` and `compare` rank by). */
export const GLUE_METRIC_KEYS: Readonly<Record<GlueTask, readonly string[]>> = {
  sst2: ['accuracy'],
  rte: ['accuracy'],
  mrpc: ['f1', 'accuracy'],
  cola: ['matthews_correlation'],
  stsb: ['pearson', 'spearmanr'],
};

/**
 * The task's metrics. `predictions` are class indices for classification tasks and scores for
 * STS-B; `labels` likewise.
 */
export function glueMetrics(task: GlueTask, predictions: ArrayLike<number>, labels: ArrayLike<number>): Record<string, number> {
  switch (task) {
    case 'sst2':
    case 'rte':
      return { accuracy: accuracy(predictions, labels) };
    case 'mrpc':
      return { f1: f1Binary(predictions, labels), accuracy: accuracy(predictions, labels) };
    case 'cola':
      return { matthews_correlation: matthewsCorrelation(predictions, labels) };
    case 'stsb':
      return { pearson: pearson(predictions, labels), spearmanr: spearman(predictions, labels) };
  }
}
