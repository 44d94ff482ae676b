/** GLUE metrics against hand-computed values (percent), including the degenerate cases. */
import { describe, expect, it } from 'vitest';
import { accuracy, averageRanks, binaryF1, glueMetrics, matthewsCorrelation, pearson, spearman } from './glue-metrics.js';

describe('GLUE metrics (percent)', () => {
  it('accuracy and binary F1 of class 1', () => {
    const pred = [1, 1, 0, 0, 1];
    const gold = [1, 0, 0, 1, 1];
    expect(accuracy(pred, gold)).toBeCloseTo(60, 10);
    // tp 2, fp 1, fn 1: F1 = 4 / (4 + 1 + 1)
    expect(binaryF1(pred, gold)).toBeCloseTo((100 * 4) / 6, 10);
    expect(glueMetrics('mrpc', pred, gold)).toEqual({ f1: binaryF1(pred, gold), accuracy: 60 });
  });

  it('Matthews correlation: tp 2 tn 1 fp 1 fn 1 -> (2 - 1) / sqrt(3 * 3 * 2 * 2)', () => {
    expect(matthewsCorrelation([1, 1, 0, 0, 1], [1, 0, 0, 1, 1])).toBeCloseTo(100 / 6, 10);
    expect(matthewsCorrelation([1, 0, 1, 0], [1, 0, 1, 0])).toBeCloseTo(100, 10);
    expect(matthewsCorrelation([0, 1, 0, 1], [1, 0, 1, 0])).toBeCloseTo(-100, 10);
  });

  it('degenerate classification: all one class gives 0, not NaN', () => {
    expect(matthewsCorrelation([1, 1, 1, 1], [1, 0, 1, 0])).toBe(0);
    expect(matthewsCorrelation([0, 1, 0, 1], [1, 1, 1, 1])).toBe(0);
    expect(binaryF1([0, 0, 0], [0, 0, 0])).toBe(0);
    expect(accuracy([1, 1, 1, 1], [1, 0, 1, 0])).toBe(50);
  });

  it('Pearson on a hand-computed case', () => {
    // x = 1,2,3 ; y = 1,3,2 : cov 1, var 2 and 2 -> r = 0.5
    expect(pearson([1, 2, 3], [1, 3, 2])).toBeCloseTo(50, 10);
    expect(pearson([1, 2, 3], [2, 4, 6])).toBeCloseTo(100, 10);
  });

  it('Spearman uses average ranks for ties', () => {
    expect(Array.from(averageRanks([10, 20, 20, 5]))).toEqual([2, 3.5, 3.5, 1]);
    // ranks x = 1, 2.5, 2.5, 4 ; y = 1,2,3,4 : cov = 1.5+... hand: mean 2.5; dx = -1.5, 0, 0, 1.5; dy = -1.5,-.5,.5,1.5
    // sxy = 2.25 + 0 + 0 + 2.25 = 4.5 ; sxx = 4.5 ; syy = 5 -> r = 4.5 / sqrt(22.5)
    expect(spearman([1, 2, 2, 3], [1, 2, 3, 4])).toBeCloseTo((100 * 4.5) / Math.sqrt(22.5), 10);
    // Monotone but not linear: Spearman 1, Pearson below 1.
    expect(spearman([1, 2, 3, 4], [1, 4, 9, 100])).toBeCloseTo(100, 10);
    expect(pearson([1, 2, 3, 4], [1, 4, 9, 100])).toBeLessThan(100);
  });

  it('constant predictions give correlation 0 (defined), and STS-B reports both keys', () => {
    expect(pearson([2, 2, 2], [1, 2, 3])).toBe(0);
    expect(spearman([2, 2, 2], [1, 2, 3])).toBe(0);
    expect(glueMetrics('stsb', [2, 2, 2], [1, 2, 3])).toEqual({ pearson: 0, spearmanr: 0 });
    expect(glueMetrics('cola', [1, 1], [1, 0])).toEqual({ matthews_correlation: 0 });
    expect(glueMetrics('sst2', [1, 0], [1, 1])).toEqual({ accuracy: 50 });
  });

  it('length mismatch is an error', () => {
    expect(() => accuracy([1], [1, 0])).toThrow(/1 predictions for 2 labels/);
  });
});
