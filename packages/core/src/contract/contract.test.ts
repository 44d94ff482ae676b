import { describe, expect, it } from 'vitest';
import { Rng } from '../rng.js';
import { tf } from '../tf.js';
import { keptCount, maskTokenSwap, sampleBlockMask, sampleKeepIndices, tokenMasking, tokenRemoval, zeroFill, dropoutSub, dropPathSub } from './drop.js';
import { bceWithLogits, binaryCrossEntropyLoss, contrastiveLoss, crossEntropyLoss, denseTargets, logSoftmax, softCrossEntropy } from './loss.js';
import { ratioSchedule, weightSchedule, type RatioScheduleSpec } from './schedule.js';

describe('drop operators', () => {
  it('one count rule: floor(N (1 - r)) units stay, as the official int(L * (1 - r))', () => {
    // The main ViT job: 49 tokens at r = 0.5 keep 24 (round would keep 25).
    expect(keptCount(49, 0.5)).toBe(24);
    expect(sampleKeepIndices(2, 49, 0.5, new Rng(1)).length).toBe(2 * 24);
    // Swin's 7 x 7 blocks: L - int(L (1 - r)) = 25 masked.
    const blocks = sampleBlockMask(1, 7, 7, 1, 0.5, new Rng(2));
    expect(blocks.reduce((a, b) => a + b, 0)).toBe(25);
    // Float64 arithmetic as Python's: 10 * (1 - 0.7) = 3.0000000000000004 -> 3; 10 * (1 - 0.9) = 0.99.. -> at least 1.
    expect(keptCount(10, 0.7)).toBe(3);
    expect(keptCount(10, 0.9)).toBe(1);
    expect(keptCount(4, 0)).toBe(4);
    // Zero-fill: 3 x 3 squares at r = 0.5 keep 4 and zero 5.
    const x = tf.ones([1, 1, 96, 96]);
    const zf = zeroFill(32).sample({ pixel_values: x }, 0.5, new Rng(3));
    if (zf.kind !== 'zero-fill') throw new Error('kind');
    expect(zf.pixelMask.reduce((a, b) => a + b, 0)).toBe(4 * 32 * 32);
    x.dispose();
  });

  it('token removal keeps floor(N(1-r)) distinct ascending indices per sample, reproducibly', () => {
    const a = sampleKeepIndices(3, 64, 0.5, new Rng(1));
    const b = sampleKeepIndices(3, 64, 0.5, new Rng(1));
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(a.length).toBe(3 * 32);
    for (let s = 0; s < 3; s++) {
      const row = Array.from(a.subarray(s * 32, s * 32 + 32));
      expect(new Set(row).size).toBe(32);
      expect(row).toEqual([...row].sort((x, y) => x - y));
      expect(Math.min(...row)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...row)).toBeLessThan(64);
    }
    // Different samples draw different subsets.
    expect(Array.from(a.subarray(0, 32))).not.toEqual(Array.from(a.subarray(32, 64)));
    const x = tf.zeros([3, 3, 32, 32]);
    const mask = tokenRemoval(64).sample({ pixel_values: x }, 0.75, new Rng(2));
    expect(mask.kind === 'token-removal' && mask.keep).toBe(16);
    x.dispose();
  });

  it('rejects ratios outside [0, 1) naming the option', () => {
    expect(() => sampleKeepIndices(1, 4, 1, new Rng(0))).toThrow(/ratio.*\[0, 1\)/);
    expect(() => sampleKeepIndices(1, 4, -0.1, new Rng(0))).toThrow(/ratio/);
    expect(() => ratioSchedule(1.5)).toThrow(/ratio.start/);
  });

  it('block masks drop whole blocks at the ratio', () => {
    const m = sampleBlockMask(2, 8, 8, 2, 0.5, new Rng(3));
    for (let b = 0; b < 2; b++) {
      const row = m.subarray(b * 64, b * 64 + 64);
      expect(row.reduce((s, v) => s + v, 0)).toBe(32);
      // Each 2x2 block is all-or-nothing.
      for (let by = 0; by < 4; by++)
        for (let bx = 0; bx < 4; bx++) {
          const cells = [row[by * 16 + bx * 2], row[by * 16 + bx * 2 + 1], row[by * 16 + 8 + bx * 2], row[by * 16 + 8 + bx * 2 + 1]];
          expect(new Set(cells).size).toBe(1);
        }
    }
    const x = tf.zeros([2, 3, 64, 64]);
    const mt = maskTokenSwap(8, 8, 2).sample({ pixel_values: x }, 0.5, new Rng(3));
    expect(mt.kind === 'mask-token' && Array.from(mt.masked)).toEqual(Array.from(m));
    x.dispose();
  });

  it('zero-fill zeroes exactly the dropped 32x32 squares, NCHW and NHWC', () => {
    const x = tf.ones([2, 3, 64, 64]);
    const op = zeroFill(32);
    const mask = op.sample({ pixel_values: x }, 0.5, new Rng(4));
    const view = op.apply({ pixel_values: x }, mask);
    const out = view.inputs.pixel_values.arraySync() as number[][][][];
    for (let b = 0; b < 2; b++) {
      let zeroSquares = 0;
      for (let sy = 0; sy < 2; sy++)
        for (let sx = 0; sx < 2; sx++) {
          const v = out[b][1][sy * 32 + 5][sx * 32 + 7];
          expect(out[b][2][sy * 32 + 31][sx * 32]).toBe(v);
          if (v === 0) zeroSquares++;
        }
      expect(zeroSquares).toBe(2);
    }
    const nhwc = zeroFill(32, 'image', 'NHWC');
    const y = tf.ones([1, 64, 64, 3]);
    const vm = nhwc.apply({ image: y }, nhwc.sample({ image: y }, 0.25, new Rng(5)));
    expect(tf.sum(vm.inputs.image).dataSync()[0]).toBe(64 * 64 * 3 * 0.75);
    tf.dispose([x, y, view.inputs.pixel_values, vm.inputs.image]);
  });

  it('token masking replaces n - floor(n (1 - r)) real tokens by [MASK], never specials or padding', () => {
    const ids = tf.tensor2d([[101, 5, 6, 7, 8, 9, 10, 11, 102, 0], [101, 20, 21, 102, 0, 0, 0, 0, 0, 0]], undefined, 'int32');
    const att = tf.tensor2d([[1, 1, 1, 1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]], undefined, 'int32');
    const op = tokenMasking(103, [101, 102, 0]);
    const mask = op.sample({ input_ids: ids, attention_mask: att }, 0.15, new Rng(6));
    if (mask.kind !== 'token-masking') throw new Error('kind');
    const masked = Array.from(mask.masked);
    expect(masked.slice(0, 10).reduce((a, b) => a + b, 0)).toBe(2); // 7 - floor(7 * 0.85) = 2
    expect(masked.slice(10).reduce((a, b) => a + b, 0)).toBe(1); // at least one
    for (const i of [0, 8, 9, 10, 13, 14]) expect(masked[i]).toBe(0);
    for (let i = 0; i < 20; i++) expect(mask.maskedIds[i]).toBe(masked[i] ? 103 : ids.dataSync()[i]);
    const view = op.apply({ input_ids: ids }, mask);
    expect(Array.from(view.inputs.input_ids.dataSync())).toEqual(Array.from(mask.maskedIds));
    tf.dispose([ids, att, view.inputs.input_ids]);
  });

  it('dropsub and pathsub only carry a rate and a seed to the sub pass', () => {
    const d = dropoutSub().apply({}, dropoutSub().sample({}, 0.3, new Rng(1)));
    expect(d.forward.dropoutRate).toBe(0.3);
    expect(d.forward.dropPathRate).toBeUndefined();
    const p = dropPathSub().apply({}, dropPathSub().sample({}, 0.2, new Rng(1)));
    expect(p.forward.dropPathRate).toBe(0.2);
    // The official sub pass sets every block's drop-path probability to r, not a ramp.
    expect(p.forward.dropPathRule).toBe('uniform');
    expect(p.forward.seed).toBe(d.forward.seed);
  });
});

