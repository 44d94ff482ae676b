/**
 * `metrics.jsonl`: the run folder's log of training steps and evaluations, one JSON object per
 * line, so it can be tailed while a run is going and read by anything (jq, pandas, the report).
 *
 * Each line is written with one synchronous `write(2)` on an append-mode descriptor: once
 * `logTrain`/`logEval` returns, the line is in the kernel's page cache and survives the process
 * being killed. A write torn by a crash can only damage the last line, which `readMetrics`
 * tolerates. On resume from a checkpoint at step S, lines with step > S describe training that
 * the checkpoint does not contain and are removed, so the file tells one consistent history.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { FileFormatError, OptionError } from '@masksub/core';

export const METRICS_FILE = 'metrics.jsonl';

/** One logged training step. Losses are of the logged step (the caller may average over the interval). */
export interface TrainRecord {
  type: 'train';
  /** Optimizer steps done so far (1 after the first update). */
  step: number;
  /** Fractional epochs are fine (step / stepsPerEpoch). */
  epoch: number;
  lr: number;
  /** The loss that was optimized (main + weighted sub for MaskSub). */
  loss: number;
  /** Loss of the main (full-input) pass. */
  loss_main: number;
  /** Loss of the sub-model (masked) pass; null for a run without MaskSub (baseline). */
  loss_sub: number | null;
  /** Masking/drop ratio of the sub-model at this step; null without MaskSub. */
  ratio: number | null;
  /** Training throughput over the logging interval, images per second. */
  img_per_s: number;
  /** Share of the logging interval spent waiting for the next batch (0-1); null when not measured. */
  data_wait: number | null;
  /** Wall-clock seconds since the run started, carried across resumes. */
  time: number;
}

/**
 * One evaluation: the task's metrics under their own keys. Image classification logs top1/top5
 * in percent (0-100), as timm reports them; image-text tasks their retrieval recalls
 * (i2t_r1, i2t_r5, t2i_r1, t2i_r5) and zero-shot accuracies (zero_shot_top1/5) in percent too; GLUE tasks log their GLUE keys (accuracy, f1,
 * matthews_correlation, pearson, spearmanr) as fractions, as GLUE and HF evaluate do.
 */
export interface EvalRecord {
  type: 'eval';
  step: number;
  epoch: number;
  top1?: number;
  top5?: number;
  loss?: number;
  [metric: string]: number | string | undefined;
}

/** Metric keys in the order that picks a run's main metric (the first present wins). */
export const PRIMARY_METRICS = ['top1', 'zero_shot_top1', 'i2t_r1', 'f1', 'matthews_correlation', 'pearson', 'accuracy'] as const;

/** Metrics logged in percent (0-100): image accuracies, zero-shot accuracies, retrieval recalls. Every other metric key is a fraction or a correlation. */
export const PERCENT_METRICS: ReadonlySet<string> = new Set(['top1', 'top5', 'zero_shot_top1', 'zero_shot_top5', 'i2t_r1', 'i2t_r5', 't2i_r1', 't2i_r5']);

/** The metric keys of an eval record (everything numeric but step, epoch and time). */
export function metricKeysOf(record: EvalRecord): string[] {
  return Object.keys(record).filter((k) => !['type', 'step', 'epoch', 'time'].includes(k) && typeof record[k] === 'number');
}

/** The key that ranks runs: the first of PRIMARY_METRICS present, else the first non-loss metric. */
export function primaryMetric(record: EvalRecord): string | null {
  const keys = metricKeysOf(record);
  return PRIMARY_METRICS.find((k) => keys.includes(k)) ?? keys.find((k) => k !== 'loss') ?? (keys.includes('loss') ? 'loss' : null);
}

/** A metric's value in a record, undefined when absent. */
export function metricValue(record: EvalRecord, key: string): number | undefined {
  const v = record[key];
  return typeof v === 'number' ? v : undefined;
}

