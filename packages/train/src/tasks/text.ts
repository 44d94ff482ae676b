/**
 * Text classification and regression on GLUE (`glue:<task folder>:<split>`): rows tokenized by
 * the model's text encoder (the checkpoint's tokenizer, or data.tokenizer), batches padded to
 * their longest row, labels as GLUE defines them (STS-B a float score), GLUE metrics.
 */
import { copyFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { OptionError, Rng, tf, type MaskSubModel, type RngState, type TextInput, type TextTokenizer } from '@masksub/core';
import type { JsonValue } from '../checkpoint/checkpoint.js';
import { glueLabelNames, type GlueRow, type GlueTask } from '../data/glue.js';
import { GLUE_METRIC_KEYS, glueMetrics } from './glue-metrics.js';
import type { Task, TaskBatch, TaskEval } from './types.js';

export interface TextTaskOptions {
  task: GlueTask;
  train: GlueRow[];
  eval: GlueRow[] | null;
  tokenizer: TextTokenizer;
  batchSize: number;
  evalBatchSize: number;
  maxLength: number;
  seed: number;
  description: string;
}

/** Position in the training rows: the epoch's order derives from the Rng state at its start. */
interface TextLoaderState {
  epoch: number;
  index: number;
  rng: RngState;
}

function exampleOf(row: GlueRow): TextInput {
  return row.text_b === undefined ? row.text_a : [row.text_a, row.text_b];
}

export class TextTask implements Task {
  readonly kind: 'text-classification' | 'text-regression';
  readonly metricKeys: readonly string[];
  readonly unit = 'ex';
  private position: TextLoaderState;

  readonly labelNames: readonly string[] | undefined;

  constructor(private readonly o: TextTaskOptions) {
    this.kind = o.task === 'stsb' ? 'text-regression' : 'text-classification';
    this.labelNames = glueLabelNames(o.task);
    this.metricKeys = GLUE_METRIC_KEYS[o.task];
    if (o.train.length < o.batchSize) {
      throw new OptionError('train.batch_size', `${o.batchSize} is larger than the ${o.train.length} training rows of ${o.description}`);
    }
    this.position = { epoch: 0, index: 0, rng: new Rng(o.seed).getState() };
  }

  get batchesPerEpoch(): number {
    return Math.floor(this.o.train.length / this.o.batchSize);
  }

  get epoch(): number {
    return this.position.epoch;
  }

  get description(): string {
    return this.o.description;
  }

  private order(): Int32Array {
    const rng = new Rng(this.position.rng);
    const order = Int32Array.from({ length: this.o.train.length }, (_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [order[i], order[j]] = [order[j], order[i]];
    }
    return order;
  }

  private targetsOf(rows: GlueRow[]): tf.Tensor1D {
    return this.kind === 'text-regression' ? tf.tensor1d(rows.map((r) => r.label), 'float32') : tf.tensor1d(rows.map((r) => r.label), 'int32');
  }

  async *batches(): AsyncGenerator<TaskBatch> {
    for (;;) {
      const order = this.order();
      const b = this.o.batchSize;
      while (this.position.index + b <= order.length) {
        const rows = Array.from(order.subarray(this.position.index, this.position.index + b), (i) => this.o.train[i]);
        this.position = { ...this.position, index: this.position.index + b };
        const inputs = this.o.tokenizer.encode(rows.map(exampleOf), { maxLength: this.o.maxLength, padding: 'longest' });
        const labels = this.targetsOf(rows);
        yield { inputs, targets: { labels }, size: b, tensors: [...Object.values(inputs), labels] };
      }
      // The next epoch's order comes from this epoch's stream, advanced once per epoch.
      const rng = new Rng(this.position.rng);
      rng.next();
      this.position = { epoch: this.position.epoch + 1, index: 0, rng: rng.getState() };
    }
  }

  state(): JsonValue {
    return { ...this.position } as unknown as JsonValue;
  }

  restore(state: JsonValue): void {
    const s = state as unknown as TextLoaderState;
    if (!s || typeof s.epoch !== 'number' || typeof s.index !== 'number' || !s.rng) throw new OptionError('resume', 'the checkpoint has no text loader position');
    this.position = { epoch: s.epoch, index: s.index, rng: s.rng };
  }

  async evaluate(model: MaskSubModel): Promise<TaskEval | null> {
    if (!this.o.eval) return null;
    return evaluateText(model, this.o.task, this.o.eval, this.o.tokenizer, this.o.evalBatchSize, this.o.maxLength);
  }

  completeFolder(modelDir: string): void {
    for (const f of this.o.tokenizer.files) copyFileSync(f, join(modelDir, basename(f)));
  }
}

/** GLUE metrics of `model` on `rows` (argmax for classification, the score for STS-B), and the loss. */
export async function evaluateText(
  model: MaskSubModel,
  task: GlueTask,
  rows: GlueRow[],
  tokenizer: TextTokenizer,
  batchSize: number,
  maxLength: number,
): Promise<TaskEval> {
  if (rows.length === 0) throw new OptionError('data.eval', 'has no rows');
  const regression = task === 'stsb';
  const predictions = new Float64Array(rows.length);
  let lossSum = 0;
  for (let start = 0; start < rows.length; start += batchSize) {
    const part = rows.slice(start, start + batchSize);
    const inputs = tokenizer.encode(part.map(exampleOf), { maxLength, padding: 'longest' });
    const [pred, loss] = tf.tidy(() => {
      const logits = model.forward(inputs, { training: false }) as tf.Tensor2D;
      if (regression) {
        const y = tf.reshape(logits, [-1]);
        const diff = tf.sub(y, tf.tensor1d(part.map((r) => r.label)));
        return [y.dataSync(), tf.sum(tf.square(diff)).dataSync()[0]];
      }
      const labels = tf.tensor1d(part.map((r) => r.label), 'int32');
      const logp = tf.logSoftmax(logits);
      const nll = tf.neg(tf.sum(tf.mul(logp, tf.oneHot(labels, logits.shape[1]))));
      return [tf.argMax(logits, 1).dataSync(), nll.dataSync()[0]];
    });
    tf.dispose(Object.values(inputs));
    predictions.set(pred, start);
    lossSum += loss;
  }
  const metrics: Record<string, number> = { ...glueMetrics(task, predictions, rows.map((r) => r.label)), loss: lossSum / rows.length };
  const shown = GLUE_METRIC_KEYS[task].map((k) => `${k} ${metrics[k].toFixed(4)}`).join('  ');
  return { metrics, count: rows.length, summary: `${shown}  loss ${metrics.loss.toFixed(4)}  (${rows.length} examples)` };
}
