/**
 * The task a run config describes: `glue:` specs are text classification (regression for STS-B);
 * an image-text model (a config.json with text_config and vision_config built as the pair model,
 * e.g. CLIPModel) trains contrastively on image-text pairs; everything else is image
 * classification (FT-CLIP too: `architecture: CLIPForImageClassification`).
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { FileFormatError, OptionError, folderFile, readConfig, textCapabilityOf, type AdapterModel, type ArchitectureAdapter } from '@masksub/core';
import type { RunConfig } from '../config.js';
import { glueNumLabels, glueTaskName, readGlueTask, type GlueTask } from '../data/glue.js';
import { openDataSpec } from '../data/spec.js';
import { preprocessForModel } from '../model-preprocess.js';
import { limitDataset } from '../subset.js';
import { ImageClassificationTask } from './image-classification.js';
import { CaptionedWebDataset, captionSourceFor, readClassNames, resolveTemplates, type CaptionSource } from '../data/image-text.js';
import { ImageFolderDataset } from '../data/folder.js';
import { parseDataSpec } from '../data/spec.js';
import type { AnyImageDataset } from '../data/types.js';
import { ImageTextContrastiveTask, type ImageTextSplit } from './image-text.js';
import { isImageTextModel, requireImageTextModel } from './zero-shot.js';
import { TextTask } from './text.js';
import { classFileOf, imageLabelNames } from './labels.js';
import type { Task, TaskKind } from './types.js';

export * from './types.js';
export * from './glue-metrics.js';
export { ImageClassificationTask } from './image-classification.js';
export { TextTask, evaluateText } from './text.js';
export { imageLabelNames, labelConfig } from './labels.js';
export { ImageTextContrastiveTask, RETRIEVAL_METRIC_KEYS, ZERO_SHOT_METRIC_KEYS, batchCaptions, evaluateImageText, evaluateImageTextSplit, retrievalRecalls, type ImageTextSplit } from './image-text.js';

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

/**
 * HF's dual-encoder layout (CLIP and its relatives): a `text_config` and a `vision_config`, built
 * as the pair model, not as a `*ForImageClassification` of its vision tower.
 */
export function isImageTextConfig(c: Readonly<Record<string, unknown>>, architecture?: string): boolean {
  const section = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v);
  const arch = architecture ?? (Array.isArray(c.architectures) ? c.architectures[0] : undefined);
  return section(c.text_config) && section(c.vision_config) && !(typeof arch === 'string' && arch.endsWith('ForImageClassification'));
}

/** The model's config.json, when it can be read here (opening the model reports why not). */
function modelConfigOf(config: RunConfig): Record<string, unknown> | undefined {
  try {
    const file = config.model.endsWith('.json') ? config.model : folderFile(config.model, 'config.json');
    if (file === undefined || !existsSync(file)) return undefined;
    return readConfig(file);
  } catch {
    return undefined;
  }
}

/** The task kind of a config, known before the model is built or any data opened (e.g. for its default lr). */
export function taskKindOf(config: RunConfig): TaskKind {
  const glue = parseGlueSpec(config.data.train);
  if (glue) return glue.task === 'stsb' ? 'text-regression' : 'text-classification';
  const modelConfig = modelConfigOf(config);
  if (modelConfig && isImageTextConfig(modelConfig, config.architecture)) return 'image-text-contrastive';
  return 'image-classification';
}

/**
 * num_labels of a run that builds a new head (`architecture`, e.g. CLIPForImageClassification,
 * on a checkpoint without one): the config's, else the training data's class count
 * (data.num_classes, the class names file, an image folder's classes, or the labels of the
 * shards). With both a num_labels and a class names file, they must agree.
 */
export async function resolveNumLabels(config: RunConfig): Promise<number | undefined> {
  if (!config.architecture || parseGlueSpec(config.data.train)) return config.num_labels;
  const file = classFileOf(config, config.data.train);
  if (config.num_labels !== undefined) {
    if (file) readClassNames(file, { count: config.num_labels, key: 'num_labels' });
    return config.num_labels;
  }
  if (config.data.num_classes !== undefined) return config.data.num_classes;
  if (file) return readClassNames(file).length;
  const data = await openDataSpec(config.data.train);
  const count = data instanceof ImageFolderDataset ? data.classes.length : data.numClasses;
  if (!count) throw new OptionError('num_labels', `${config.architecture} builds a new head, but ${data.description} does not say how many classes it has: set num_labels (or data.classes)`);
  return count;
}