export type MetricsRecord = TrainRecord | EvalRecord;

/**
 * JSON has no NaN/Infinity; `JSON.stringify` turns them into null. A diverged loss must still be
 * logged (it is the most important line to see), so required numbers read null back as NaN.
 */
const num = z.union([z.number(), z.null()]).transform((v) => (v === null ? Number.NaN : v));
const nullableNum = z.union([z.number(), z.null()]);
const stepNum = z.number().int().nonnegative();

const trainSchema = z.object({
  type: z.literal('train'),
  step: stepNum,
  epoch: num,
  lr: num,
  loss: num,
  loss_main: num,
  loss_sub: nullableNum.optional().transform((v) => v ?? null),
  ratio: nullableNum.optional().transform((v) => v ?? null),
  img_per_s: num,
  data_wait: nullableNum.optional().transform((v) => v ?? null),
  time: num,
});

const evalSchema = z
  .object({
    type: z.literal('eval'),
    step: stepNum,
    epoch: num,
  })
  .catchall(num);

const recordSchema = z.discriminatedUnion('type', [trainSchema, evalSchema]);

/** Result of parsing: the records and, when the last line was cut off, its text. */
export interface ParsedMetrics {
  records: MetricsRecord[];
  tornLine: string | null;
}

/**
 * Parses metrics.jsonl text. Only the last non-empty line may be unreadable (a write cut off by
 * a kill); an unreadable line elsewhere means the file is not a metrics log and is an error.
 */
export function parseMetrics(text: string, file: string): ParsedMetrics {
  const lines = text.split('\n');
  let last = lines.length - 1;
  while (last >= 0 && lines[last].trim() === '') last--;
  const records: MetricsRecord[] = [];
  let tornLine: string | null = null;
  for (let i = 0; i <= last; i++) {
    const line = lines[i].trim();
    if (line === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      if (i === last) {
        tornLine = lines[i];
        break;
      }
      throw new FileFormatError(file, `line ${i + 1} is not JSON: ${line.slice(0, 80)}`);
    }
    const parsed = recordSchema.safeParse(value);
    if (!parsed.success) {
      // A torn line can still be valid JSON (e.g. cut right after a number), so a schema failure
      // on the last line is treated as torn too.
      if (i === last) {
        tornLine = lines[i];
        break;
      }
      const issue = parsed.error.issues[0];
      throw new FileFormatError(file, `line ${i + 1} is not a metrics record (${issue.path.join('.') || 'record'}: ${issue.message})`);
    }
    records.push(parsed.data);
  }
  return { records, tornLine };
}

/** Reads a metrics.jsonl file (or a run folder containing one); a torn last line is dropped. */
export function readMetrics(path: string): MetricsRecord[] {
  // A run folder or the file itself; a missing path is named as the file we looked for.
  const isRunDir = existsSync(path) ? statSync(path).isDirectory() : !path.endsWith('.jsonl');
  const file = isRunDir ? join(path, METRICS_FILE) : path;
  if (!existsSync(file)) throw new FileFormatError(file, 'no such metrics file');
  return parseMetrics(readFileSync(file, 'utf8'), file).records;
}

/** Serializes one record as a line; non-finite numbers become null (see `num`). */
export function formatRecord(record: MetricsRecord): string {
  return JSON.stringify(record) + '\n';
}

export interface MetricsWriterOptions {
  /**
   * Resuming from a checkpoint taken after this many steps: records with a larger step are
   * removed and wall time continues from the last kept train record. Absent: a new run, and an
   * existing metrics.jsonl in the folder is replaced.
   */
  resumeStep?: number;
  /** fsync after each line: survives power loss, not only a killed process. Costs a disk flush per line. */
  fsync?: boolean;
  /** Clock in seconds, for tests. */
  now?: () => number;
}

