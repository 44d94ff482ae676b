/**
 * The weight schedule: how much the main and sub losses weigh, and the drop ratio over steps.
 * The paper uses (1/2, 1/2) and a constant r = 0.5.
 */
import { OptionError } from '../errors.js';
import { checkRatio } from './drop.js';

/** How the drop ratio moves from `start` to `end` (the trainer's `masksub.ratio.ramp` takes the same list). */
export const RAMPS = ['constant', 'linear', 'cosine'] as const;
export type Ramp = (typeof RAMPS)[number];

export interface RatioScheduleSpec {
  /** Ratio at the start (or the constant ratio). */
  start: number;
  /** Ratio reached after `steps` (ramps only). */
  end?: number;
  /** Steps of the ramp; afterwards the ratio stays at `end`. */
  steps?: number;
  ramp?: Ramp;
}

export interface WeightSchedule {
  /** Loss weights (main, sub) at a step. */
  weights(step: number): { main: number; sub: number };
  /** Drop ratio at a step. */
  ratio(step: number): number;
}

export function ratioSchedule(spec: number | RatioScheduleSpec): (step: number) => number {
  const s: RatioScheduleSpec = typeof spec === 'number' ? { start: spec } : spec;
  const ramp = s.ramp ?? (s.end === undefined ? 'constant' : 'linear');
  checkRatio(s.start, 'ratio.start');
  // Checked here too: an API caller's misspelt ramp would otherwise run as a cosine one.
  if (!RAMPS.includes(ramp)) throw new OptionError('ratio.ramp', `unknown ramp ${JSON.stringify(ramp)} (${RAMPS.join(', ')})`);
  if (ramp === 'constant') return () => s.start;
  if (s.end === undefined) throw new OptionError('ratio.end', `a ${ramp} ramp needs an end ratio`);
  checkRatio(s.end, 'ratio.end');
  const steps = s.steps ?? 0;
  if (!Number.isInteger(steps) || steps <= 0) throw new OptionError('ratio.steps', `a ${ramp} ramp needs steps > 0, got ${s.steps}`);
  const { start, end } = s;
  return (step) => {
    const t = Math.min(1, Math.max(0, step / steps));
    const f = ramp === 'linear' ? t : (1 - Math.cos(Math.PI * t)) / 2;
    return start + (end - start) * f;
  };
}

export function weightSchedule(opts: { ratio?: number | RatioScheduleSpec; mainWeight?: number; subWeight?: number } = {}): WeightSchedule {
  const main = opts.mainWeight ?? 0.5;
  const sub = opts.subWeight ?? 0.5;
  for (const [name, w] of [['mainWeight', main], ['subWeight', sub]] as const) {
    if (!Number.isFinite(w) || w < 0) throw new OptionError(name, `must be a finite number >= 0, got ${w}`);
  }
  const ratio = ratioSchedule(opts.ratio ?? 0.5);
  return { weights: () => ({ main, sub }), ratio };
}
