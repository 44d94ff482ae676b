/**
 * The fine-tuning loop: checkpoint -> model -> withMaskSub -> optimizer, with data, progress,
 * metrics, evaluation, atomic checkpoints and exact resume. Everything random (data order,
 * augmentation, masks, dropout seeds) comes from seeded streams whose states are checkpointed,
 * so a killed run resumed from its last checkpoint reaches the same weights as one that was not.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type AdapterModel, type BackendInfo, buildFromConfig, clipGradNorm, createOptimizer, hasSubPass, initBackend, loadPretrained, type MaskSubTrainer, OptionError, saveModel, tf, warmupCosine, withMaskSub, writeFileAtomic } from '@masksub/core';
import { disposeCheckpoint, loadLatestCheckpoint, restoreVariables, saveCheckpoint, type JsonValue } from './checkpoint/checkpoint.js';
import { configToYaml, parseRunConfig, readConfigFile, type RunConfig } from './config.js';
import { DataLoader } from './data/loader.js';
import { recipeLoaderOptions } from './data/recipe-augment.js';
import { openDataSpec } from './data/spec.js';
import type { AnyImageDataset, ImageBatch, LoaderState } from './data/types.js';
import { evaluate, type EvalResult } from './evaluate.js';
import { MetricsWriter } from './report/metrics.js';
import { TrainingProgress } from './report/progress.js';
import { writeReport } from './report/report.js';
import { limitDataset } from './subset.js';
import { imageProcessorType, preprocessForModel } from './model-preprocess.js';
import { preprocessSpecToHf } from './data/preprocess.js';
import { checkResumeChanges, configChanges, describeChanges, prepareFreshRunDir } from './run-guard.js';

export const RESOLVED_CONFIG = 'config.resolved.yaml';

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
  final: EvalResult | null;
  /** The fine-tuned model as an HF folder. */
  modelDir: string;
  imagesPerSecond: number;
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

async function openModel(config: RunConfig, log: (m: string) => void): Promise<AdapterModel> {
  if (modelIsConfigOnly(config.model)) {
    log(`model: ${config.model} (random initialisation, no pretrained weights)`);
    return buildFromConfig(config.model, config.train.seed).model;
  }
  const loaded = await loadPretrained(config.model, { weights: config.weights, seed: config.train.seed, log, numLabels: config.num_labels });
  log(`model: ${loaded.adapter.name} from ${loaded.weightsPath} (${loaded.format}, ${loaded.model.params.count().toLocaleString()} parameters)`);
  return loaded.model;
}

function batchTensors(batch: ImageBatch): { x: tf.Tensor4D; targets: { labels: tf.Tensor1D } | { soft: tf.Tensor2D } } {
  const x = tf.tensor4d(batch.images, batch.shape);
  if (batch.targets) {
    const classes = batch.targets.length / batch.shape[0];
    return { x, targets: { soft: tf.tensor2d(batch.targets, [batch.shape[0], classes]) } };
  }
  return { x, targets: { labels: tf.tensor1d(batch.labels, 'int32') } };
}

/** An endless batch stream over epochs that remembers its position. */
async function* endless(loader: DataLoader): AsyncGenerator<ImageBatch> {
  for (;;) {
    let any = false;
    for await (const b of loader.epochBatches()) {
      any = true;
      yield b;
    }
    if (!any && loader.size === 0) throw new OptionError('data.train', 'the training data is empty');
    // A stream of unknown size that yields no complete batch would otherwise loop for ever.
    if (!any) throw new OptionError('train.batch_size', `an epoch of ${loader.dataset.description} gave no complete batch of ${loader.batchSize}`);
  }
}

