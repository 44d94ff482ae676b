/**
 * A task says what the trainer's loop must not know: how the rows of a data source become model
 * inputs and targets, which metrics evaluation computes, and what a fine-tuned folder must carry
 * besides config.json + weights (tokenizer files, preprocessor config). The loop in trainer.ts
 * only moves `TaskBatch`es from a `TrainStream` into withMaskSub and logs `EvalResult.metrics`.
 *
 * Tasks: image classification, text classification and text regression (GLUE) live here; the
 * image-text contrastive and zero-shot tasks (CLIP) implement the same interfaces: a contrastive
 * batch is {inputs: {pixel_values, input_ids, attention_mask}, targets} with the model's
 * contrastive recipe loss; zero-shot is an evaluation-only task (`openTrain` throws) whose
 * evaluate() embeds prompts with the model's text capability.
 */
import type { AdapterModel, ArchitectureAdapter, ModelInputs, Targets } from '@masksub/core';
import type { JsonValue } from '../checkpoint/checkpoint.js';
import type { RunConfig } from '../config.js';

/** Every kind of task the trainer knows; the CLI, docs and lr defaults are keyed by it. */
export const TASK_KINDS = ['image-classification', 'text-classification', 'text-regression', 'image-text-contrastive', 'zero-shot-classification'] as const;
export type TaskKind = (typeof TASK_KINDS)[number];

/** One metric an evaluation reports, under `name` in metrics.jsonl eval lines. */
export interface MetricSpec {
  /** Key in EvalResult.metrics and in metrics.jsonl (e.g. 'top1', 'matthews_correlation'). */
  readonly name: string;
  /** Label for tables and log lines (e.g. 'top-1', 'MCC'). */
  readonly label: string;
  /** Which way is better, for `compare` and best-checkpoint summaries. */
  readonly higherIsBetter: boolean;
  /**
   * 'percent': 100 x the fraction (accuracy, F1, MCC, correlations: all GLUE and top-k metrics are
   * reported in percent, as the GLUE leaderboard and timm do); 'value': a plain number (a loss).
   */
  readonly unit: 'percent' | 'value';
}

/** Model inputs and targets of one batch; the trainer disposes both after the step. */
export interface TaskBatch {
  inputs: ModelInputs;
  targets: Targets;
  /** Rows in the batch (images or texts), for throughput. */
  size: number;
}

/** The training data of a task: endless over epochs, resumable to the exact batch. */
export interface TrainStream {
  readonly description: string;
  /** Full batches per epoch when the source size is known. */
  readonly batchesPerEpoch: number | undefined;
  /** 0-based epoch of the next batch. */
  readonly epoch: number;
  /** The next batch (the stream wraps around epochs). */
  next(): Promise<TaskBatch>;
  /** A JSON position; `restore` of it continues with exactly the batches that would have followed. */
  state(): JsonValue;
  restore(state: JsonValue): void;
  close(): Promise<void>;
}

export interface EvalResult {
  /** The task's metrics by MetricSpec name (percent where the spec says so). */
  metrics: Record<string, number>;
  /** Mean recipe loss of the evaluation rows (CE for classification, MSE for regression). */
  loss: number;
  /** Rows evaluated. */
  count: number;
}

/** An opened evaluation source: run() evaluates the task's model on all of it. */
export interface Evaluation {
  readonly description: string;
  run(): Promise<EvalResult>;
}

/** Data options a task reads (the run config's `data` block, or the eval command's flags). */
export type TaskDataOptions = Partial<Pick<RunConfig['data'], 'image_size' | 'mean' | 'std' | 'num_classes'>> & {
  /** Text tasks: the tokenizer folder (default: the checkpoint folder). */
  tokenizer?: string;
  /** Text tasks: tokens per row, specials included (default 128). */
  max_length?: number;
};

/** What a task is built from: the model, its adapter, and the folder its side files come from. */
export interface TaskContext {
  model: AdapterModel;
  adapter: ArchitectureAdapter;
  /** The checkpoint folder (or the folder of a from-scratch config.json). */
  modelDir: string;
  data: TaskDataOptions;
  log: (message: string) => void;
}

export interface TrainStreamOptions {
  batchSize: number;
  seed: number;
  limit?: number;
  /** Image augmentation and mixing; tasks without images ignore it. */
  augment: RunConfig['augment'];
}

export interface Task {
  readonly kind: TaskKind;
  /** The metrics evaluate() reports, the first being the one runs are compared by. */
  readonly metrics: readonly MetricSpec[];
  /** What a row is called in messages ('images', 'texts', 'pairs'). */
  readonly rowNoun: string;
  /** Training batches from a data spec. */
  openTrain(spec: string, options: TrainStreamOptions): Promise<TrainStream>;
  /** An evaluation over a data spec (deterministic order, no augmentation). */
  openEval(spec: string, options: { batchSize: number; limit?: number }): Promise<Evaluation>;
  /**
   * Complete a saved fine-tuned folder (config.json + model.safetensors already written) with
   * what this task needs to use it again: tokenizer files, preprocessor_config.json.
   */
  completeFolder(modelDir: string): void;
}

/** `top-1 81.20%  top-5 95.00%  loss 0.6000  (1000 images)`: one line for logs and the CLI. */
export function formatEval(task: Pick<Task, 'metrics' | 'rowNoun'>, r: EvalResult): string {
  const parts = task.metrics.map((m) => {
    const v = r.metrics[m.name];
    return `${m.label} ${v === undefined ? 'n/a' : m.unit === 'percent' ? `${v.toFixed(2)}%` : v.toFixed(4)}`;
  });
  return `${parts.join('  ')}  loss ${r.loss.toFixed(4)}  (${r.count} ${task.rowNoun})`;
}
