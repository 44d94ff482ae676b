/**
 * Plausible metrics of a training run (warmup + cosine lr, decaying noisy loss, rising accuracy),
 * seeded, for the report's tests and for trying the report without training anything.
 */
import { Rng } from '@masksub/core';
import type { EvalRecord, MetricsRecord, TrainRecord } from './metrics.js';

export interface SyntheticRunOptions {
  steps: number;
  /** Evaluate every this many steps (and at the last step). */
  evalEvery: number;
  /** With a sub-model (MaskSub) or a baseline without one. */
  masksub: boolean;
  stepsPerEpoch?: number;
  peakLr?: number;
  /** Final top-1 in percent the accuracy curve approaches. */
  finalTop1?: number;
  /** Seconds per step, for `time` and `img_per_s` (batch 64). */
  secondsPerStep?: number;
  seed?: number;
}

export function syntheticMetrics(o: SyntheticRunOptions): MetricsRecord[] {
  const rng = new Rng(o.seed ?? 0);
  const stepsPerEpoch = o.stepsPerEpoch ?? 50;
  const peakLr = o.peakLr ?? 1e-3;
  const finalTop1 = o.finalTop1 ?? 80;
  const secondsPerStep = o.secondsPerStep ?? 1.5;
  const warmup = Math.max(1, Math.round(o.steps * 0.1));
  const records: MetricsRecord[] = [];
  for (let step = 1; step <= o.steps; step++) {
    const lr = step <= warmup ? (peakLr * step) / warmup : 0.5 * peakLr * (1 + Math.cos((Math.PI * (step - warmup)) / (o.steps - warmup)));
    const progress = step / o.steps;
    const lossMain = 0.4 + 1.9 * Math.exp(-4 * progress) + 0.05 * rng.normal();
    const lossSub = o.masksub ? lossMain + 0.25 * Math.exp(-2 * progress) + 0.05 * rng.normal() : null;
    const imgPerS = 64 / (secondsPerStep * (1 + 0.05 * rng.normal()));
    const train: TrainRecord = {
      type: 'train',
      step,
      epoch: step / stepsPerEpoch,
      lr,
      loss: lossSub === null ? lossMain : lossMain + lossSub,
      loss_main: lossMain,
      loss_sub: lossSub,
      ratio: o.masksub ? 0.5 : null,
      img_per_s: imgPerS,
      data_wait: null,
      time: step * secondsPerStep,
    };
    records.push(train);
    if (step % o.evalEvery === 0 || step === o.steps) {
      const top1 = finalTop1 * (1 - Math.exp(-5 * progress)) + rng.normal();
      const evalRecord: EvalRecord = {
        type: 'eval',
        step,
        epoch: step / stepsPerEpoch,
        top1,
        top5: Math.min(100, top1 + 15 * (1 - progress) + 10),
        loss: lossMain + 0.1,
      };
      records.push(evalRecord);
    }
  }
  return records;
}
