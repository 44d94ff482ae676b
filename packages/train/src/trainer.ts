/**
 * The fine-tuning loop: checkpoint -> model -> withMaskSub -> optimizer, with data, progress,
 * metrics, evaluation, atomic checkpoints and exact resume. Everything random (data order,
 * augmentation, masks, dropout seeds) comes from seeded streams whose states are checkpointed,
 * so a killed run resumed from its last checkpoint reaches the same weights as one that was not.
 */
import { existsSync, mkdirSync, readdirSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { addGradients, type AdapterModel, type ArchitectureAdapter, backendMemoryLimit, backendMemoryLimitBytes, MEMORY_LIMIT_ENV, type BackendInfo, buildFromConfig, estimateStepMemory, fitsWithMargin, MEMORY_PLAN_MARGIN, clipGradNorm, createOptimizer, globalGradNormValue, hasSubPass, initBackend, loadPretrained, planMicroBatch, readConfig, type MaskSubTrainer, OptionError, type RngState, type SaveLayout, saveModel, tf, createSchedule, scaleGradients, withMaskSub } from '@masksub/core';
import { disposeCheckpoint, loadLatestCheckpoint, restoreVariables, saveCheckpoint, type JsonValue } from './checkpoint/checkpoint.js';
import { DEFAULT_LR, labelConfig, openTask, resolveNumLabels, taskKindOf, type TaskBatch, type TaskEval } from './tasks/index.js';
import { configToYaml, parseRunConfig, readConfigFile, resolveWarmupSteps, type RunConfig } from './config.js';
import { emaMetrics, ModelEma } from './ema.js';
import { MetricsWriter } from './report/metrics.js';
import { TrainingProgress } from './report/progress.js';
import { writeReport } from './report/report.js';
import { checkResumeChanges, configChanges, describeChanges, prepareFreshRunDir } from './run-guard.js';

export const RESOLVED_CONFIG = 'config.resolved.yaml';
/** The EMA model's folder in a run (beside `model/`). */
export const EMA_MODEL_DIR = 'model-ema';

export interface TrainRunOptions {
  /** Continue the run in `config.run.dir` from its last checkpoint. */
  resume?: boolean;
  /** Start afresh in a run folder that holds a previous run (its outputs are removed). */
  force?: boolean;
  /** Log sink for notes (backend, loading); default stderr. */
  log?: (message: string) => void;
  /** Progress stream (default stdout). */
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
}

export interface TrainRunResult {
  runDir: string;
  steps: number;
  backend: BackendInfo;
  final: TaskEval | null;
  /** The EMA model's final evaluation (train.ema_decay set and eval data given). */
  finalEma: TaskEval | null;
  /** The fine-tuned model as an HF folder. */
  modelDir: string;
  /** The EMA model as an HF folder (train.ema_decay set), beside `modelDir`. */
  emaModelDir: string | null;
  /** Training throughput in `unit`s (images or text examples) per second. */
  examplesPerSecond: number;
  unit: string;
  /** The metric that ranks runs (the task's first metric key). */
  metric: string | null;
}

/** The resolved config stored in a run folder (used by --resume). */
export function readRunConfig(runDir: string): RunConfig {
  const file = join(runDir, RESOLVED_CONFIG);
  if (!existsSync(file)) throw new OptionError('resume', `${runDir} has no ${RESOLVED_CONFIG}: not a masksub run folder`);
  return parseRunConfig(readConfigFile(file), file);
}

function modelIsConfigOnly(path: string): boolean {
  return path.endsWith('.json');
}

async function openModel(config: RunConfig, log: (m: string) => void): Promise<{ model: AdapterModel; adapter: ArchitectureAdapter; checkpointDir: string; layout: SaveLayout }> {
  // A new head (architecture) sizes itself from the data when num_labels is not given.
  const numLabels = await resolveNumLabels(config);
  // model_config: config.json keys overridden before the build, checked by the adapter's parser.
  const overrides = { configOverrides: config.model_config, configOverridesName: 'model_config' };
  if (modelIsConfigOnly(config.model)) {
    log(`model: ${config.model} (random initialisation, no pretrained weights)`);
    const built = buildFromConfig(numLabels === undefined ? config.model : withNumLabels(readConfig(config.model), numLabels), config.train.seed, { architecture: config.architecture, tokenizerDir: config.data.tokenizer, ...overrides });
    return { model: built.model, adapter: built.adapter, checkpointDir: dirname(config.model), layout: { kind: 'safetensors' } };
  }
  const loaded = await loadPretrained(config.model, { weights: config.weights, arch: config.arch, seed: config.train.seed, log, numLabels, architecture: config.architecture, tokenizerDir: config.data.tokenizer, ...overrides });
  log(`model: ${loaded.adapter.name} from ${loaded.weightsPath} (${loaded.format}, ${loaded.model.params.count().toLocaleString()} parameters)`);
  return { model: loaded.model, adapter: loaded.adapter, checkpointDir: loaded.dir, layout: loaded.layout };
}

/** A config.json with another label count (its id2label/label2id no longer apply). */
function withNumLabels(config: Record<string, unknown>, numLabels: number): Record<string, unknown> {
  const { id2label: _i, label2id: _l, ...rest } = config;
  return { ...rest, num_labels: numLabels };
}

/** The batch one optimizer update sees: micro-batch size times accumulation steps. */
export function effectiveBatchSize(config: RunConfig): number {
  return config.train.batch_size * config.train.accum_steps;
}

/**
 * The peak lr a run uses: optimizer.lr, else MAE's rule blr * effective batch / 256 from
 * optimizer.blr, else the task kind's default for a pretrained or a from-scratch model.
 */
export function resolveLearningRate(config: RunConfig): number {
  if (config.optimizer.lr !== undefined) return config.optimizer.lr;
  if (config.optimizer.blr !== undefined) return (config.optimizer.blr * effectiveBatchSize(config)) / 256;
  const defaults = DEFAULT_LR[taskKindOf(config)];
  return modelIsConfigOnly(config.model) ? defaults.scratch : defaults.finetune;
}

/** The data loader's and the mask RNG's states at an update boundary (what a checkpoint resumes from). */
interface StreamPosition {
  dataLoader: JsonValue;
  rng: RngState;
}

/** Runs `f`, reporting a library option's error under the run-config key that set it. */
function renameOption<T>(option: string, key: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof OptionError && e.option === option) throw new OptionError(key, e.message.replace(`option '${option}': `, ''));
    throw e;
  }
}

