import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { OptionError } from '@masksub/core';
import { formatDuration, formatProgressLine, TrainingProgress, type ProgressStream } from './progress.js';

/** Collects what is written; `isTTY` decides which display TrainingProgress picks. */
function captureStream(isTTY: boolean): { stream: ProgressStream; text: () => string } {
  const chunks: string[] = [];
  const w = new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  }) as Writable & { isTTY?: boolean; columns?: number };
  w.isTTY = isTTY;
  w.columns = 200;
  return { stream: w, text: () => chunks.join('') };
}

const update = (step: number) => ({ step, epoch: step / 50, loss_main: 2.5 - step / 100, loss_sub: 2.75, lr: 3e-4, img_per_s: 42.25 });

describe('TrainingProgress', () => {
  it('is quiet automatically when the stream is not a TTY, printing every N steps and the last', () => {
    const out = captureStream(false);
    let clock = 0;
    const p = new TrainingProgress({ totalSteps: 25, logEvery: 10, stream: out.stream, now: () => clock });
    expect(p.quiet).toBe(true);
    for (let s = 1; s <= 25; s++) {
      clock = s * 2000; // 2 s per step
      p.update(update(s));
    }
    p.log('eval step 25: top1 50.00');
    p.stop();
    const lines = out.text().trim().split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toBe('step 10/25 ( 40.0%) | epoch 0.20 | loss_main 2.4000 | loss_sub 2.7500 | lr 3.00e-4 | 42.3 img/s | eta 0:30');
    expect(lines[1]).toMatch(/^step 20\/25 .* eta 0:10$/);
    expect(lines[2]).toMatch(/^step 25\/25 \(100\.0%\) .* eta 0:00$/);
    expect(lines[3]).toBe('eval step 25: top1 50.00');
    expect(out.text()).not.toContain('\x1B'); // no escape codes in a log file
  });

  it('counts ETA from the resumed step', () => {
    const out = captureStream(false);
    let clock = 0;
    const p = new TrainingProgress({ totalSteps: 100, startStep: 90, logEvery: 5, stream: out.stream, now: () => clock });
    clock = 5000;
    p.update(update(95)); // 5 steps in 5 s -> 5 left take 5 s
    expect(out.text()).toMatch(/eta 0:05\n$/);
  });

  it('draws a bar with ETA, img/s, losses and lr on a TTY', () => {
    const out = captureStream(true);
    const sigintListeners = process.listenerCount('SIGINT');
    const p = new TrainingProgress({ totalSteps: 10, stream: out.stream });
    expect(p.quiet).toBe(false);
    // Ctrl-C must still stop a training run: the bar installs no signal handler.
    expect(process.listenerCount('SIGINT')).toBe(sigintListeners);
    p.update(update(3));
    p.log('checkpoint saved');
    p.update({ ...update(4), loss_sub: null });
    p.stop();
    const text = out.text();
    expect(text).toContain('3/10 30%');
    expect(text).toContain('ETA');
    expect(text).toContain('42.3 img/s');
    expect(text).toContain('loss main 2.4700 sub 2.7500');
    expect(text).toContain('loss main 2.4600 sub -');
    expect(text).toContain('lr 3.00e-4');
    expect(text).toContain('checkpoint saved');
  });

  it('a forced quiet mode on a TTY prints lines', () => {
    const out = captureStream(true);
    const p = new TrainingProgress({ totalSteps: 2, quiet: true, logEvery: 1, stream: out.stream });
    p.update(update(1));
    p.stop();
    expect(out.text()).toMatch(/^step 1\/2/);
  });

  it('rejects bad options by name', () => {
    expect(() => new TrainingProgress({ totalSteps: 0 })).toThrow(OptionError);
    expect(() => new TrainingProgress({ totalSteps: 5, startStep: 6 })).toThrow(/startStep/);
    expect(() => new TrainingProgress({ totalSteps: 5, logEvery: 0 })).toThrow(/logEvery/);
  });
});

describe('formatting', () => {
  it('formats durations and NaN losses', () => {
    expect(formatDuration(59.6)).toBe('1:00');
    expect(formatDuration(3725)).toBe('1:02:05');
    expect(formatDuration(Number.NaN)).toBe('?');
    expect(formatProgressLine({ step: 1, loss_main: Number.NaN, lr: 0.1, img_per_s: 1 }, 10, 9)).toBe(
      'step  1/10 ( 10.0%) | loss_main NaN | loss_sub - | lr 1.00e-1 | 1.0 img/s | eta 0:09',
    );
  });

  it('shows the share of time spent waiting for data when the trainer measured it', () => {
    expect(formatProgressLine({ step: 2, loss_main: 1, lr: 0.1, img_per_s: 8, data_wait: 0.034 }, 10, 4)).toBe(
      'step  2/10 ( 20.0%) | loss_main 1.0000 | loss_sub - | lr 1.00e-1 | 8.0 img/s | data wait 3% | eta 0:04',
    );
  });
});
