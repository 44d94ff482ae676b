import { describe, expect, it } from 'vitest';
import { OptionError } from './errors.js';
import { median, medianInterval } from './stats.js';

/** P(Bin(n, 1/2) <= k) by summing binomial coefficients directly. */
function binomBelow(n: number, k: number): number {
  let s = 0;
  for (let i = 0; i <= k; i++) {
    let c = 1;
    for (let t = 0; t < i; t++) c = (c * (n - t)) / (t + 1);
    s += c * 0.5 ** n;
  }
  return s;
}

describe('median', () => {
  it('takes the middle value, or the mean of the middle two, of the finite values', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([5, Number.NaN, 1, Number.POSITIVE_INFINITY, 3])).toBe(3);
    expect(median([])).toBeNull();
    expect(median([Number.NaN])).toBeNull();
  });
});

describe('medianInterval', () => {
  const ranks = (n: number) => Array.from({ length: n }, (_, i) => n - i); // n..1, unsorted on purpose

  it('takes the order statistics whose binomial coverage is the smallest still >= the level', () => {
    for (const n of [6, 7, 10, 21, 42, 63]) {
      const r = medianInterval(ranks(n))!;
      const j = r.lo; // the values are 1..n, so a value is its rank
      expect(r.hi).toBe(n + 1 - j);
      expect(r.coverage).toBeCloseTo(1 - 2 * binomBelow(n, j - 1), 12);
      expect(r.coverage).toBeGreaterThanOrEqual(0.95);
      // One rank further in would fall below 95 %.
      if (j + 1 <= (n + 1) / 2) expect(1 - 2 * binomBelow(n, j)).toBeLessThan(0.95);
    }
    // The textbook values: n = 21 gives [x(6), x(16)] at 97.3 %.
    const r21 = medianInterval(ranks(21))!;
    expect([r21.lo, r21.hi]).toEqual([6, 16]);
    expect(r21.coverage).toBeCloseTo(0.97340, 4);
  });

  it('narrows for a lower level, and falls back to [min, max] with its own coverage when n is small', () => {
    const wide = medianInterval(ranks(21), 0.95)!;
    const narrow = medianInterval(ranks(21), 0.5)!;
    expect(narrow.hi - narrow.lo).toBeLessThan(wide.hi - wide.lo);
    expect(narrow.coverage).toBeGreaterThanOrEqual(0.5);
    const five = medianInterval([2, 9, 4, 7, 5])!;
    expect([five.lo, five.hi]).toEqual([2, 9]);
    expect(five.coverage).toBeCloseTo(1 - 2 / 32, 12);
    expect(medianInterval([1.5])).toEqual({ lo: 1.5, hi: 1.5, coverage: 0 });
  });

  it('ignores non-finite values, returns null without any, and names a bad level', () => {
    expect(medianInterval([Number.NaN, Number.NEGATIVE_INFINITY])).toBeNull();
    expect(medianInterval([...ranks(6), Number.NaN])).toEqual(medianInterval(ranks(6)));
    expect(() => medianInterval([1, 2], 1)).toThrow(OptionError);
    expect(() => medianInterval([1, 2], 0)).toThrow(/level/);
  });
});