/**
 * Trains one run. A fresh start that fails before its first update (a model or data path that
 * does not open, a step that does not fit the memory limit, a first update that diverges) takes
 * back the files it wrote, and the run folder when it made it: the corrected command can then
 * reuse the folder without --force, and nothing of a run was lost (there was none).
 */
export async function trainRun(input: RunConfig, options: TrainRunOptions = {}): Promise<TrainRunResult> {
  const start: StartRecord = { written: [], updated: false };
  const madeDir = !options.resume && !existsSync(input.run.dir);
  try {
    return await runTraining(input, options, start);
  } catch (e) {
    if (!options.resume && !start.updated) {
      for (const file of start.written) rmSync(file, { force: true });
      if (madeDir && existsSync(input.run.dir) && readdirSync(input.run.dir).length === 0) rmdirSync(input.run.dir);
    }
    throw e;
  }
}

/** What a start has written so far (the files a failed fresh start removes) and whether it has made an update. */
interface StartRecord {
  written: string[];
  updated: boolean;
}

async function runTraining(input: RunConfig, options: TrainRunOptions, start: StartRecord): Promise<TrainRunResult> {
  const log = options.log ?? ((m: string) => process.stderr.write(`${m}\n`));
  const runDir = input.run.dir;
  let config = input;
  if (options.resume) {
    const stored = readRunConfig(runDir);
    // The stored recipe wins; only where and how to report may change on resume.
    config = { ...stored, run: { ...stored.run, quiet: input.run.quiet, backend: input.run.backend ?? stored.run.backend, log_every: input.run.log_every } };
  }
  if (!options.resume) prepareFreshRunDir(runDir, options.force ?? false, RESOLVED_CONFIG);
  const backend = await initBackend({ prefer: config.run.backend, log });
  mkdirSync(runDir, { recursive: true });
  if (!options.resume) {
    writeFileSync(join(runDir, RESOLVED_CONFIG), configToYaml(config));
    start.written.push(join(runDir, RESOLVED_CONFIG));
  }

  const { model, adapter, checkpointDir, layout } = await openModel(config, log);
  const task = await openTask({ config, model, adapter, checkpointDir });
  const perEpoch = task.batchesPerEpoch;
  const accum = config.train.accum_steps;
  // Steps count optimizer updates; an epoch is perEpoch micro-batches, perEpoch / accum updates.
  const totalSteps = config.train.steps ?? Math.ceil(((config.train.epochs ?? 1) * (perEpoch ?? 0)) / accum);
  if (!totalSteps) throw new OptionError('train.epochs', `cannot turn epochs into steps: ${task.description} has no known size; give train.steps`);

  const o = config.optimizer;
  // Layer ids and no-decay parameters come from the model (paramGroups), not from config keys.
  const groups = model.paramGroups?.();
  if (o.layer_decay !== null && o.layer_decay < 1 && !groups) {
    throw new OptionError('optimizer.layer_decay', `the ${model.architecture} model does not declare its parameter groups (paramGroups), so no parameter has a layer to decay by`);
  }
  const optimizer = createOptimizer(
    { kind: o.kind, weightDecay: o.weight_decay, betas: o.betas, eps: o.eps, momentum: o.momentum, nesterov: o.nesterov },
    model.params.trainable(),
    { groups, layerDecay: o.layer_decay ?? undefined },
  );
  const lrAt = createSchedule({ kind: o.schedule, baseLr: resolveLearningRate(config), totalSteps, minLr: o.min_lr, warmupInitLr: o.warmup_lr, warmupSteps: resolveWarmupSteps(config, perEpoch ? perEpoch / accum : null, totalSteps, log) });
  const m = config.masksub;
  const trainer: MaskSubTrainer = renameOption('targetThreshold', 'train.bce_target_thresh', () => withMaskSub(model, {
    variant: m.variant,
    drop: m.drop,
    ratio: m.ramp === 'constant' || m.ratio === undefined ? m.ratio : { start: m.ratio, end: m.ratio_end ?? m.ratio, steps: m.ratio_steps ?? 1, ramp: m.ramp },
    mainWeight: m.main_weight,
    subWeight: m.sub_weight,
    loss: config.train.loss,
    targetThreshold: config.train.bce_target_thresh,
    thresholdScope: config.train.bce_target_thresh_on,
    seed: config.train.seed + 1,
  }));

  // Started from the weights training begins with (pretrained or initialised), as timm's ModelEmaV2.
  const ema = config.train.ema_decay !== undefined ? new ModelEma(config.train.ema_decay, model.params.variables) : null;

  let step = 0;
  if (options.resume) {
    const ckpt = await loadLatestCheckpoint(runDir, { log });
    if (!ckpt) throw new OptionError('resume', `${runDir} has no complete checkpoint to resume from`);
    if (ckpt.config) {
      try {
        const changes = checkResumeChanges(configChanges(ckpt.config, config), `${join(runDir, RESOLVED_CONFIG)} (edited since ${ckpt.dir} was saved)`);
        if (changes.length) log(`resume: applying ${describeChanges(changes)}`);
      } catch (e) {
        disposeCheckpoint(ckpt);
        throw e;
      }
    }
    restoreVariables(model.params.variables, ckpt.model, ckpt.dir);
    if (ema) {
      if (!ckpt.ema) {
        disposeCheckpoint(ckpt);
        throw new OptionError('train.ema_decay', `${ckpt.dir} holds no model EMA, so the run cannot continue one`);
      }
      ema.restore(ckpt.ema, ckpt.dir);
    }
    if (ckpt.optimizer) optimizer.setState(ckpt.optimizer);
    if (ckpt.rng.masksub) trainer.rng.setState(ckpt.rng.masksub);
    if (ckpt.dataLoader) task.restore(ckpt.dataLoader);
    step = ckpt.step;
    log(`resumed ${runDir} at step ${step} from ${ckpt.dir}`);
    disposeCheckpoint(ckpt);
  }

  const metrics = new MetricsWriter(runDir, options.resume ? { resumeStep: step } : {});
  if (!options.resume) start.written.push(metrics.file);
  const progress = new TrainingProgress({ totalSteps, startStep: step, quiet: config.run.quiet || undefined, logEvery: config.run.log_every, stream: options.stream });
  const checkpoint = async (at: StreamPosition) => {
    const opt = optimizer.getState();
    await saveCheckpoint(
      runDir,
      {
        step,
        epoch: task.epoch,
        model: model.params.variables,
        ...(ema ? { ema: ema.tensors } : {}),
        optimizer: opt,
        rng: { masksub: at.rng },
        dataLoader: at.dataLoader,
        config: config as unknown as JsonValue,
      },
      { keepLast: config.run.keep_checkpoints, requireFinite: true },
    );
    for (const t of opt.tensors.values()) t.dispose();
  };
  /** Evaluates the live weights and, with EMA, the EMA weights (logged as ema_<metric>). */
  const runEval = async (): Promise<{ live: TaskEval; ema: TaskEval | null } | null> => {
    const r = await task.evaluate(model);
    if (!r) return null;
    const e = ema ? await ema.swapIn(() => task.evaluate(model)) : null;
    metrics.logEval({ step, epoch: epochAt(step), ...r.metrics, ...(e ? emaMetrics(e.metrics) : {}) });
    progress.log(`eval step ${step}: ${r.summary}${e ? `\neval step ${step} (EMA): ${e.summary}` : ''}`);
    return { live: r, ema: e };
  };
  // Epochs as micro-batches seen (each update consumes accum_steps of them).
  const epochAt = (s: number) => (perEpoch ? (s * accum) / perEpoch : task.epoch);

  const batches = task.batches();
  let intervalImages = 0;
  let intervalStart = performance.now();
  // Time spent awaiting the next batch: the step loop's share of waiting for the input pipeline.
  let intervalWait = 0;
  let memoryChecked = !config.run.memory_check || backendMemoryLimitBytes() === null;
  let totalImages = 0;
  const runStart = performance.now();
  const hasSub = hasSubPass(trainer.variant);
  // Where the streams stood after the last update: a diverged update is skipped, and the
  // checkpoint of the last finite step must resume from exactly there.
  let position: StreamPosition = { dataLoader: task.state(), rng: trainer.rng.getState() };
  let lastCheckpointStep = options.resume ? step : -1;
  // Whatever leaves the loop (the end, the memory check, any error) stops the loader: its worker
  // thread would otherwise keep the process alive after the error was reported.
  try {
    training: while (step < totalSteps) {
      const lr = lrAt(step);
      // One optimizer update: accum_steps micro-batches, each main then sub pass (as the official
      // MAE/Swin accum_iter loops), their gradients averaged, as one batch of accum_steps times the size.
      let sum: Map<string, tf.Tensor> | null = null;
      const losses = { loss: 0, main: 0, sub: 0 };
      let ratio = 0;
      let size = 0;
      for (let micro = 0; micro < accum; micro++) {
        const waitStart = performance.now();
        const next = await batches.next();
        intervalWait += performance.now() - waitStart;
        if (next.done) {
          if (sum) tf.dispose([...sum.values()]);
          break training;
        }
        const batch = next.value;
        if (!memoryChecked) {
          memoryChecked = true;
          try {
            // The optimizer (its state created with it) exists by now: the probes count it.
            // Accumulated gradients exist for trainable variables only.
            await checkStepFits(trainer, batch, model.params.countTrainable(), config.train.batch_size, accum, log);
          } catch (e) {
            tf.dispose(batch.tensors);
            throw e;
          }
        }
        const r = trainer.computeGradients({ inputs: batch.inputs, targets: batch.targets }, step);
        tf.dispose([...batch.tensors, r.mainLogits, ...(r.subLogits ? [r.subLogits] : [])]);
        sum = sum ? addGradients(sum, r.grads) : r.grads;
        losses.loss += r.loss / accum;
        losses.main += r.lossMain / accum;
        losses.sub += r.lossSub / accum;
        ratio = r.ratio;
        size += batch.size;
      }
      let grads = accum > 1 ? scaleGradients(sum!, 1 / accum) : sum!;
      // Checked before the update, as a loss scaler does: a non-finite loss or gradient never
      // reaches the weights (or the optimizer's moments).
      const gradNorm = Number.isFinite(losses.loss) ? globalGradNormValue(grads) : Number.NaN;
      if (!Number.isFinite(losses.loss) || !Number.isFinite(gradNorm)) {
        tf.dispose([...grads.values()]);
        if (step > 0 && lastCheckpointStep !== step) await checkpoint(position);
        const what = Number.isFinite(losses.loss) ? `the gradient norm is ${gradNorm} (loss ${losses.loss})` : `the loss is ${losses.loss}`;
        throw new OptionError(
          'optimizer.lr',
          `update ${step + 1} diverged: ${what}. The update was skipped and the run stopped; ${step > 0 ? `checkpoints/latest holds step ${step}, the last finite one` : 'no update had been made'}. ` +
            `Likely causes: the learning rate is too high (optimizer.lr ${o.lr !== undefined ? o.lr : `unset, resolved to ${resolveLearningRate(config)}`}, ${lr} at this step; lower it, or add warm-up or optimizer.clip_grad), or bad data (NaN/Inf inputs or targets in ${task.description})`,
        );
      }
      if (o.clip_grad) {
        const clipped = clipGradNorm(grads, o.clip_grad, gradNorm);
        tf.dispose([...grads.values()]);
        grads = clipped.grads;
      }
      optimizer.step(grads, lr);
      start.updated = true;
      tf.dispose([...grads.values()]);
      ema?.update();
      step++;
      position = { dataLoader: task.state(), rng: trainer.rng.getState() };
      intervalImages += size;
      totalImages += size;
      const elapsedMs = performance.now() - intervalStart;
      const imgPerS = intervalImages / Math.max(elapsedMs / 1000, 1e-9);
      const dataWait = intervalWait / Math.max(elapsedMs, 1e-9);
      progress.update({ step, epoch: epochAt(step), loss_main: losses.main, loss_sub: hasSub ? losses.sub : null, lr, img_per_s: imgPerS, data_wait: dataWait });
      if (step % config.run.log_every === 0 || step === totalSteps) {
        metrics.logTrain({ step, epoch: epochAt(step), lr, loss: losses.loss, loss_main: losses.main, loss_sub: hasSub ? losses.sub : null, ratio: trainer.variant !== 'none' ? ratio : null, img_per_s: imgPerS, data_wait: dataWait });
        intervalImages = 0;
        intervalWait = 0;
        intervalStart = performance.now();
      }
      if (config.run.eval_every && step % config.run.eval_every === 0 && step < totalSteps) await runEval();
      if (step % config.run.checkpoint_every === 0 || step === totalSteps) {
        await checkpoint(position);
        lastCheckpointStep = step;
      }
    }
  } finally {
    await batches.return(undefined);
  }
  progress.stop();
  const finalEval = await runEval();
  const modelDir = join(runDir, 'model');
  // The data's class names travel with the head (id2label / label2id), as an HF fine-tune saves them.
  const labels = labelConfig(task.labelNames, model.numClasses);
  // run.model_format 'source': a .pth checkpoint is written back as that file, under its own names.
  const saveOptions = config.run.model_format === 'source' ? { layout } : {};
  saveModel(model, modelDir, labels, saveOptions);
  task.completeFolder(modelDir);
  const emaModelDir = ema ? join(runDir, EMA_MODEL_DIR) : null;
  if (ema && emaModelDir) {
    await ema.swapIn(() => saveModel(model, emaModelDir, labels, saveOptions));
    task.completeFolder(emaModelDir);
    ema.dispose();
  }
  metrics.close();
  await writeReport(runDir);
  const examplesPerSecond = totalImages / Math.max((performance.now() - runStart) / 1000, 1e-9);
  optimizer.dispose();
  model.dispose();
  return { runDir, steps: step, backend, final: finalEval?.live ?? null, finalEma: finalEval?.ema ?? null, modelDir, emaModelDir, examplesPerSecond, unit: task.unit, metric: task.metricKeys[0] ?? null };
}

