/**
 * Image-text pairs for contrastive training (CLIP) and the class names and prompt templates of
 * zero-shot classification. Two sources of captions:
 *
 * - WebDataset shards whose samples carry `<key>.txt` (the WebDataset convention, as img2dataset
 *   writes them): the caption is the file's UTF-8 text, trimmed. `.cls` is optional there.
 * - An image-classification source (any data spec) plus class names (`classes.txt`, one a line,
 *   in label order) and prompt templates ("a photo of a {}."): the caption of a sample is a
 *   template filled with its class name, drawn per sample and step (a seeded choice).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { FileFormatError, OptionError, folderFile, type Rng } from '@masksub/core/base';
import { readTarMembers } from './tar.js';
import type { RawSample, StreamingImageDataset } from './types.js';
import { expandBraces, IMAGE_EXTENSIONS, shuffleBuffered, splitMemberName } from './webdataset.js';

/**
 * CLIP's prompt templates (openai/CLIP, data/prompts.md). `simple` is the single template of the
 * CLIP paper's baseline; `cifar` the 18 CLIP uses for CIFAR-10 and CIFAR-100.
 */
export const TEMPLATE_SETS = {
  simple: ['a photo of a {}.'],
  cifar: [
    'a photo of a {}.',
    'a blurry photo of a {}.',
    'a black and white photo of a {}.',
    'a low contrast photo of a {}.',
    'a high contrast photo of a {}.',
    'a bad photo of a {}.',
    'a good photo of a {}.',
    'a photo of a small {}.',
    'a photo of a big {}.',
    'a photo of the {}.',
    'a blurry photo of the {}.',
    'a black and white photo of the {}.',
    'a low contrast photo of the {}.',
    'a high contrast photo of the {}.',
    'a bad photo of the {}.',
    'a good photo of the {}.',
    'a photo of the small {}.',
    'a photo of the big {}.',
  ],
} as const satisfies Record<string, readonly string[]>;

export type TemplateSetName = keyof typeof TEMPLATE_SETS;
export const TEMPLATE_SET_NAMES = Object.keys(TEMPLATE_SETS) as TemplateSetName[];
/** What `data.templates` / `--templates` default to. */
export const DEFAULT_TEMPLATE_SET: TemplateSetName = 'simple';

/**
 * Templates from a built-in set's name or a list of templates, each with exactly one `{}` where
 * the class name goes; `option` names the config key or flag in errors.
 */
export function resolveTemplates(spec: string | readonly string[] | undefined, option = 'data.templates'): string[] {
  if (spec === undefined) return [...TEMPLATE_SETS[DEFAULT_TEMPLATE_SET]];
  if (typeof spec === 'string') {
    if (spec in TEMPLATE_SETS) return [...TEMPLATE_SETS[spec as TemplateSetName]];
    if (!spec.includes('{}')) throw new OptionError(option, `'${spec}' is neither a template set (${TEMPLATE_SET_NAMES.join(', ')}) nor a template with '{}'`);
    return resolveTemplates([spec], option);
  }
  if (spec.length === 0) throw new OptionError(option, 'no templates given');
  for (const t of spec) {
    if (t.split('{}').length !== 2) throw new OptionError(option, `template '${t}' must hold exactly one '{}' (where the class name goes)`);
  }
  return [...spec];
}

export function fillTemplate(template: string, className: string): string {
  return template.replace('{}', className);
}

/**
 * Class names from a file, one a line in label order (CIFAR-10's `classes.txt`); blank lines at
 * the end are ignored, blank or repeated names elsewhere are errors. With `expected`, a count
 * that disagrees is an error naming the file and the key that holds the other count.
 */