describe('relaxed losses', () => {
  const logits = () => tf.tensor2d([[2, -1, 0.5], [0.1, 0.2, -3]]);

  it('log-softmax and soft CE match hand-computed values', () => {
    const x = logits();
    const ls = logSoftmax(x).arraySync() as number[][];
    const lse0 = Math.log(Math.exp(2) + Math.exp(-1) + Math.exp(0.5));
    expect(ls[0][0]).toBeCloseTo(2 - lse0, 6);
    const ce = softCrossEntropy(x, tf.tensor2d([[1, 0, 0], [0, 0, 1]])).dataSync()[0];
    const lse1 = Math.log(Math.exp(0.1) + Math.exp(0.2) + Math.exp(-3));
    expect(ce).toBeCloseTo(((lse0 - 2) + (lse1 + 3)) / 2, 6);
  });

  it('label smoothing follows timm (1-eps+eps/C on the label, eps/C elsewhere)', () => {
    const t = denseTargets({ labels: tf.tensor1d([1], 'int32') }, 4, 0.1).arraySync() as number[][];
    expect(t[0][1]).toBeCloseTo(0.925, 6);
    expect(t[0][0]).toBeCloseTo(0.025, 6);
  });

  it('BCE with logits is stable for large logits and matches the formula', () => {
    const v = bceWithLogits(tf.tensor2d([[100, -100, 0.3]]), tf.tensor2d([[1, 0, 0.5]])).dataSync()[0];
    const third = Math.max(0.3, 0) - 0.3 * 0.5 + Math.log1p(Math.exp(-0.3));
    expect(v).toBeCloseTo(third / 3, 6);
  });

  it('the sub loss gives the main logits no gradient, for CE, BCE and contrastive', () => {
    for (const loss of [crossEntropyLoss(), binaryCrossEntropyLoss(), contrastiveLoss()]) {
      const main = tf.tensor2d([[1, 2], [0.5, -1]]);
      const sub = tf.tensor2d([[0.3, 0.1], [2, 1]]);
      const [gMain, gSub] = tf.grads((m: tf.Tensor, s: tf.Tensor) => loss.sub(s, loss.teacher(m)))([main, sub]);
      expect(Math.max(...Array.from(tf.abs(gMain).dataSync()))).toBe(0);
      expect(Math.max(...Array.from(tf.abs(gSub).dataSync()))).toBeGreaterThan(0);
    }
  });

  it('contrastive main loss is symmetric CE over rows and columns', () => {
    const s = tf.tensor2d([[3, 1], [0, 2]]);
    const v = contrastiveLoss().main(s, { labels: tf.tensor1d([0, 1], 'int32') }).dataSync()[0];
    const rowCe = (Math.log(Math.exp(3) + Math.exp(1)) - 3 + Math.log(1 + Math.exp(2)) - 2) / 2;
    const colCe = (Math.log(Math.exp(3) + 1) - 3 + Math.log(Math.exp(1) + Math.exp(2)) - 2) / 2;
    expect(v).toBeCloseTo((rowCe + colCe) / 2, 5);
  });
});