type Without<T, K extends keyof T> = Omit<T, K>;
/** A train record as logged: `time` defaults to the writer's elapsed wall time. */
export type TrainEntry = Without<TrainRecord, 'type' | 'time' | 'loss_sub' | 'ratio' | 'data_wait'> & {
  loss_sub?: number | null;
  ratio?: number | null;
  data_wait?: number | null;
  time?: number;
};
/** An evaluation as the trainer logs it: step, epoch and the task's metric values. */
export type EvalEntry = { step: number; epoch: number } & Record<string, number>;

export class MetricsWriter {
  readonly file: string;
  private fd: number | null;
  private readonly fsync: boolean;
  private readonly now: () => number;
  private readonly startedAt: number;
  /** Wall time the run had already spent before this process (resume). */
  private readonly timeOffset: number;
  private lastStep: number;

  constructor(readonly runDir: string, options: MetricsWriterOptions = {}) {
    const { resumeStep } = options;
    if (resumeStep !== undefined && !(Number.isInteger(resumeStep) && resumeStep >= 0)) {
      throw new OptionError('resumeStep', `must be a non-negative integer, got ${resumeStep}`);
    }
    this.file = join(runDir, METRICS_FILE);
    this.fsync = options.fsync ?? false;
    this.now = options.now ?? (() => performance.now() / 1000);
    mkdirSync(runDir, { recursive: true });

    let kept: MetricsRecord[] = [];
    if (resumeStep !== undefined && existsSync(this.file)) {
      kept = parseMetrics(readFileSync(this.file, 'utf8'), this.file).records.filter((r) => r.step <= resumeStep);
    }
    // Rewrite (rather than truncate in place) via a temporary file and rename, so a crash while
    // resuming leaves either the old log or the new one, never half of one. This also drops a
    // torn last line, which an append would otherwise glue onto the next record.
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, kept.map(formatRecord).join(''));
    renameSync(tmp, this.file);

    const lastTrain = [...kept].reverse().find((r): r is TrainRecord => r.type === 'train');
    this.timeOffset = lastTrain !== undefined && Number.isFinite(lastTrain.time) ? lastTrain.time : 0;
    this.lastStep = resumeStep ?? 0;
    this.startedAt = this.now();
    this.fd = openSync(this.file, 'a');
  }

  /** Seconds of wall time of the run so far, including the time before a resume. */
  elapsed(): number {
    return this.timeOffset + (this.now() - this.startedAt);
  }

  logTrain(entry: TrainEntry): TrainRecord {
    const record: TrainRecord = {
      type: 'train',
      step: entry.step,
      epoch: entry.epoch,
      lr: entry.lr,
      loss: entry.loss,
      loss_main: entry.loss_main,
      loss_sub: entry.loss_sub ?? null,
      ratio: entry.ratio ?? null,
      img_per_s: entry.img_per_s,
      data_wait: entry.data_wait ?? null,
      time: entry.time ?? this.elapsed(),
    };
    this.append(record);
    return record;
  }

  logEval(entry: EvalEntry): EvalRecord {
    const record = { type: 'eval', ...entry } as EvalRecord;
    this.append(record);
    return record;
  }

  close(): void {
    if (this.fd !== null) {
      closeSync(this.fd);
      this.fd = null;
    }
  }

  private append(record: MetricsRecord): void {
    if (this.fd === null) throw new Error(`${this.file}: MetricsWriter is closed`);
    if (!Number.isInteger(record.step) || record.step < 0) {
      throw new OptionError('step', `must be a non-negative integer, got ${record.step} (${this.file})`);
    }
    // Steps going backwards would make truncate-on-resume remove the wrong lines.
    if (record.step < this.lastStep) {
      throw new OptionError('step', `${record.step} is before the last logged step ${this.lastStep} (${this.file})`);
    }
    this.lastStep = record.step;
    writeSync(this.fd, formatRecord(record));
    if (this.fsync) fsyncSync(this.fd);
  }
}
