import { describe, expect, it } from 'vitest';
import { accuracy, averageRanks, f1Binary, glueMetrics, matthewsCorrelation, pearson, spearman } from './glue-metrics.js';

describe('GLUE metrics (hand-computed)', () => {
  it('accuracy and binary F1', () => {
    const pred = [1, 1, 0, 0, 1];
    const gold = [1, 0, 0, 1, 1];
    expect(accuracy(pred, gold)).toBeCloseTo(3 / 5, 12);
    // tp 2, fp 1, fn 1: F1 = 4 / 6
    expect(f1Binary(pred, gold)).toBeCloseTo(4 / 6, 12);
    expect(glueMetrics('mrpc', pred, gold)).toEqual({ f1: f1Binary(pred, gold), accuracy: 0.6 });
  });

  it('Matthews correlation', () => {
    // tp 2, tn 1, fp 1, fn 1: (2 - 1) / sqrt(3 * 3 * 2 * 2) = 1 / 6
    expect(matthewsCorrelation([1, 1, 0, 0, 1], [1, 0, 0, 1, 1])).toBeCloseTo(1 / 6, 12);
    expect(matthewsCorrelation([1, 0, 1, 0], [1, 0, 1, 0])).toBe(1);
    expect(matthewsCorrelation([1, 0, 1, 0], [0, 1, 0, 1])).toBe(-1);
  });

  it('degenerate cases give defined values, not NaN', () => {
    // all predictions one class: MCC 0 (sklearn), F1 0 when nothing positive is predicted or true
    expect(matthewsCorrelation([0, 0, 0], [0, 1, 0])).toBe(0);
    expect(matthewsCorrelation([1, 1, 1], [1, 1, 1])).toBe(0);
    expect(f1Binary([0, 0], [0, 0])).toBe(0);
    expect(f1Binary([1, 1], [1, 1])).toBe(1);
    expect(accuracy([1, 1, 1], [1, 1, 1])).toBe(1);
    // a constant regressor: correlations undefined, reported as 0
    expect(pearson([2, 2, 2], [1, 2, 3])).toBe(0);
    expect(spearman([2, 2, 2], [1, 2, 3])).toBe(0);
    expect(() => accuracy([], [])).toThrow(/no examples/);
    expect(() => accuracy([1], [1, 0])).toThrow(/differ in length/);
  });

  it('Pearson and Spearman with ties (average ranks)', () => {
    const x = [1, 2, 3, 4];
    const y = [2, 4, 6, 9];
    // means 2.5, 5.25; sxy = 11.5, sxx = 5, syy = 26.75
    expect(pearson(x, y)).toBeCloseTo(11.5 / Math.sqrt(5 * 26.75), 12);
    expect(spearman(x, y)).toBeCloseTo(1, 12);
    expect(Array.from(averageRanks([10, 20, 20, 5]))).toEqual([2, 3.5, 3.5, 1]);
    // scipy.stats.spearmanr([1, 2, 2, 3], [1, 3, 2, 4]): ranks [1, 2.5, 2.5, 4] vs [1, 3, 2, 4]
    // means 2.5; sxy = 2.25 + 0 + 0 + 2.25 = 4.5, sxx = 4.5, syy = 5 -> 4.5 / sqrt(22.5)
    expect(spearman([1, 2, 2, 3], [1, 3, 2, 4])).toBeCloseTo(4.5 / Math.sqrt(22.5), 12);
    expect(glueMetrics('stsb', x, y)).toEqual({ pearson: pearson(x, y), spearmanr: spearman(x, y) });
  });
});
