/**
 * A task: what the trainer needs to know about a workload, so the loop itself knows none. It
 * says how data becomes model inputs and recipe targets, keeps a resumable position in its
 * training data, evaluates with its own metrics, and completes the fine-tuned folder with what
 * the task needs to run again (preprocessor config, tokenizer files).
 */
import type { Batch, MaskSubModel, tf } from '@masksub/core';
import type { JsonValue } from '../checkpoint/checkpoint.js';

/** The task kinds the trainer runs (one source of truth: the schema and the help read it). */
export const TASK_KINDS = ['image-classification', 'text-classification', 'text-regression', 'image-text-contrastive'] as const;
export type TaskKind = (typeof TASK_KINDS)[number];

/**
 * Default peak learning rates: from scratch (config.json models) and fine-tuning a pretrained
 * checkpoint, per task kind. Fine-tuning rates as the reference scripts use them: 2e-5 for text
 * (HF run_glue), 1e-4 for images (small-batch fine-tuning of pretrained ViT/ResNet); image-text
 * contrastive 5e-4 from scratch (the CLIP paper's ViT-B/32 rate) and 1e-5 to continue a pretrained
 * CLIP (its embedding space is easily destroyed at image-classification rates).
 */
export const DEFAULT_LR: Readonly<Record<TaskKind, { scratch: number; finetune: number }>> = {
  'image-classification': { scratch: 1e-3, finetune: 1e-4 },
  'text-classification': { scratch: 1e-4, finetune: 2e-5 },
  'text-regression': { scratch: 1e-4, finetune: 2e-5 },
  'image-text-contrastive': { scratch: 5e-4, finetune: 1e-5 },
};

/** One training batch: the model inputs, the recipe targets, and how many examples it holds. */
export interface TaskBatch extends Batch {
  size: number;
  /** Tensors to free after the step (inputs and targets). */
  tensors: tf.Tensor[];
}

export interface TaskEval {
  /** Metric values by key, as written to metrics.jsonl (see `metricKeys`). */
  metrics: Record<string, number>;
  count: number;
  /** One line for the progress log. */
  summary: string;
}

export interface Task {
  readonly kind: TaskKind;
  /** The metrics evaluation reports, the one that ranks runs first (e.g. top1, accuracy, pearson). */
  readonly metricKeys: readonly string[];
  /** Unit of `size` in throughput lines ('img' or 'ex'). */
  readonly unit: string;
  /** Batches per epoch when the training data's size is known. */
  readonly batchesPerEpoch: number | undefined;
  /** The epoch the training stream is in (0-based). */
  readonly epoch: number;
  readonly description: string;
  /** The training batches, epoch after epoch, from the current position. */
  batches(): AsyncGenerator<TaskBatch>;
  /** The training stream's position, checkpointed for an exact resume. */
  state(): JsonValue;
  restore(state: JsonValue): void;
  /** Metrics on the evaluation data; null when there is none. */
  evaluate(model: MaskSubModel): Promise<TaskEval | null>;
  /** Writes what the fine-tuned folder needs besides the weights (after saveModel). */
  completeFolder(modelDir: string): void;
  /**
   * The names of the head's classes in label order, when the training data names them; the
   * saved config.json carries them as id2label / label2id (tasks/labels.ts).
   */
  readonly labelNames?: readonly string[];
}
