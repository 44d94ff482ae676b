/**
 * Study plots (vega-lite, rendered headless by report/plots.ts): the primary eval metric against
 * step per setting, a line at the mean over seeds with a band of ± one std; and the main
 * (clean-input) training loss the same way, from the curves stored in the cell summaries.
 */
import type { TopLevelSpec } from 'vega-lite';
import { AXIS, smooth } from '../report/plots.js';
import { stat } from './aggregate.js';
import type { CellSummary } from './summary.js';

interface BandPoint {
  setting: string;
  step: number;
  mean: number;
  lo: number;
  hi: number;
  n: number;
}

/** Mean and ± std over seeds at each step that the seeds share (same recipe: same steps). */
export function bandPoints(settings: string[], summaries: CellSummary[], pick: (s: CellSummary) => { step: number; value: number | null }[]): BandPoint[] {
  const out: BandPoint[] = [];
  for (const setting of settings) {
    const byStep = new Map<number, number[]>();
    for (const s of summaries.filter((c) => c.setting === setting)) {
      for (const p of pick(s)) {
        if (p.value === null || !Number.isFinite(p.value)) continue;
        const list = byStep.get(p.step) ?? [];
        list.push(p.value);
        byStep.set(p.step, list);
      }
    }
    for (const [step, values] of [...byStep.entries()].sort((a, b) => a[0] - b[0])) {
      const st = stat(values);
      const sd = st.std ?? 0;
      out.push({ setting, step, mean: st.mean!, lo: st.mean! - sd, hi: st.mean! + sd, n: st.n });
    }
  }
  return out;
}

function bandSpec(points: BandPoint[], title: string, yTitle: string): TopLevelSpec {
  const x = { field: 'step', type: 'quantitative' as const, title: AXIS.step, scale: { domainMin: 0 } };
  const color = { field: 'setting', type: 'nominal' as const, title: 'setting' };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    config: { font: 'DejaVu Sans, Helvetica, Arial, sans-serif', background: 'white', legend: { orient: 'bottom' as const, columns: 3 } },
    title,
    width: 560,
    height: 320,
    data: { values: points },
    layer: [
      { mark: { type: 'area' as const, opacity: 0.18 }, encoding: { x, y: { field: 'lo', type: 'quantitative' as const, title: yTitle, scale: { zero: false } }, y2: { field: 'hi' }, color } },
      { mark: { type: 'line' as const, strokeWidth: 1.6, point: points.length <= 80 }, encoding: { x, y: { field: 'mean', type: 'quantitative' as const, title: yTitle }, color } },
    ],
  };
}

export function metricBandSpec(settings: string[], summaries: CellSummary[], metric: string, seeds: number): TopLevelSpec {
  const points = bandPoints(settings, summaries, (s) => s.curves.eval.map((e) => ({ step: e.step, value: e.metrics[metric] ?? null })));
  return bandSpec(points, `eval ${metric} vs step (mean ± std over ${seeds} seed${seeds === 1 ? '' : 's'})`, metric === 'top1' || metric === 'top5' ? AXIS.accuracy : metric);
}

/** Per-step training losses are noisy: each seed's curve is EMA-smoothed before averaging. */
export function lossBandSpec(settings: string[], summaries: CellSummary[], seeds: number, smoothing = 0.6): TopLevelSpec {
  const points = bandPoints(settings, summaries, (s) => {
    const values = smooth(s.curves.train.map((p) => p.loss_main), smoothing);
    return s.curves.train.map((p, i) => ({ step: p.step, value: values[i] }));
  });
  return bandSpec(points, `training loss of the main (clean) pass, EMA ${smoothing} (mean ± std over ${seeds} seeds)`, AXIS.loss);
}
