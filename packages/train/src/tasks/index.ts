/**
 * The task a run config describes, chosen from its data spec: `glue:` specs are text
 * classification (regression for STS-B); every other spec is image classification.
 */
import { dirname } from 'node:path';
import { OptionError, textCapabilityOf, type AdapterModel, type ArchitectureAdapter } from '@masksub/core';
import type { RunConfig } from '../config.js';
import { glueNumLabels, glueTaskName, readGlueTask, type GlueTask } from '../data/glue.js';
import { openDataSpec } from '../data/spec.js';
import { preprocessForModel } from '../model-preprocess.js';
import { limitDataset } from '../subset.js';
import { ImageClassificationTask } from './image-classification.js';
import { TextTask } from './text.js';
import type { Task, TaskKind } from './types.js';

export * from './types.js';
export * from './glue-metrics.js';
export { ImageClassificationTask } from './image-classification.js';
export { TextTask, evaluateText } from './text.js';

export interface GlueSpec {
  dir: string;
  task: GlueTask;
  split: string;
}

/**
 * `glue:<task folder>:<split>` -> the GLUE root, task and split; null for other specs. The task
 * is the folder's name (SST-2, CoLA, MRPC, RTE, STS-B).
 */
export function parseGlueSpec(spec: string, key = 'data.train'): GlueSpec | null {
  if (!spec.startsWith('glue:')) return null;
  const body = spec.slice('glue:'.length);
  const cut = body.lastIndexOf(':');
  if (cut <= 0 || cut === body.length - 1) throw new OptionError(key, `'${spec}': expected glue:<task folder>:<split>, e.g. glue:../shared/data/glue/SST-2:train`);
  const folder = body.slice(0, cut).replace(/\/+$/, '');
  const name = folder.split('/').pop() ?? '';
  let task: GlueTask;
  try {
    task = glueTaskName(name);
  } catch {
    throw new OptionError(key, `'${folder}' is not one of the five GLUE task folders (SST-2, CoLA, MRPC, RTE, STS-B)`);
  }
  return { dir: dirname(folder), task, split: body.slice(cut + 1) };
}

/** The task kind of a config, known before any model or data is opened (e.g. for its default lr). */
export function taskKindOf(config: RunConfig): TaskKind {
  const glue = parseGlueSpec(config.data.train);
  if (!glue) return 'image-classification';
  return glue.task === 'stsb' ? 'text-regression' : 'text-classification';
}

export interface OpenTaskOptions {
  config: RunConfig;
  model: AdapterModel;
  adapter: ArchitectureAdapter;
  /** The folder the model came from (its config.json's folder when training from scratch). */
  checkpointDir: string;
}

export async function openTask({ config, model, adapter, checkpointDir }: OpenTaskOptions): Promise<Task> {
  const glue = parseGlueSpec(config.data.train);
  if (glue) {
    const evalSpec = config.data.eval ? parseGlueSpec(config.data.eval, 'data.eval') : null;
    if (config.data.eval && !evalSpec) throw new OptionError('data.eval', `'${config.data.eval}': a GLUE run evaluates on a glue: spec`);
    if (evalSpec && evalSpec.task !== glue.task) throw new OptionError('data.eval', `is GLUE ${evalSpec.task} but data.train is ${glue.task}`);
    const labels = glueNumLabels(glue.task);
    if (model.numClasses !== labels) {
      throw new OptionError('num_labels', `GLUE ${glue.task} has ${labels} label(s) but the model's head has ${model.numClasses}: set num_labels: ${labels} (or the config's num_labels)`);
    }
    const text = textCapabilityOf(adapter);
    if (!text) throw new OptionError('data.train', `the ${adapter.name} model takes no text: GLUE needs a text model (e.g. @masksub/bert)`);
    const tokenizer = await text.loadTokenizer(config.data.tokenizer ?? checkpointDir);
    const limit = <T>(rows: T[], n: number | undefined) => (n ? rows.slice(0, n) : rows);
    const train = limit(await readGlueTask(glue.dir, glue.task, glue.split), config.data.train_limit);
    const evalRows = evalSpec ? limit(await readGlueTask(evalSpec.dir, evalSpec.task, evalSpec.split), config.data.eval_limit) : null;
    return new TextTask({
      task: glue.task,
      train,
      eval: evalRows,
      tokenizer,
      batchSize: config.train.batch_size,
      evalBatchSize: config.train.eval_batch_size ?? config.train.batch_size,
      maxLength: config.data.max_length,
      seed: config.train.seed,
      description: `GLUE ${glue.task} ${glue.split} (${glue.dir})`,
    });
  }
  const preprocess = await preprocessForModel(model, checkpointDir, { imageSize: config.data.image_size, mean: config.data.mean, std: config.data.std });
  const numClasses = config.data.num_classes ?? model.numClasses;
  const train = limitDataset(await openDataSpec(config.data.train, { numClasses }), config.data.train_limit);
  const evalData = config.data.eval ? limitDataset(await openDataSpec(config.data.eval, { numClasses }), config.data.eval_limit) : null;
  return new ImageClassificationTask({ config, train, eval: evalData, preprocess, numClasses, checkpointDir });
}
