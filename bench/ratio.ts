/**
 * How the bench reads a MaskSub / standard ratio from interleaved pairs: the median of the pair
 * ratios and its 95 % order-statistic interval (`medianInterval`), for masksub's side and
 * PyTorch's alike, and whether a run resolves a target's bar at all. Single pairs on this VM
 * range over +-20 %, so a median of 21 pairs moves by a few hundredths from run to run; the
 * interval says by how much this run's could, and a bar inside it is "not resolved", not met.
 */
import { median, medianInterval } from '@masksub/core/base';

export interface PairedRatio {
  /** The median of the pair ratios. */
  ratio: number;
  /** Its 95 % interval [lo, hi] (distribution-free), or null without pairs. */
  ci95: [number, number] | null;
}

export function pairedRatio(pairRatios: readonly number[]): PairedRatio {
  const r = medianInterval(pairRatios, 0.95);
  return { ratio: median(pairRatios) ?? Number.NaN, ci95: r ? [r.lo, r.hi] : null };
}

export type Verdict = 'met' | 'missed' | 'not resolved';

/** `value` <= `bar`, judged on its interval: met below it, missed above it, else not resolved. */
export function againstBar(value: PairedRatio, bar: number): Verdict {
  if (value.ci95 === null) return value.ratio <= bar ? 'met' : 'missed';
  if (value.ci95[1] <= bar) return 'met';
  if (value.ci95[0] > bar) return 'missed';
  return 'not resolved';
}

/**
 * masksub's ratio against PyTorch's + `slack` (target 2's clause), both uncertain: met when even
 * masksub's upper end is within PyTorch's lower end + slack, missed when masksub's lower end is
 * above PyTorch's upper end + slack, not resolved in between.
 */
export function againstPyTorch(ours: PairedRatio, theirs: PairedRatio, slack: number): Verdict {
  const [oLo, oHi] = ours.ci95 ?? [ours.ratio, ours.ratio];
  const [tLo, tHi] = theirs.ci95 ?? [theirs.ratio, theirs.ratio];
  if (oHi <= tLo + slack) return 'met';
  if (oLo > tHi + slack) return 'missed';
  return 'not resolved';
}

export const fmtInterval = (ci: [number, number] | null | undefined, digits = 2): string =>
  ci ? `${ci[0].toFixed(digits)}-${ci[1].toFixed(digits)}` : '-';
