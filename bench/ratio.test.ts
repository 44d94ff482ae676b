import { describe, expect, it } from 'vitest';
import { againstBar, againstPyTorch, fmtInterval, pairedRatio } from './ratio.js';

describe('pairedRatio', () => {
  it('is the median of the pair ratios with the order-statistic 95 % interval', () => {
    const pairs = Array.from({ length: 21 }, (_, i) => 1.4 + i * 0.01); // 1.40 .. 1.60
    const r = pairedRatio(pairs.reverse());
    expect(r.ratio).toBeCloseTo(1.5, 12);
    expect(r.ci95![0]).toBeCloseTo(1.45, 12); // x(6)
    expect(r.ci95![1]).toBeCloseTo(1.55, 12); // x(16)
    expect(pairedRatio([])).toEqual({ ratio: Number.NaN, ci95: null });
  });
});

describe('againstBar', () => {
  it('is met below the interval, missed above it, and not resolved inside it', () => {
    expect(againstBar({ ratio: 1.45, ci95: [1.42, 1.48] }, 1.5)).toBe('met');
    expect(againstBar({ ratio: 1.55, ci95: [1.52, 1.58] }, 1.5)).toBe('missed');
    expect(againstBar({ ratio: 1.49, ci95: [1.46, 1.53] }, 1.5)).toBe('not resolved');
    expect(againstBar({ ratio: 1.5, ci95: [1.47, 1.5] }, 1.5)).toBe('met'); // the bar is inclusive
  });

  it('falls back to the median without an interval', () => {
    expect(againstBar({ ratio: 1.49, ci95: null }, 1.5)).toBe('met');
    expect(againstBar({ ratio: 1.51, ci95: null }, 1.5)).toBe('missed');
  });
});

describe('againstPyTorch', () => {
  const torch = { ratio: 1.45, ci95: [1.42, 1.48] as [number, number] };
  it("is met when masksub's upper end is within PyTorch's lower end + the slack", () => {
    expect(againstPyTorch({ ratio: 1.44, ci95: [1.43, 1.47] }, torch, 0.05)).toBe('met');
  });
  it("is missed when masksub's lower end is beyond PyTorch's upper end + the slack", () => {
    expect(againstPyTorch({ ratio: 1.6, ci95: [1.54, 1.66] }, torch, 0.05)).toBe('missed');
  });
  it('is not resolved when the intervals leave it open, and uses medians without intervals', () => {
    expect(againstPyTorch({ ratio: 1.5, ci95: [1.46, 1.55] }, torch, 0.05)).toBe('not resolved');
    expect(againstPyTorch({ ratio: 1.49, ci95: null }, { ratio: 1.45, ci95: null }, 0.05)).toBe('met');
    expect(againstPyTorch({ ratio: 1.51, ci95: null }, { ratio: 1.45, ci95: null }, 0.05)).toBe('missed');
  });
});

describe('fmtInterval', () => {
  it('prints lo-hi, or a dash without an interval', () => {
    expect(fmtInterval([1.4779, 1.5904])).toBe('1.48-1.59');
    expect(fmtInterval(null)).toBe('-');
  });
});