/**
 * Refuses, before the first update, a step whose measured memory exceeds the backend's limit
 * (the 32-bit wasm heap): at that size the heap grows until the process crawls or is killed.
 */
async function checkStepFits(trainer: MaskSubTrainer, batch: TaskBatch, parameters: number, batchSize: number, accum: number, log: (m: string) => void): Promise<void> {
  const memoryLimit = backendMemoryLimit();
  if (memoryLimit === null) return;
  const limit = memoryLimit.bytes;
  const estimate = await estimateStepMemory(trainer, { inputs: batch.inputs, targets: batch.targets }, { limitBytes: limit });
  // With train.accum_steps the gradient sum is held beside every micro-batch's step.
  const accumulationBytes = 4 * parameters;
  const stepBytes = estimate.peakBytes + (accum > 1 ? accumulationBytes : 0);
  // GiB to two places, MiB or KiB below (a small model's gradient sum would read 0.00 GiB).
  const size = (b: number) => (b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : b >= 2 ** 20 ? `${Math.round(b / 2 ** 20)} MiB` : `${Math.ceil(b / 2 ** 10)} KiB`);
  log(
    `memory: a step at batch ${batch.size} needs about ${size(stepBytes)} (measured at ${estimate.probes.map((p) => p.examples).join(', ')} examples` +
      `${accum > 1 ? `, with the ${size(accumulationBytes)} gradient sum of train.accum_steps` : ''}; the backend holds ${size(limit)})`,
  );
  if (fitsWithMargin(stepBytes, limit)) return;
  const total = batchSize * accum;
  // The heap a step uses is more than the tensor memory it holds (fragmentation, the wasm
  // module's own allocations): a step is planned only with MEMORY_PLAN_MARGIN of headroom, and
  // the message says so when that is what failed.
  const fromEnv = memoryLimit.source === 'env';
  const wayOut = fromEnv ? `raise ${MEMORY_LIMIT_ENV}` : 'use @tensorflow/tfjs-node (run.backend: tensorflow), which has no such limit';
  const limitText = fromEnv ? `the ${size(limit)} ${MEMORY_LIMIT_ENV} allows` : `the ${size(limit)} the wasm backend can address`;
  const needs = `about ${size(stepBytes)} of tensor memory${stepBytes <= limit ? ` (${size(stepBytes * (1 + MEMORY_PLAN_MARGIN))} with the ${Math.round(100 * MEMORY_PLAN_MARGIN)} % headroom the estimate needs)` : ''}`;
  const plan = planMicroBatch(estimate, { limitBytes: limit, totalExamples: total, accumulationBytes });
  const micro = plan.microBatch;
  if (plan.fitsExamples === 0) {
    throw new OptionError(
      'train.batch_size',
      `a training step needs ${needs} at batch ${batchSize}, and even one example per micro-batch does not fit ${limitText}. ` +
        `${wayOut.charAt(0).toUpperCase()}${wayOut.slice(1)}, or use a smaller model. (run.memory_check: false skips this check.)`,
    );
  }
  throw new OptionError(
    'train.batch_size',
    `a training step at batch ${batchSize} needs ${needs}, more than ${limitText}. ` +
      `Run the same batch as micro-batches: train.batch_size ${micro} with train.accum_steps ${total / micro} (the same ${total} examples per update), ` +
      `or ${wayOut}. (run.memory_check: false skips this check.)`,
  );
}
