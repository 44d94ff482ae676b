import { describe, expect, it } from 'vitest';
import { OptionError } from '../errors.js';
import { constantLr, createSchedule, stepLr, warmupCosine, warmupLinear } from './schedule.js';

describe('schedules', () => {
  it('warm-up + cosine: key points', () => {
    const s = warmupCosine({ baseLr: 1e-3, warmupSteps: 10, totalSteps: 110, minLr: 1e-5, warmupInitLr: 1e-6 });
    expect(s(0)).toBeCloseTo(1e-6, 15);
    expect(s(5)).toBeCloseTo(1e-6 + (1e-3 - 1e-6) / 2, 15);
    expect(s(10)).toBeCloseTo(1e-3, 15); // end of warm-up: the peak
    expect(s(60)).toBeCloseTo((1e-3 + 1e-5) / 2, 15); // half way through the cosine
    expect(s(110)).toBeCloseTo(1e-5, 15);
    expect(s(500)).toBeCloseTo(1e-5, 15);
    for (let t = 10; t < 110; t++) expect(s(t + 1)).toBeLessThanOrEqual(s(t));
  });

  it('cosine without warm-up starts at the base lr', () => {
    const s = createSchedule({ kind: 'cosine', baseLr: 0.1, totalSteps: 4 });
    expect([0, 1, 2, 3, 4].map(s)).toEqual([0.1, 0.5 * 0.1 * (1 + Math.cos(Math.PI / 4)), 0.05 + 0.05 * Math.cos(Math.PI / 2), 0.5 * 0.1 * (1 + Math.cos((3 * Math.PI) / 4)), 0]);
  });

  it("linear decay is HF's get_linear_schedule_with_warmup (lr_lambda = step / warmup, then (total - step) / (total - warmup))", () => {
    const total = 10;
    const warmup = 2;
    const hf = (step: number) => 3e-5 * (step < warmup ? step / Math.max(1, warmup) : Math.max(0, (total - step) / Math.max(1, total - warmup)));
    const s = warmupLinear({ baseLr: 3e-5, totalSteps: total, warmupSteps: warmup });
    for (let t = 0; t <= 12; t++) expect(s(t)).toBeCloseTo(hf(t), 18);
    expect(createSchedule({ kind: 'linear', baseLr: 1, totalSteps: 4, minLr: 0.2 })(2)).toBeCloseTo(0.6, 15);
    expect(() => warmupLinear({ baseLr: 1, warmupSteps: 4, totalSteps: 4 })).toThrow(/totalSteps/);
  });

  it('constant and step', () => {
    const c = constantLr({ baseLr: 0.02, warmupSteps: 4 });
    expect([0, 2, 4, 1000].map(c)).toEqual([0, 0.01, 0.02, 0.02]);
    const st = stepLr({ baseLr: 1, stepSize: 3, gamma: 0.5 });
    expect([0, 2, 3, 5, 6, 9].map(st)).toEqual([1, 1, 0.5, 0.5, 0.25, 0.125]);
  });

  it('rejects bad options, naming them', () => {
    expect(() => warmupCosine({ baseLr: 1, warmupSteps: 10, totalSteps: 10 })).toThrow(/totalSteps/);
    expect(() => stepLr({ baseLr: 1, stepSize: 0 })).toThrow(OptionError);
    expect(() => constantLr({ baseLr: -1 })).toThrow(/'lr'/);
  });
});
