/**
 * `masksub eval --zero-shot`: load a CLIP folder, its tokenizer (the folder's, or --tokenizer),
 * the class names (--classes, an image folder's sub-directories, or classes.txt beside the
 * shards), the templates (--templates: a set name or templates with '{}'), and report top-1 /
 * top-5 of image-to-class similarity.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { OptionError, loadPretrained, textCapabilityOf, tf } from '@masksub/core';
import { defaultClassFile, readClassNames, resolveTemplates } from '../data/image-text.js';
import { ImageFolderDataset } from '../data/folder.js';
import { openDataSpec, parseDataSpec } from '../data/spec.js';
import { limitDataset } from '../subset.js';
import { preprocessForModel } from '../model-preprocess.js';
import { evaluateZeroShot, requireImageTextModel, zeroShotWeights, type ZeroShotResult } from './zero-shot.js';
import { evaluateImageTextSplit } from './image-text.js';
import { openImageTextSplit } from './index.js';
import type { TaskEval } from './types.js';

export interface ZeroShotRunOptions {
  model: string;
  data: string;
  weights?: string;
  classes?: string;
  templates?: string | readonly string[];
  tokenizer?: string;
  batchSize: number;
  limit?: number;
  mean?: number[];
  std?: number[];
  log: (message: string) => void;
}

/** A CLIP folder opened for evaluation: the model, its caption encoder (the folder's tokenizer or --tokenizer), and its image preprocessing. */
async function openImageTextFolder(o: Pick<ZeroShotRunOptions, 'model' | 'weights' | 'tokenizer' | 'mean' | 'std' | 'log'>, flag: string) {
  const loaded = await loadPretrained(o.model, { weights: o.weights, log: o.log });
  // The checkpoint folder (tokenizer and preprocessor files live there).
  const modelDir = loaded.dir;
  try {
    const model = requireImageTextModel(loaded.model, '--model');
    const text = textCapabilityOf(loaded.adapter);
    if (!text) throw new OptionError(flag, `the ${loaded.adapter.name} adapter offers no tokenizer`);
    const tokDir = o.tokenizer ?? modelDir;
    if (!text.hasTokenizer(tokDir)) throw new OptionError('--tokenizer', `${tokDir} holds no tokenizer files (tokenizer.json, merges.txt or bpe_simple_vocab_16e6.txt.gz); give --tokenizer <dir>`);
    const tokenizer = await text.loadTokenizer(tokDir);
    const maxLength = model.textContextLength ?? 77;
    const encode = (captions: readonly string[]) => tokenizer.encode(captions, { maxLength, padding: 'longest' });
    const hasPreprocessor = existsSync(join(modelDir, 'preprocessor_config.json'));
    const imageSize = hasPreprocessor ? undefined : model.imageSize;
    const preprocess = await preprocessForModel(model, modelDir, { imageSize, mean: o.mean, std: o.std });
    return { model, encode, preprocess };
  } catch (e) {
    loaded.model.dispose();
    throw e;
  }
}

/**
 * `masksub eval` on an image-text folder without --zero-shot: what the contrastive task logs for
 * an eval split (retrieval recalls, loss, and zero-shot accuracies when the captions come from
 * class names).
 */
export async function runImageTextEval(o: Omit<ZeroShotRunOptions, 'classes'> & { classes?: string }): Promise<TaskEval> {
  const { model, encode, preprocess } = await openImageTextFolder(o, '--data');
  try {
    const split = await openImageTextSplit(o.data, '--data', o.limit, { classes: o.classes, templates: o.templates });
    return await evaluateImageTextSplit(model, split, preprocess, encode, o.batchSize);
  } finally {
    model.dispose();
  }
}

export async function runZeroShot(o: ZeroShotRunOptions): Promise<ZeroShotResult & { classes: number; templates: number }> {
  const { model, encode, preprocess } = await openImageTextFolder(o, '--zero-shot');
  try {
    const spec = parseDataSpec(o.data, '--data');
    const opened = await openDataSpec(spec);
    let classNames: string[];
    let classFile: string;
    const file = o.classes ?? (opened instanceof ImageFolderDataset ? undefined : defaultClassFile(o.data));
    if (file) {
      classNames = readClassNames(file);
      classFile = file;
    } else if (opened instanceof ImageFolderDataset) {
      classNames = opened.classes;
      classFile = `${opened.root} (sub-directories)`;
    } else {
      throw new OptionError('--classes', `no class names for '${o.data}': give --classes <file> (one name a line, in label order)`);
    }
    const templates = resolveTemplates(o.templates, '--templates');
    const dataset = limitDataset(opened, o.limit);
    const classifier = zeroShotWeights(model, classNames, templates, encode);
    try {
      const r = await evaluateZeroShot(model, dataset, preprocess, classifier, o.batchSize, classFile);
      return { ...r, classes: classNames.length, templates: templates.length };
    } finally {
      tf.dispose(classifier);
    }
  } finally {
    model.dispose();
  }
}
