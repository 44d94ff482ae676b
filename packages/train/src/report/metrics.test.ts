import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileFormatError, OptionError } from '@masksub/core';
import { MetricsWriter, METRICS_FILE, parseMetrics, readMetrics, type TrainEntry } from './metrics.js';

function trainEntry(step: number, extra: Partial<TrainEntry> = {}): TrainEntry {
  return { step, epoch: step / 10, lr: 1e-3, loss: 2 - step * 0.01, loss_main: 1.5, loss_sub: 1.7, ratio: 0.5, img_per_s: 40, ...extra };
}

describe('MetricsWriter / readMetrics', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'masksub-metrics-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('writes one JSON line per record, readable before close (flushed per line)', () => {
    let clock = 100;
    const w = new MetricsWriter(dir, { now: () => clock });
    clock = 103.5;
    w.logTrain(trainEntry(1));
    w.logEval({ step: 1, epoch: 0.1, top1: 12.5, top5: 50, loss: 2.2 });
    // Read while the writer is still open: what a killed process would leave behind.
    const lines = readFileSync(join(dir, METRICS_FILE), 'utf8').trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(JSON.parse(lines[0])).toEqual({
      type: 'train', step: 1, epoch: 0.1, lr: 1e-3, loss: 1.99, loss_main: 1.5, loss_sub: 1.7, ratio: 0.5, img_per_s: 40, data_wait: null, time: 3.5,
    });
    expect(readMetrics(dir)).toEqual([
      { type: 'train', step: 1, epoch: 0.1, lr: 1e-3, loss: 1.99, loss_main: 1.5, loss_sub: 1.7, ratio: 0.5, img_per_s: 40, data_wait: null, time: 3.5 },
      { type: 'eval', step: 1, epoch: 0.1, top1: 12.5, top5: 50, loss: 2.2 },
    ]);
    w.close();
  });

  it('keeps a diverged (NaN) loss as NaN and a baseline without sub loss as null', () => {
    const w = new MetricsWriter(dir);
    w.logTrain(trainEntry(1, { loss: Number.NaN, loss_sub: undefined, ratio: undefined, time: 1 }));
    w.close();
    const [r] = readMetrics(join(dir, METRICS_FILE));
    expect(r.type).toBe('train');
    if (r.type !== 'train') return;
    expect(Number.isNaN(r.loss)).toBe(true);
    expect(r.loss_sub).toBeNull();
    expect(r.ratio).toBeNull();
  });

  it('a new run replaces an old metrics file', () => {
    const a = new MetricsWriter(dir);
    a.logTrain(trainEntry(5, { time: 1 }));
    a.close();
    const b = new MetricsWriter(dir);
    b.logTrain(trainEntry(1, { time: 1 }));
    b.close();
    expect(readMetrics(dir).map((r) => r.step)).toEqual([1]);
  });

  it('on resume drops records after the resumed step and continues wall time', () => {
    const a = new MetricsWriter(dir);
    for (let s = 1; s <= 4; s++) a.logTrain(trainEntry(s, { time: s * 10 }));
    a.logEval({ step: 4, epoch: 0.4, top1: 30, top5: 70, loss: 1.9 });
    for (let s = 5; s <= 7; s++) a.logTrain(trainEntry(s, { time: s * 10 }));
    a.logEval({ step: 7, epoch: 0.7, top1: 35, top5: 75, loss: 1.8 });
    a.close();
    // Crash during step 8's line.
    appendFileSync(join(dir, METRICS_FILE), '{"type":"train","step":8,"ep');

    let clock = 0;
    const b = new MetricsWriter(dir, { resumeStep: 4, now: () => clock });
    expect(readMetrics(dir).map((r) => `${r.type}:${r.step}`)).toEqual(['train:1', 'train:2', 'train:3', 'train:4', 'eval:4']);
    clock = 2;
    const r5 = b.logTrain(trainEntry(5));
    expect(r5.time).toBe(42); // 40 s before the checkpoint + 2 s since resuming
    b.close();
    const text = readFileSync(join(dir, METRICS_FILE), 'utf8');
    expect(text.endsWith('\n')).toBe(true);
    expect(parseMetrics(text, 'x').tornLine).toBeNull();
    expect(readMetrics(dir).map((r) => r.step)).toEqual([1, 2, 3, 4, 4, 5]);
  });

  it('refuses steps that go backwards and bad resume steps', () => {
    const w = new MetricsWriter(dir);
    w.logTrain(trainEntry(3, { time: 0 }));
    expect(() => w.logTrain(trainEntry(2, { time: 0 }))).toThrow(OptionError);
    w.close();
    expect(() => w.logTrain(trainEntry(4))).toThrow(/closed/);
    expect(() => new MetricsWriter(dir, { resumeStep: -1 })).toThrow(OptionError);
  });
});

describe('parseMetrics', () => {
  const good = '{"type":"train","step":1,"epoch":0,"lr":0.1,"loss":1,"loss_main":1,"loss_sub":null,"ratio":null,"img_per_s":3,"time":1}\n';

  it('drops a torn last line (not JSON, or JSON cut short) and reports it', () => {
    expect(parseMetrics(good + '{"type":"eval","st', 'm').records).toHaveLength(1);
    expect(parseMetrics(good + '{"type":"eval","st', 'm').tornLine).toBe('{"type":"eval","st');
    // Cut after a complete number: valid JSON would need the closing brace, but a cut value that
    // parses (e.g. a bare number) is still not a record.
    expect(parseMetrics(good + '12', 'm').records).toHaveLength(1);
    expect(parseMetrics(good + '\n\n', 'm').tornLine).toBeNull();
  });

  it('rejects a broken line that is not the last one, naming file and line', () => {
    const text = good + 'garbage\n' + good;
    expect(() => parseMetrics(text, 'run/metrics.jsonl')).toThrow(FileFormatError);
    expect(() => parseMetrics(text, 'run/metrics.jsonl')).toThrow(/run\/metrics\.jsonl: line 2/);
    const wrongField = good.replace('"lr":0.1', '"lr":"fast"') + good;
    expect(() => parseMetrics(wrongField, 'm')).toThrow(/line 1 .*lr/);
  });

  it('readMetrics names a missing file', () => {
    expect(() => readMetrics('/nonexistent/run')).toThrow(/\/nonexistent\/run\/metrics\.jsonl: no such metrics file/);
    expect(() => readMetrics('/nonexistent/m.jsonl')).toThrow(/\/nonexistent\/m\.jsonl: no such metrics file/);
  });

  it('reads a file written by hand', () => {
    const dir = mkdtempSync(join(tmpdir(), 'masksub-metrics-'));
    try {
      writeFileSync(join(dir, 'm.jsonl'), good);
      expect(readMetrics(join(dir, 'm.jsonl'))[0].step).toBe(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
