/**
 * Learning-rate schedules as plain functions of the optimizer step (0-based: the value used for
 * the first update is schedule(0)). Per-step rather than per-epoch so short fine-tuning runs
 * warm up smoothly.
 */
import { OptionError } from '../errors.js';

export type Schedule = (step: number) => number;

export interface WarmupOptions {
  /** Steps of linear warm-up from warmupInitLr to baseLr (0 = none). */
  warmupSteps?: number;
  /** Learning rate at step 0 of the warm-up (timm's warmup_lr_init). */
  warmupInitLr?: number;
}

/** The decays a run config can name without further parameters (train's optimizer.schedule). */
export const LR_SCHEDULES = ['cosine', 'linear', 'constant'] as const;
export type LrScheduleName = (typeof LR_SCHEDULES)[number];

export type ScheduleSpec =
  | ({ kind: 'cosine'; baseLr: number; totalSteps: number; minLr?: number } & WarmupOptions)
  | ({ kind: 'linear'; baseLr: number; totalSteps: number; minLr?: number } & WarmupOptions)
  | ({ kind: 'constant'; baseLr: number } & WarmupOptions)
  | ({ kind: 'step'; baseLr: number; stepSize: number; gamma?: number } & WarmupOptions);

function checkNonNegative(option: string, v: number): void {
  if (!(Number.isFinite(v) && v >= 0)) throw new OptionError(option, `must be a finite number >= 0, got ${v}`);
}

/** Wraps `after` with a linear warm-up; `after` receives the step counted from the warm-up's end. */
function withWarmup(baseLr: number, w: WarmupOptions, after: (stepAfterWarmup: number) => number): Schedule {
  const warmupSteps = w.warmupSteps ?? 0;
  const init = w.warmupInitLr ?? 0;
  checkNonNegative('warmupSteps', warmupSteps);
  checkNonNegative('warmupInitLr', init);
  return (step: number) => {
    const s = Math.max(0, step);
    if (s < warmupSteps) return init + ((baseLr - init) * s) / warmupSteps;
    return after(s - warmupSteps);
  };
}

/**
 * Linear warm-up, then half a cosine from baseLr (end of warm-up) to minLr (at totalSteps,
 * and after it).
 */
export function warmupCosine(o: DecayOptions): Schedule {
  return withDecay(o, (progress, minLr) => minLr + 0.5 * (o.baseLr - minLr) * (1 + Math.cos(Math.PI * progress)));
}

/** What a decaying schedule takes: the peak, the run's length, the floor, and the warm-up. */
type DecayOptions = { baseLr: number; totalSteps: number; minLr?: number } & WarmupOptions;

/** Warm-up, then `decay(progress in [0, 1], minLr)` over the steps after it (validated once here). */
function withDecay(o: DecayOptions, decay: (progress: number, minLr: number) => number): Schedule {
  const minLr = o.minLr ?? 0;
  const warmupSteps = o.warmupSteps ?? 0;
  checkNonNegative('lr', o.baseLr);
  checkNonNegative('minLr', minLr);
  if (!(Number.isInteger(o.totalSteps) && o.totalSteps > warmupSteps)) {
    throw new OptionError('totalSteps', `must be an integer > warmupSteps (${warmupSteps}), got ${o.totalSteps}`);
  }
  const decaySteps = o.totalSteps - warmupSteps;
  return withWarmup(o.baseLr, o, (t) => decay(Math.min(1, t / decaySteps), minLr));
}

/**
 * Linear warm-up, then a straight line from baseLr (end of warm-up) to minLr (at totalSteps, and
 * after it): HF transformers' get_linear_schedule_with_warmup (the Trainer default, run_glue)
 * when minLr is 0.
 */
export function warmupLinear(o: DecayOptions): Schedule {
  return withDecay(o, (progress, minLr) => minLr + (o.baseLr - minLr) * (1 - progress));
}

export function constantLr(o: { baseLr: number } & WarmupOptions): Schedule {
  checkNonNegative('lr', o.baseLr);
  return withWarmup(o.baseLr, o, () => o.baseLr);
}

/** baseLr * gamma^floor(t / stepSize), t counted from the end of warm-up (torch StepLR). */
export function stepLr(o: { baseLr: number; stepSize: number; gamma?: number } & WarmupOptions): Schedule {
  const gamma = o.gamma ?? 0.1;
  checkNonNegative('lr', o.baseLr);
  checkNonNegative('gamma', gamma);
  if (!(Number.isInteger(o.stepSize) && o.stepSize > 0)) {
    throw new OptionError('stepSize', `must be a positive integer, got ${o.stepSize}`);
  }
  return withWarmup(o.baseLr, o, (t) => o.baseLr * Math.pow(gamma, Math.floor(t / o.stepSize)));
}

export function createSchedule(spec: ScheduleSpec): Schedule {
  switch (spec.kind) {
    case 'cosine':
      return warmupCosine(spec);
    case 'linear':
      return warmupLinear(spec);
    case 'constant':
      return constantLr(spec);
    case 'step':
      return stepLr(spec);
    default: {
      const kind: never = spec;
      throw new OptionError('schedule', `unknown kind ${JSON.stringify((kind as { kind: unknown }).kind)} (cosine, linear, constant, step)`);
    }
  }
}
