/**
 * The medians every timing and summary in masksub reports, and the distribution-free interval
 * that says how far a median of noisy pairs can be trusted.
 *
 * Benchmarks on a shared VM report medians of interleaved pairs (single pairs range over
 * +-20 %); `medianInterval` gives the order-statistic confidence interval of such a median
 * (no assumption about the pairs' distribution beyond independence), so a ratio that sits on a
 * target's bar can be told apart from one that clears it.
 */
import { OptionError } from './errors.js';

/** The median of the finite values (the mean of the middle two for an even count); null if none. */
export function median(values: readonly number[]): number | null {
  const s = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return null;
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** The interval [lo, hi] covers the population median with probability at least `coverage`. */
export interface MedianInterval {
  lo: number;
  hi: number;
  /** The interval's exact coverage (binomial, at least the level asked for when n allows it). */
  coverage: number;
}

/**
 * The order-statistic confidence interval of the median at `level`: [x(j), x(n+1-j)] of the
 * sorted finite values, with the largest j whose coverage 1 - 2 P(Bin(n, 1/2) < j) is still at
 * least `level`. With too few values for that level (n < 6 at 0.95) it is [min, max] and its
 * coverage says how much less it is worth. Null without finite values.
 */
export function medianInterval(values: readonly number[], level = 0.95): MedianInterval | null {
  if (!(level > 0 && level < 1)) throw new OptionError('level', `must be in (0, 1), got ${level}`);
  const s = values.filter(Number.isFinite).sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return null;
  // [x(j), x(n+1-j)] misses the median when fewer than j values fall below it (or above):
  // coverage(j) = 1 - 2 P(X <= j - 1), X ~ Bin(n, 1/2). `below` is P(X <= j - 2) and `term`
  // P(X = j - 1) as j grows; float64 is ample for the pair counts a bench takes.
  let term = 0.5 ** n;
  let below = 0;
  let j = 1;
  let coverage = 1 - 2 * term; // j = 1: [min, max]
  for (let next = 2; next <= (n + 1) >> 1; next++) {
    below += term;
    term *= (n - next + 2) / (next - 1);
    const c = 1 - 2 * (below + term);
    if (c < level) break;
    j = next;
    coverage = c;
  }
  return { lo: s[j - 1], hi: s[n - j], coverage };
}
