/**
 * One case of the real-size bench (bench/arch/big.ts), run in a child process of its own:
 *   tsx --conditions=source bench/arch/big-case.ts <arch> <effective batch> <standard|masksub> <timed updates>
 * It plans the update as the largest micro-batch that fits the backend's memory (core's
 * estimateStepMemory + planMicroBatch, the trainer's own check), runs one warm-up and the timed
 * updates with gradient accumulation (core's addGradients / scaleGradients: one optimizer update
 * per effective batch, as train.accum_steps), and prints one JSON line (BigCaseResult).
 * A case that cannot fit even at micro-batch 1 prints status 'does-not-fit' without stepping.
 * The MaskSub case also times a standard update (the same model, micro-batches and optimizer)
 * before each of its own, and reports the median of the pairs' ratios: this VM's speed drifts by
 * a quarter within minutes, and two cases timed one after the other in two processes carry that
 * drift into their ratio (ViT-B/16 batch 8 at 1c7ab64: 1.64 from the two processes' medians,
 * 1.42-1.59 in alternated pairs a few minutes later).
 *
 * Why a process per case: the wasm heap only grows, so in one long process the second case's RSS
 * and heap readings would be the first case's high-water mark; a fresh process measures each
 * case's own peak over its own pre-model RSS.
 */
import {
  addGradients,
  backendMemoryLimitBytes,
  createOptimizer,
  estimateStepMemory,
  initBackend,
  median,
  planMicroBatch,
  scaleGradients,
  tf,
  wasmHeapBytes,
  withMaskSub,
  type Batch,
} from '@masksub/core';
import { BIG_ARCHS, type BigCaseResult } from './big-spec.js';

const [archName, batchArg, variantArg, updatesArg] = process.argv.slice(2);
const spec = BIG_ARCHS[archName];
if (spec === undefined) throw new Error(`big-case: unknown architecture '${archName}' (known: ${Object.keys(BIG_ARCHS).join(', ')})`);
const batchSize = Number(batchArg);
const masksub = variantArg === 'masksub';
const updates = Number(updatesArg);
if (!(batchSize >= 1 && updates >= 1 && (masksub || variantArg === 'standard'))) throw new Error(`big-case: usage: <arch> <batch> <standard|masksub> <updates>, got ${process.argv.slice(2).join(' ')}`);

const info = await initBackend({ prefer: 'wasm', log: () => {} });
if (info.name !== 'wasm') throw new Error(`big-case: needs the wasm backend, got ${info.name}`);
const mib = (b: number) => b / 2 ** 20;
// Growth over the process before the model exists (backend and modules loaded), as compare.ts.
const rss0 = process.memoryUsage().rss;
let peakRss = rss0;
let peakTensorBytes = 0;
const sample = () => {
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
  peakTensorBytes = Math.max(peakTensorBytes, tf.memory().numBytes);
};

const w = spec.make(batchSize);
const parameters = w.model.params.countTrainable();
const standardTrainer = withMaskSub(w.model, { variant: 'none', seed: 1 });
const trainer = masksub ? withMaskSub(w.model, { variant: 'masksub', seed: 1, ...spec.masksub }) : standardTrainer;
const optimizer = createOptimizer(spec.optimizer, w.model.params.trainable());
const rows = (b: Batch, start: number, n: number): Batch =>
  tf.tidy(() => ({
    inputs: Object.fromEntries(Object.entries(b.inputs).map(([k, t]) => [k, tf.slice(t, start, n)])) as Batch['inputs'],
    targets: { labels: tf.slice((b.targets as { labels: tf.Tensor1D }).labels, start, n) },
  }));

const limit = backendMemoryLimitBytes() ?? 2 ** 32;
// As the trainer: probed on the whole batch (after one example, no probe larger than is safe).
// The optimizer exists (its moments are created with it): the probes count them.
const estimate = await estimateStepMemory(trainer, w.batch, { limitBytes: limit });
const plan = planMicroBatch(estimate, { limitBytes: limit, totalExamples: batchSize, accumulationBytes: 4 * parameters });
const base: BigCaseResult = {
  status: 'ok',
  arch: archName,
  batch: batchSize,
  variant: masksub ? 'masksub' : 'standard',
  parameters,
  micro_batch: plan.microBatch,
  accum_steps: plan.accumSteps,
  planned_step_mib: mib(plan.stepBytes),
  limit_mib: mib(limit),
  ms_per_update: null,
  ms_per_update_all: [],
  peak_rss_mib: null,
  heap_high_water_mib: null,
  peak_tensor_mib: null,
};
if (plan.fitsExamples === 0) {
  console.log(JSON.stringify({ ...base, status: 'does-not-fit', message: `a step needs about ${mib(plan.stepBytes).toFixed(0)} MiB even at micro-batch 1, more than the ${mib(limit).toFixed(0)} MiB the wasm heap can address; use tfjs-node (run.backend: tensorflow)` }));
  process.exit(0);
}
const micros = Array.from({ length: plan.accumSteps }, (_, k) => rows(w.batch, k * plan.microBatch, plan.microBatch));
const lr = spec.lr;
/** Untimed updates before the timed ones (see below). */
const WARMUP_UPDATES = 2;
const update = (i: number, stepper = trainer) => {
  let sum: Map<string, tf.Tensor> | null = null;
  for (const mb of micros) {
    const r = stepper.computeGradients(mb, i);
    tf.dispose([r.mainLogits, ...(r.subLogits ? [r.subLogits] : [])]);
    sum = sum ? addGradients(sum, r.grads) : r.grads;
    sample();
  }
  const grads = plan.accumSteps > 1 ? scaleGradients(sum!, 1 / plan.accumSteps) : sum!;
  optimizer.step(grads, lr);
  tf.dispose([...grads.values()]);
  sample();
};
// Two untimed updates first, so the timed ones run on a settled heap. Until 3943d75 the first
// update's optimizer step gave every parameter and moment a new block, and the second update's
// passes grew the heap again onto pages touched for the first time (BERT-base batch 8 standard,
// the heap after each update, at 64b2c26: 2,558, 3,006, 3,184 MiB, then steady; those updates
// took 6.1, 6.3, 5.4, then 5.0 and 5.4 s); with one warm-up update the first timed one was the
// slowest in 7 of 8 cases. AdamW now updates in place, but the twins keep the same warm-up.
// (A standard step never needs more memory than the MaskSub step at the same micro-batch: it is
// that step's main pass.)
for (let i = 0; i < WARMUP_UPDATES; i++) update(0);
if (masksub) update(0, standardTrainer);
const times: number[] = [];
const pairedStandard: number[] = [];
const timed = (i: number, stepper = trainer): number => {
  const t0 = performance.now();
  update(i, stepper);
  return performance.now() - t0;
};
for (let i = 1; i <= updates; i++) {
  if (masksub) pairedStandard.push(timed(i, standardTrainer));
  times.push(timed(i));
}
console.log(
  JSON.stringify({
    ...base,
    ms_per_update: median(times)!,
    ms_per_update_all: times,
    ...(masksub ? { paired_standard_ms: pairedStandard, masksub_ratio_paired: median(times.map((t, k) => t / pairedStandard[k]))! } : {}),
    peak_rss_mib: mib(peakRss - rss0),
    heap_high_water_mib: mib(wasmHeapBytes() ?? 0),
    peak_tensor_mib: mib(peakTensorBytes),
  } satisfies BigCaseResult),
);
tf.dispose(micros.flatMap((b) => [...Object.values(b.inputs), (b.targets as { labels: tf.Tensor1D }).labels]));
optimizer.dispose();
w.dispose();