/**
 * An image-text split: `.txt` captions (WebDataset), or an image-classification source captioned
 * by templates over its class names (data.classes, classes.txt beside the shards, or an image
 * folder's sub-directories).
 */
export async function openImageTextSplit(
  spec: string,
  key: string,
  limit: number | undefined,
  captionOptions: { classes?: string; templates?: string | readonly string[] },
): Promise<ImageTextSplit> {
  const config = { data: captionOptions };
  const parsed = parseDataSpec(spec, key);
  let captions: CaptionSource;
  let data: AnyImageDataset;
  if (parsed.kind === 'folder' && !config.data.classes) {
    const folder = await ImageFolderDataset.open(parsed.root);
    captions = { kind: 'templates', classNames: folder.classes, classFile: `${parsed.root} (sub-directories)`, templates: resolveTemplates(config.data.templates) };
    data = folder;
  } else {
    captions = await captionSourceFor(spec, { classes: config.data.classes, templates: config.data.templates });
    data =
      captions.kind === 'text' && parsed.kind === 'webdataset'
        ? await CaptionedWebDataset.open(parsed.shards)
        : await openDataSpec(parsed, { numClasses: captions.kind === 'templates' ? captions.classNames.length : undefined });
  }
  return { data: limitDataset(data, limit), captions };
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
  if (taskKindOf(config) === 'image-text-contrastive') return openImageTextTask({ config, model, adapter, checkpointDir });
  if (isImageTextModel(model)) {
    throw new OptionError('architecture', `${config.model} is an image-text model: it trains contrastively (its config.json needs text_config and vision_config), or set architecture: CLIPForImageClassification to fine-tune its vision tower as a classifier`);
  }
  const preprocess = await preprocessForModel(model, checkpointDir, { imageSize: config.data.image_size, mean: config.data.mean, std: config.data.std });
  const numClasses = config.data.num_classes ?? model.numClasses;
  // An explicit class-names file is read once: checked against the class count, then the labels.
  const namedClasses = config.data.classes
    ? readClassNames(config.data.classes, { count: numClasses, key: config.data.num_classes !== undefined ? 'data.num_classes' : `the model's num_labels` })
    : undefined;
  const trainData = await openDataSpec(config.data.train, { numClasses });
  const labelNames = namedClasses ?? imageLabelNames(config, trainData, model.numClasses);
  const train = limitDataset(trainData, config.data.train_limit);
  const evalData = config.data.eval ? limitDataset(await openDataSpec(config.data.eval, { numClasses }), config.data.eval_limit) : null;
  return new ImageClassificationTask({ config, train, eval: evalData, preprocess, numClasses, checkpointDir, labelNames });
}

async function openImageTextTask({ config, model, adapter, checkpointDir }: OpenTaskOptions): Promise<Task> {
  const m = requireImageTextModel(model);
  const text = textCapabilityOf(adapter);
  if (!text) throw new OptionError('model', `the ${adapter.name} adapter offers no tokenizer: image-text training encodes captions with one`);
  const tokenizerDir = config.data.tokenizer ?? checkpointDir;
  if (!text.hasTokenizer(tokenizerDir)) {
    throw new FileFormatError(tokenizerDir, `holds no tokenizer files for the ${adapter.name} model: set data.tokenizer to a tokenizer folder (e.g. ../shared/data/tokenizers/clip)`);
  }
  const tokenizer = await text.loadTokenizer(tokenizerDir);
  // A checkpoint's preprocessor_config.json decides the image size; otherwise the vision tower's.
  const hasPreprocessor = existsSync(join(checkpointDir, 'preprocessor_config.json'));
  const imageSize = config.data.image_size ?? (hasPreprocessor ? undefined : m.imageSize);
  const preprocess = await preprocessForModel(model, checkpointDir, { imageSize, mean: config.data.mean, std: config.data.std });
  const captions = { classes: config.data.classes, templates: config.data.templates };
  const train = await openImageTextSplit(config.data.train, 'data.train', config.data.train_limit, captions);
  const evalSplit = config.data.eval ? await openImageTextSplit(config.data.eval, 'data.eval', config.data.eval_limit, captions) : null;
  const maxLength = Math.min(config.data.max_length, m.textContextLength ?? config.data.max_length);
  return new ImageTextContrastiveTask({ config, model: m, train, eval: evalSplit, preprocess, tokenizer, maxLength, checkpointDir });
}
