import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { OptionError } from '@masksub/core';
import { accuracySpec, AXIS, comparisonSpec, learningRateSpec, lossSpec, renderSvg, SERIES, smooth } from './plots.js';
import { syntheticMetrics } from './synthetic.js';

const masksub = { name: 'vit-masksub', records: syntheticMetrics({ steps: 120, evalEvery: 40, masksub: true, seed: 3 }) };
const baseline = { name: 'vit-baseline', records: syntheticMetrics({ steps: 120, evalEvery: 40, masksub: false, seed: 4 }) };

/** Well-formed and renderable: librsvg (through sharp) parses it and finds the declared size. */
async function expectValidSvg(svg: string): Promise<void> {
  expect(svg.startsWith('<svg')).toBe(true);
  expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
  const meta = await sharp(Buffer.from(svg)).metadata();
  expect(meta.format).toBe('svg');
  expect(meta.width).toBeGreaterThan(300);
  expect(meta.height).toBeGreaterThan(200);
}

/** Points of each drawn line (vega labels line paths with aria-roledescription="line mark"). */
function linePoints(svg: string): number[] {
  const paths = svg.match(/<path[^>]*aria-roledescription="line mark"[^>]*d="[^"]*"/g) ?? [];
  return paths.map((p) => 1 + (p.slice(p.indexOf(' d="')).match(/L/g) ?? []).length);
}

describe('plots', () => {
  it('loss plot names main and sub loss and its axes', async () => {
    const svg = await renderSvg(lossSpec(masksub));
    await expectValidSvg(svg);
    for (const text of [SERIES.lossMain, SERIES.lossSub, AXIS.step, AXIS.loss, 'vit-masksub: training loss']) {
      expect(svg).toContain(`>${text}<`);
    }
    expect(linePoints(svg)).toEqual([120, 120]); // one point per logged step, per series
  });

  it('a baseline loss plot has no sub-loss series', async () => {
    const svg = await renderSvg(lossSpec(baseline));
    expect(svg).toContain(`>${SERIES.lossMain}<`);
    expect(svg).not.toContain(SERIES.lossSub);
  });

  it('accuracy plot shows top-1 and top-5, and is absent without evaluations', async () => {
    const spec = accuracySpec(masksub);
    expect(spec).not.toBeNull();
    const svg = await renderSvg(spec!);
    await expectValidSvg(svg);
    for (const text of [SERIES.top1, SERIES.top5, AXIS.accuracy, AXIS.step]) expect(svg).toContain(`>${text}<`);
    expect(accuracySpec({ name: 'x', records: masksub.records.filter((r) => r.type === 'train') })).toBeNull();
  });

  it('learning-rate plot uses exponent tick labels', async () => {
    const svg = await renderSvg(learningRateSpec(masksub));
    await expectValidSvg(svg);
    expect(svg).toContain(`>${AXIS.lr}<`);
    expect(svg).toContain('>1.0e-3<'); // the synthetic peak lr
  });

  it('comparison puts runs side by side with one legend of run names', async () => {
    const svg = await renderSvg(comparisonSpec([baseline, masksub], { smoothing: 0.6 }));
    await expectValidSvg(svg);
    for (const text of ['vit-baseline', 'vit-masksub', 'vit-baseline vs vit-masksub', 'training loss (EMA 0.6)', `eval ${SERIES.top1}`, AXIS.accuracy]) {
      expect(svg).toContain(`>${text}<`);
    }
    // baseline main + masksub main + masksub sub losses, two top-1 curves.
    expect(linePoints(svg).sort((a, b) => a - b)).toEqual([3, 3, 120, 120, 120]);
  });

  it('comparison refuses duplicate or missing runs', () => {
    expect(() => comparisonSpec([])).toThrow(OptionError);
    expect(() => comparisonSpec([masksub, masksub])).toThrow(/distinct/);
  });
});

describe('smooth', () => {
  it('is a debiased EMA that skips gaps', () => {
    expect(smooth([1, 2, 3], 0)).toEqual([1, 2, 3]);
    const s = smooth([2, null, 4], 0.5);
    expect(s[0]).toBeCloseTo(2); // debiased: the first point is not pulled toward 0
    expect(s[1]).toBeNull();
    expect(s[2]).toBeCloseTo((0.5 * 0.5 * 2 + 0.5 * 4) / (0.5 * 0.5 + 0.5));
    expect(smooth([Number.NaN, 1], 0.9)).toEqual([null, 1]);
    expect(() => smooth([1], 1)).toThrow(/smoothing/);
  });
});