export async function trainRun(input: RunConfig, options: TrainRunOptions = {}): Promise<TrainRunResult> {
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
  if (!options.resume) writeFileSync(join(runDir, RESOLVED_CONFIG), configToYaml(config));

  const model = await openModel(config, log);
  const checkpointDir = modelIsConfigOnly(config.model) ? dirname(config.model) : config.model;
  const preprocess = await preprocessForModel(model, checkpointDir, { imageSize: config.data.image_size, mean: config.data.mean, std: config.data.std });
  const numClasses = config.data.num_classes ?? model.numClasses;
  const trainData: AnyImageDataset = limitDataset(await openDataSpec(config.data.train, { numClasses }), config.data.train_limit);
  const evalData = config.data.eval ? limitDataset(await openDataSpec(config.data.eval, { numClasses }), config.data.eval_limit) : null;
  const aug = config.augment;
  const mixing = aug.mixup > 0 || aug.cutmix > 0 || aug.label_smoothing > 0;
  if (trainData.size !== undefined && trainData.size < config.train.batch_size) {
    throw new OptionError('train.batch_size', `${config.train.batch_size} is larger than the ${trainData.size} samples of ${trainData.description}; lower it`);
  }
  const loader = new DataLoader(trainData, {
    batchSize: config.train.batch_size,
    preprocess,
    shuffle: true,
    dropLast: true,
    seed: config.train.seed,
    numClasses,
    augment: {
      randomResizedCrop: aug.random_resized_crop === false ? undefined : { scale: aug.random_resized_crop.scale },
      padCrop: aug.pad_crop || undefined,
      hflip: aug.hflip,
    },
    ...recipeLoaderOptions(aug, preprocess),
    mixup: mixing
      ? { mixupAlpha: aug.mixup, cutmixAlpha: aug.cutmix, prob: aug.mix_prob, switchProb: aug.switch_prob, labelSmoothing: aug.label_smoothing }
      : undefined,
  });
  const perEpoch = loader.batchesPerEpoch;
  const totalSteps = config.train.steps ?? Math.ceil((config.train.epochs ?? 1) * (perEpoch ?? 0));
  if (!totalSteps) throw new OptionError('train.epochs', `cannot turn epochs into steps: ${trainData.description} has no known size; give train.steps`);

  const o = config.optimizer;
  const numLayers = Number((model.config as Record<string, unknown>).num_hidden_layers ?? 0);
  const optimizer = createOptimizer(
    { kind: o.kind, weightDecay: o.weight_decay, betas: o.betas, eps: o.eps, momentum: o.momentum, nesterov: o.nesterov },
    model.params.trainable(),
    o.layer_decay && o.layer_decay < 1 ? { layerDecay: { decay: o.layer_decay, numLayers } } : {},
  );
  const lrAt = warmupCosine({ baseLr: o.lr, totalSteps, minLr: o.min_lr, warmupSteps: o.warmup_steps });
  const m = config.masksub;
  const trainer: MaskSubTrainer = withMaskSub(model, {
    variant: m.variant,
    drop: m.drop,
    ratio: m.ramp === 'constant' ? m.ratio : { start: m.ratio, end: m.ratio_end, steps: m.ratio_steps, ramp: m.ramp },
    mainWeight: m.main_weight,
    subWeight: m.sub_weight,
    loss: config.train.loss,
    seed: config.train.seed + 1,
  });

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
    if (ckpt.optimizer) optimizer.setState(ckpt.optimizer);
    if (ckpt.rng.masksub) trainer.rng.setState(ckpt.rng.masksub);
    if (ckpt.dataLoader) loader.restore(ckpt.dataLoader as unknown as LoaderState);
    step = ckpt.step;
    log(`resumed ${runDir} at step ${step} from ${ckpt.dir}`);
    disposeCheckpoint(ckpt);
  }

  const metrics = new MetricsWriter(runDir, options.resume ? { resumeStep: step } : {});
  const progress = new TrainingProgress({ totalSteps, startStep: step, quiet: config.run.quiet || undefined, logEvery: config.run.log_every, stream: options.stream });
  const checkpoint = async () => {
    const opt = optimizer.getState();
    await saveCheckpoint(
      runDir,
      {
        step,
        epoch: loader.epoch,
        model: model.params.variables,
        optimizer: opt,
        rng: { masksub: trainer.rng.getState() },
        dataLoader: loader.state() as unknown as JsonValue,
        config: config as unknown as JsonValue,
      },
      { keepLast: config.run.keep_checkpoints, requireFinite: true },
    );
    for (const t of opt.tensors.values()) t.dispose();
  };
  const runEval = async (): Promise<EvalResult | null> => {
    if (!evalData) return null;
    const r = await evaluate(model, evalData, preprocess, config.train.eval_batch_size ?? config.train.batch_size);
    metrics.logEval({ step, epoch: epochAt(step), top1: r.top1, top5: r.top5, loss: r.loss });
    progress.log(`eval step ${step}: top-1 ${r.top1.toFixed(2)}%  top-5 ${r.top5.toFixed(2)}%  loss ${r.loss.toFixed(4)}  (${r.count} images)`);
    return r;
  };
  const epochAt = (s: number) => (perEpoch ? s / perEpoch : loader.epoch);

  const batches = endless(loader);
  let intervalImages = 0;
  let intervalStart = performance.now();
  let totalImages = 0;
  const runStart = performance.now();
  while (step < totalSteps) {
    const next = await batches.next();
    if (next.done) break;
    const batch = next.value;
    const lr = lrAt(step);
    const { x, targets } = batchTensors(batch);
    const r = trainer.computeGradients({ inputs: { pixel_values: x }, targets }, step);
    let grads = r.grads;
    if (o.clip_grad) {
      const clipped = clipGradNorm(grads, o.clip_grad);
      for (const g of grads.values()) g.dispose();
      grads = clipped.grads;
    }
    optimizer.step(grads, lr);
    for (const g of grads.values()) g.dispose();
    tf.dispose([x, ...Object.values(targets), r.mainLogits, ...(r.subLogits ? [r.subLogits] : [])]);
    step++;
    intervalImages += batch.shape[0];
    totalImages += batch.shape[0];
    const seconds = (performance.now() - intervalStart) / 1000;
    const imgPerS = intervalImages / Math.max(seconds, 1e-9);
    const hasSub = hasSubPass(trainer.variant);
    progress.update({ step, epoch: epochAt(step), loss_main: r.lossMain, loss_sub: hasSub ? r.lossSub : null, lr, img_per_s: imgPerS });
    if (step % config.run.log_every === 0 || step === totalSteps) {
      metrics.logTrain({ step, epoch: epochAt(step), lr, loss: r.loss, loss_main: r.lossMain, loss_sub: hasSub ? r.lossSub : null, ratio: trainer.variant !== 'none' ? r.ratio : null, img_per_s: imgPerS });
      intervalImages = 0;
      intervalStart = performance.now();
    }
    if (!Number.isFinite(r.loss)) throw new OptionError('optimizer.lr', `the loss diverged (${r.loss}) at step ${step}; lower the learning rate`);
    if (config.run.eval_every && step % config.run.eval_every === 0 && step < totalSteps) await runEval();
    if (step % config.run.checkpoint_every === 0 || step === totalSteps) await checkpoint();
  }
  await batches.return(undefined);
  progress.stop();
  const final = await runEval();
  const modelDir = join(runDir, 'model');
  saveModel(model, modelDir);
  // The run's own preprocessing beside the weights, so `masksub eval` (and HF image processors)
  // feed the fine-tuned model exactly what it was trained and evaluated on.
  writeFileAtomic(join(modelDir, 'preprocessor_config.json'), new TextEncoder().encode(`${JSON.stringify(preprocessSpecToHf(preprocess, imageProcessorType(checkpointDir)), null, 2)}\n`));
  metrics.close();
  await writeReport(runDir);
  const imagesPerSecond = totalImages / Math.max((performance.now() - runStart) / 1000, 1e-9);
  optimizer.dispose();
  model.dispose();
  return { runDir, steps: step, backend, final, modelDir, imagesPerSecond };
}