export function readClassNames(file: string, expected?: { count: number; key: string }): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new FileFormatError(file, `cannot read the class names (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const lines = text.replace(/\r\n/g, '\n').split('\n');
  while (lines.length && lines[lines.length - 1].trim() === '') lines.pop();
  if (lines.length === 0) throw new FileFormatError(file, 'holds no class names (expected one a line, in label order)');
  const seen = new Map<string, number>();
  const names = lines.map((l, i) => {
    const name = l.trim();
    if (!name) throw new FileFormatError(file, `line ${i + 1} is blank: every label needs a class name`);
    const before = seen.get(name);
    if (before !== undefined) throw new FileFormatError(file, `class name '${name}' appears on lines ${before + 1} and ${i + 1}`);
    seen.set(name, i);
    return name;
  });
  if (expected && expected.count !== names.length) {
    throw new FileFormatError(file, `${names.length} class names, but ${expected.key} is ${expected.count}: the file and the labels must agree`);
  }
  return names;
}

/**
 * Where a data spec's class names are when none is given: `classes.txt` beside the first
 * WebDataset shard or inside an IDX folder (the layout of ../shared/data). Undefined when there
 * is none (an image folder names its classes by its sub-directories).
 */
export function defaultClassFile(spec: string): string | undefined {
  const colon = spec.indexOf(':');
  const kind = spec.slice(0, colon);
  const rest = spec.slice(colon + 1);
  let dir: string | undefined;
  if (kind === 'webdataset') {
    const first = rest.split(',').filter(Boolean).flatMap(expandBraces)[0];
    dir = first ? dirname(first) : undefined;
  } else if (kind === 'fashion-mnist' || kind === 'mnist-folder') {
    dir = rest.slice(0, rest.lastIndexOf(':'));
  } else if (kind === 'folder') {
    return undefined;
  }
  return dir ? folderFile(dir, 'classes.txt') : undefined;
}

/**
 * Captions for a batch of labels from class names and templates: sample i gets
 * `templates[choice]` filled with its class name, the choice drawn from `rng` (training: a
 * different template each time an image is seen) or the first template without one. A label
 * without a class name is an error naming the class file and the sample's key.
 */
export function templateCaptions(
  labels: ArrayLike<number>,
  keys: readonly string[],
  classes: { names: readonly string[]; source: string },
  templates: readonly string[],
  rng?: Rng,
): string[] {
  const out: string[] = [];
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i];
    const name = classes.names[label];
    if (name === undefined) {
      throw new FileFormatError(classes.source, `sample '${keys[i]}' has label ${label}, but the file names ${classes.names.length} classes (0..${classes.names.length - 1})`);
    }
    out.push(fillTemplate(templates[rng ? rng.int(templates.length) : 0], name));
  }
  return out;
}

function isImageExt(ext: string): boolean {
  return (IMAGE_EXTENSIONS as readonly string[]).includes(ext);
}

/**
 * The samples of one shard with their `.txt` captions: consecutive members `<key>.<ext>` form a
 * sample. A sample without an image or without a caption is an error naming the shard and key.
 * The label is the `.cls` class when present, else -1 (caption data has no classes).
 */
export async function* readCaptionedShard(shard: string): AsyncGenerator<RawSample & { kind: 'encoded'; caption: string }> {
  let key: string | undefined;
  let bytes: Uint8Array | undefined;
  let caption: string | undefined;
  let label = -1;
  const finish = () => {
    if (key === undefined) return undefined;
    if (bytes === undefined) throw new FileFormatError(shard, `sample '${key}' has no image member (.${IMAGE_EXTENSIONS.join('/.')})`);
    if (caption === undefined) throw new FileFormatError(shard, `sample '${key}' has no caption (${key}.txt): image-text data needs one per image`);
    return { kind: 'encoded' as const, key, bytes, label, caption };
  };
  for await (const member of readTarMembers(shard)) {
    const { key: k, ext } = splitMemberName(member.name);
    if (k !== key) {
      const done = finish();
      if (done) yield done;
      key = k;
      bytes = undefined;
      caption = undefined;
      label = -1;
    }
    if (isImageExt(ext)) bytes = member.data;
    else if (ext === 'txt') {
      caption = member.data.toString('utf8').trim();
      if (!caption) throw new FileFormatError(shard, `sample '${k}': ${k}.txt is empty`);
    } else if (ext === 'cls') {
      const t = member.data.toString('ascii').trim();
      if (!/^\d+$/.test(t)) throw new FileFormatError(shard, `sample '${k}': .cls is not a class index: '${t.slice(0, 20)}'`);
      label = parseInt(t, 10);
    }
  }
  const last = finish();
  if (last) yield last;
}

export interface CaptionedWebDatasetOptions {
  /** Shuffle buffer size (default 2000 samples). */
  shuffleBuffer?: number;
  /** Count (and check) every sample at open time with one streaming pass (default true). */
  count?: boolean;
}

/**
 * WebDataset shards of images with `.txt` captions, streamed (plain or gzipped tars) through a
 * seeded shuffle buffer as webdataset's `shuffle(n)`; the batches carry the captions.
 */
export class CaptionedWebDataset implements StreamingImageDataset {
  readonly kind = 'stream' as const;
  readonly numClasses = undefined;

  private constructor(
    readonly shards: string[],
    readonly shuffleBuffer: number,
    readonly size: number | undefined,
  ) {}

  get description(): string {
    return `image-text webdataset ${this.shards.length === 1 ? this.shards[0] : `${this.shards[0]} (+${this.shards.length - 1} shards)`}`;
  }

  static async open(patterns: string[], options: CaptionedWebDatasetOptions = {}): Promise<CaptionedWebDataset> {
    const shards = patterns.flatMap(expandBraces);
    if (shards.length === 0) throw new OptionError('data', 'no WebDataset shards given');
    const shuffleBuffer = options.shuffleBuffer ?? 2000;
    if (!Number.isInteger(shuffleBuffer) || shuffleBuffer < 1) throw new OptionError('shuffleBuffer', `must be a positive integer, got ${shuffleBuffer}`);
    let size: number | undefined;
    if (options.count ?? true) {
      // One pass at open time: a missing caption fails before training starts, not hours in.
      size = 0;
      for (const shard of shards) for await (const _ of readCaptionedShard(shard)) size++;
    }
    return new CaptionedWebDataset(shards, shuffleBuffer, size);
  }

  async *samples(rng: Rng, shuffle: boolean): AsyncGenerator<RawSample> {
    const order = this.shards.slice();
    if (!shuffle) {
      for (const shard of order) yield* readCaptionedShard(shard);
      return;
    }
    rng.shuffle(order);
    yield* shuffleBuffered(order, readCaptionedShard, this.shuffleBuffer, rng);
  }
}

/** The captions of an image-text source: in the samples (`.txt`), or made from class names and templates. */
export type CaptionSource =
  | { kind: 'text' }
  | { kind: 'templates'; classNames: string[]; classFile: string; templates: string[] };

export interface ImageTextOptions {
  /** Class names file: captions come from templates over it (default: `classes.txt` beside the shards, when the shards have no `.txt`). */
  classes?: string;
  /** Template set name or templates (default 'simple'). */
  templates?: string | readonly string[];
  /** Check the class count against this (e.g. a config's num_labels). */
  expectedClasses?: { count: number; key: string };
}

/**
 * Decide where a spec's captions come from: explicit class names -> templates; WebDataset shards
 * whose first sample has a `.txt` -> captions; else `classes.txt` beside the shards -> templates;
 * else an error saying what is missing.
 */
export async function captionSourceFor(spec: string, options: ImageTextOptions = {}): Promise<CaptionSource> {
  const templates = () => resolveTemplates(options.templates);
  if (options.classes) return { kind: 'templates', classNames: readClassNames(options.classes, options.expectedClasses), classFile: options.classes, templates: templates() };
  if (spec.startsWith('webdataset:')) {
    const first = spec.slice('webdataset:'.length).split(',').filter(Boolean).flatMap(expandBraces)[0];
    if (first && (await firstSampleHasCaption(first))) {
      if (options.templates !== undefined) throw new OptionError('data.templates', `${first} carries .txt captions: templates apply only to class names (give data.classes to caption by class instead)`);
      return { kind: 'text' };
    }
  }
  const file = defaultClassFile(spec);
  if (file) return { kind: 'templates', classNames: readClassNames(file, options.expectedClasses), classFile: file, templates: templates() };
  throw new OptionError('data.classes', `'${spec}' has no captions: give WebDataset shards with <key>.txt, or class names (data.classes: classes.txt, one a line) to caption by templates`);
}

async function firstSampleHasCaption(shard: string): Promise<boolean> {
  let key: string | undefined;
  for await (const member of readTarMembers(shard)) {
    const m = splitMemberName(member.name);
    if (key === undefined) key = m.key;
    if (m.key !== key) return false;
    if (m.ext === 'txt') return true;
  }
  return false;
}