describe('weight schedule', () => {
  it('defaults to (1/2, 1/2) and r = 0.5', () => {
    const s = weightSchedule();
    expect(s.weights(10)).toEqual({ main: 0.5, sub: 0.5 });
    expect(s.ratio(1000)).toBe(0.5);
  });
  it('ramps linearly and by cosine, then holds', () => {
    const lin = ratioSchedule({ start: 0, end: 0.5, steps: 100 });
    expect(lin(0)).toBe(0);
    expect(lin(50)).toBeCloseTo(0.25);
    expect(lin(500)).toBe(0.5);
    const cos = ratioSchedule({ start: 0.2, end: 0.6, steps: 10, ramp: 'cosine' });
    expect(cos(5)).toBeCloseTo(0.4);
    expect(cos(2)).toBeLessThan(0.2 + 0.4 * 0.2);
    expect(() => ratioSchedule({ start: 0.1, end: 0.5, ramp: 'linear' })).toThrow(/ratio.steps/);
  });
  it('refuses a ramp it does not know, naming the option and the known ones (it would have run as cosine)', () => {
    const misspelt = { start: 0.1, end: 0.5, steps: 10, ramp: 'cosin' } as unknown as RatioScheduleSpec;
    expect(() => ratioSchedule(misspelt)).toThrow(/option 'ratio\.ramp': unknown ramp "cosin" \(constant, linear, cosine\)/);
  });
});
