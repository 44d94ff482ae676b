/**
 * The class names a fine-tuned folder carries in its config.json as HF's `id2label` /
 * `label2id`, so that a pipeline reading the folder (transformers, transformers.js, `masksub
 * eval`) shows "cat", not "LABEL_3". The names come from the training data where it names its
 * classes: the class-names file (data.classes, or classes.txt beside the shards), an image
 * folder's sub-directories, a GLUE task's label set.
 */
import type { RunConfig } from '../config.js';
import { defaultClassFile, readClassNames } from '../data/image-text.js';
import { ImageFolderDataset } from '../data/folder.js';
import type { AnyImageDataset } from '../data/types.js';

/** The class names file of an image spec: data.classes, else classes.txt beside the shards. */
export function classFileOf(config: RunConfig, spec: string): string | undefined {
  return config.data.classes ?? defaultClassFile(spec);
}

/** `id2label` / `label2id` for a head of `numClasses` outputs; nothing when the names do not cover it. */
export function labelConfig(names: readonly string[] | undefined, numClasses: number): { id2label?: Record<string, string>; label2id?: Record<string, number> } {
  if (names === undefined || names.length !== numClasses) return {};
  return {
    id2label: Object.fromEntries(names.map((n, i) => [String(i), n])),
    label2id: Object.fromEntries(names.map((n, i) => [n, i])),
  };
}

/**
 * The class names of an image-classification run's training data, in label order, or undefined
 * when the data does not name them (IDX files without a classes.txt, shards without one). A
 * data.classes file was already checked against the head's size; a classes.txt found beside the
 * shards that does not match it names some other labelling and is not used.
 */
export function imageLabelNames(config: RunConfig, train: AnyImageDataset, numClasses: number): readonly string[] | undefined {
  if (config.data.classes) return readClassNames(config.data.classes);
  if (train instanceof ImageFolderDataset) return train.classes.length === numClasses ? train.classes : undefined;
  const file = classFileOf(config, config.data.train);
  if (file === undefined) return undefined;
  const names = readClassNames(file);
  return names.length === numClasses ? names : undefined;
}
