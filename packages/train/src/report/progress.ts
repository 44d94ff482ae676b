/**
 * What a training run shows while it runs: a cli-progress bar (ETA, img/s, main and sub loss, lr)
 * on a terminal, or plain log lines every N steps when the output is a file or pipe (CI logs,
 * `nohup`, `| tee`), where a redrawn bar would turn into a wall of escape codes.
 */
import cliProgress from 'cli-progress';
import { OptionError } from '@masksub/core';

/** The output the display writes to; `isTTY`/`columns` as on a Node tty.WriteStream. */
export interface ProgressStream extends NodeJS.WritableStream {
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  totalSteps: number;
  /** Steps already done (a resumed run): the bar and ETA start from here. */
  startStep?: number;
  /** Plain log lines instead of a bar. Default: true when `stream` is not a TTY. */
  quiet?: boolean;
  /** In quiet mode, print a line every this many steps (and at the last step). Default 10. */
  logEvery?: number;
  /** Default process.stdout. */
  stream?: ProgressStream;
  /** Milliseconds clock for the quiet-mode ETA, for tests. */
  now?: () => number;
}

/** One progress update, normally made from the same values as the metrics.jsonl train record. */
export interface ProgressUpdate {
  step: number;
  epoch?: number;
  loss_main: number;
  /** Null/absent for a run without MaskSub. */
  loss_sub?: number | null;
  lr: number;
  img_per_s: number;
  /**
   * Share of the wall time since the last update spent waiting for the next batch (0..1): above a
   * few percent the input pipeline, not the step, sets the pace. Absent when not measured.
   */
  data_wait?: number;
}

function formatWait(v: number | undefined): string {
  return v === undefined || !Number.isFinite(v) ? '-' : `${(100 * v).toFixed(0)}%`;
}

/** `h:mm:ss` / `m:ss`, the way people read an ETA. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

function formatLoss(v: number | null | undefined): string {
  if (v === null || v === undefined) return '-';
  return Number.isFinite(v) ? v.toFixed(4) : String(v);
}

/** Learning rates span decades (warmup from 1e-6): exponent notation keeps them readable. */
function formatLr(v: number): string {
  return Number.isFinite(v) ? v.toExponential(2) : String(v);
}

/** The plain line quiet mode prints; also handy for a final summary. */
export function formatProgressLine(u: ProgressUpdate, totalSteps: number, etaSeconds: number): string {
  const width = String(totalSteps).length;
  const pct = ((100 * u.step) / totalSteps).toFixed(1).padStart(5);
  const parts = [
    `step ${String(u.step).padStart(width)}/${totalSteps} (${pct}%)`,
    ...(u.epoch !== undefined ? [`epoch ${u.epoch.toFixed(2)}`] : []),
    `loss_main ${formatLoss(u.loss_main)}`,
    `loss_sub ${formatLoss(u.loss_sub)}`,
    `lr ${formatLr(u.lr)}`,
    `${u.img_per_s.toFixed(1)} img/s`,
    ...(u.data_wait !== undefined ? [`data wait ${formatWait(u.data_wait)}`] : []),
    `eta ${formatDuration(etaSeconds)}`,
  ];
  return parts.join(' | ');
}

const BAR_FORMAT =
  '{bar} {value}/{total} {percentage}% | ETA {eta_formatted} | {img_per_s} img/s (data wait {data_wait}) | loss main {loss_main} sub {loss_sub} | lr {lr}';

export class TrainingProgress {
  readonly quiet: boolean;
  private readonly totalSteps: number;
  private readonly startStep: number;
  private readonly logEvery: number;
  private readonly stream: ProgressStream;
  private readonly now: () => number;
  private readonly startedAt: number;
  private lastPrintedStep = -1;
  private multibar: cliProgress.MultiBar | null = null;
  private bar: cliProgress.SingleBar | null = null;
  private stopped = false;

  constructor(options: ProgressOptions) {
    const { totalSteps } = options;
    if (!(Number.isInteger(totalSteps) && totalSteps > 0)) {
      throw new OptionError('totalSteps', `must be a positive integer, got ${totalSteps}`);
    }
    const startStep = options.startStep ?? 0;
    if (!(Number.isInteger(startStep) && startStep >= 0 && startStep <= totalSteps)) {
      throw new OptionError('startStep', `must be an integer in [0, ${totalSteps}], got ${startStep}`);
    }
    const logEvery = options.logEvery ?? 10;
    if (!(Number.isInteger(logEvery) && logEvery > 0)) {
      throw new OptionError('logEvery', `must be a positive integer, got ${logEvery}`);
    }
    this.totalSteps = totalSteps;
    this.startStep = startStep;
    this.logEvery = logEvery;
    this.stream = options.stream ?? process.stdout;
    this.quiet = options.quiet ?? this.stream.isTTY !== true;
    this.now = options.now ?? (() => performance.now());
    this.startedAt = this.now();

    if (!this.quiet) {
      this.multibar = new cliProgress.MultiBar(
        {
          format: BAR_FORMAT,
          stream: this.stream,
          // No hidden cursor and no SIGINT/SIGTERM handlers: cli-progress's gracefulExit installs
          // a listener, which stops Node from exiting on the first Ctrl-C; signals belong to the
          // trainer, and a visible cursor needs no restoring after a kill.
          hideCursor: false,
          gracefulExit: false,
          // ETA over the last 50 updates: recent speed, but not one slow step (an eval, a GC).
          etaBuffer: 50,
          barsize: 24,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar = this.multibar.create(totalSteps, startStep, {
        img_per_s: '-',
        loss_main: '-',
        loss_sub: '-',
        lr: '-',
        data_wait: '-',
      });
    }
  }

  update(u: ProgressUpdate): void {
    if (this.stopped) return;
    if (this.bar !== null && this.multibar !== null) {
      this.bar.update(u.step, {
        img_per_s: u.img_per_s.toFixed(1),
        loss_main: formatLoss(u.loss_main),
        loss_sub: formatLoss(u.loss_sub),
        lr: formatLr(u.lr),
        data_wait: formatWait(u.data_wait),
      });
      // cli-progress redraws from a timer, which never fires while a synchronous training step
      // holds the event loop; redraw now so the bar moves with every step.
      this.multibar.update();
      return;
    }
    const due = u.step % this.logEvery === 0 || u.step >= this.totalSteps;
    if (!due || u.step === this.lastPrintedStep) return;
    this.lastPrintedStep = u.step;
    this.stream.write(formatProgressLine(u, this.totalSteps, this.etaSeconds(u.step)) + '\n');
  }

  /** A line of text (an evaluation result, a checkpoint saved) printed above the bar. */
  log(line: string): void {
    if (this.stopped || this.multibar === null) {
      this.stream.write(line + '\n');
      return;
    }
    this.multibar.log(line + '\n');
    this.multibar.update();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.multibar?.stop();
  }

  /** Quiet-mode ETA: average speed of this process (a resumed run counts from its start step). */
  private etaSeconds(step: number): number {
    const done = step - this.startStep;
    const elapsed = (this.now() - this.startedAt) / 1000;
    if (done <= 0 || elapsed <= 0) return Number.NaN;
    return ((this.totalSteps - step) * elapsed) / done;
  }
}
