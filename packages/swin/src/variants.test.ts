/**
 * Swin off the fixture's happy path: inputs that are not whole patches or windows (HF maybe_pad),
 * odd maps at patch merging, windows shrunk to a small map, the block mask-token operator, and
 * the DropSub / PathSub sub passes.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { Rng, tf, withMaskSub, type DropMask } from '@masksub/core';
import { SwinModel } from './index.js';

const tiny = { model_type: 'swin', image_size: 16, patch_size: 2, embed_dim: 8, depths: [2, 2], num_heads: [2, 2], window_size: 4, num_labels: 5, drop_path_rate: 0 };

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

function release(r: { mainLogits: tf.Tensor; subLogits: tf.Tensor | null; grads: Map<string, tf.Tensor> }): void {
  tf.dispose([r.mainLogits, ...(r.subLogits ? [r.subLogits] : []), ...r.grads.values()]);
}

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('Swin padding and window rules', () => {
  it('an input that is not whole patches equals the same input zero-padded on the right/bottom', () => {
    const model = new SwinModel(tiny, { rng: new Rng(1) });
    const x = tf.randomNormal([2, 3, 15, 13], 0, 1, 'float32', 4);
    // 15 x 13 -> whole patches of 2: 16 x 14.
    const padded = tf.pad(x, [[0, 0], [0, 0], [0, 1], [0, 1]]);
    const a = model.forward({ pixel_values: x });
    const b = model.forward({ pixel_values: padded });
    expect(a.shape).toEqual([2, 5]);
    expect(maxAbsDiff(a, b)).toBeLessThan(1e-6);
    // ...and is not simply independent of the padding amount (16 x 16 is one more column of patches).
    const more = model.forward({ pixel_values: tf.pad(x, [[0, 0], [0, 0], [0, 1], [0, 3]]) });
    expect(maxAbsDiff(a, more)).toBeGreaterThan(1e-5);
    tf.dispose([x, padded, a, b, more]);
    model.dispose();
  });

  it('maps that are not whole windows (and odd at merging) run forward and backward with finite gradients', () => {
    // 20 px / 2 = 10x10 tokens: windows of 4 pad to 12x12 (shift mask on the padded map); merging
    // pads 10 -> 10 (even) then stage 2 is 5x5 > 4: padded to 8x8 again.
    const model = new SwinModel({ ...tiny, image_size: 20 }, { rng: new Rng(2) });
    const x = tf.randomNormal([2, 3, 20, 20], 0, 1, 'float32', 5);
    const r = withMaskSub(model, { seed: 3 }).computeGradients({ inputs: { pixel_values: x }, targets: { labels: tf.tensor1d([1, 4], 'int32') } });
    expect(r.subLogits!.shape).toEqual([2, 5]);
    for (const [name, g] of r.grads) {
      const values = g.dataSync();
      expect(values.every(Number.isFinite), name).toBe(true);
    }
    expect(r.grads.get('swin.encoder.layers.1.blocks.1.attention.self.relative_position_bias_table')!.dataSync().some((v) => v !== 0)).toBe(true);
    release(r);
    // Odd maps at merging: 18 px -> 9x9 tokens -> merged to 5x5.
    const odd = new SwinModel({ ...tiny, image_size: 18 }, { rng: new Rng(2) });
    const y = odd.forward({ pixel_values: tf.randomNormal([1, 3, 18, 18]) });
    expect(Array.from(y.dataSync()).every(Number.isFinite)).toBe(true);
    tf.dispose([x, y]);
    model.dispose();
    odd.dispose();
  });

  it('a map smaller than the window uses one window and only the central part of the bias table', () => {
    // 8 px / 2 = 4x4 tokens with window 7: one 4x4 window, offsets |d| <= 3 of a 13x13 table.
    const model = new SwinModel({ ...tiny, image_size: 8, window_size: 7, depths: [2], num_heads: [2] }, { rng: new Rng(3) });
    const x = tf.randomNormal([2, 3, 8, 8], 0, 1, 'float32', 6);
    const r = withMaskSub(model, { variant: 'none' }).computeGradients({ inputs: { pixel_values: x }, targets: { labels: tf.tensor1d([0, 2], 'int32') } });
    for (const block of [0, 1]) {
      const g = r.grads.get(`swin.encoder.layers.0.blocks.${block}.attention.self.relative_position_bias_table`)!;
      expect(g.shape).toEqual([169, 2]);
      const data = g.dataSync();
      let inside = 0;
      for (let row = 0; row < 169; row++) {
        const dy = Math.floor(row / 13) - 6;
        const dx = (row % 13) - 6;
        const rowMax = Math.max(Math.abs(data[2 * row]), Math.abs(data[2 * row + 1]));
        if (Math.abs(dy) <= 3 && Math.abs(dx) <= 3) inside = Math.max(inside, rowMax);
        else expect(rowMax, `row ${row} (dy ${dy}, dx ${dx})`).toBe(0);
      }
      expect(inside).toBeGreaterThan(0);
    }
    release(r);
    x.dispose();
    model.dispose();
  });
});

describe('Swin mask-token sub pass', () => {
  it('masks square blocks of 32 px (at most half the grid), and the mask token reaches only masked tokens', () => {
    expect(new SwinModel({ ...tiny, image_size: 224, patch_size: 4, embed_dim: 8, depths: [1], num_heads: [1], window_size: 7 }).maskBlockTokens).toBe(8);
    const model = new SwinModel(tiny, { rng: new Rng(4) });
    // 8x8 grid: 32 px would be one 16-token block; capped to 4 tokens so blocks can be kept and dropped.
    expect(model.maskBlockTokens).toBe(4);
    const x = tf.randomNormal([3, 3, 16, 16], 0, 1, 'float32', 7);
    const op = model.dropOperator('mask-token');
    const mask = op.sample({ pixel_values: x }, 0.5, new Rng(9));
    if (mask.kind !== 'mask-token') throw new Error('expected a mask-token mask');
    expect(mask.tokens).toBe(64);
    for (let b = 0; b < 3; b++) {
      const rows = Array.from({ length: 8 }, (_, y) => Array.from(mask.masked.subarray(b * 64 + y * 8, b * 64 + y * 8 + 8)));
      // Each 4x4 block is all masked or all kept; 2 of 4 blocks masked at ratio 0.5.
      let maskedBlocks = 0;
      for (const [by, bx] of [[0, 0], [0, 4], [4, 0], [4, 4]]) {
        const cells = rows.slice(by, by + 4).flatMap((r) => r.slice(bx, bx + 4));
        expect(new Set(cells).size).toBe(1);
        maskedBlocks += cells[0];
      }
      expect(maskedBlocks).toBe(2);
    }
    const view = op.apply({ pixel_values: x }, mask);
    const base = model.forward(view.inputs, view.forward);
    const clean = model.forward({ pixel_values: x });
    expect(maxAbsDiff(base, clean)).toBeGreaterThan(1e-4);
    const none = model.forward({ pixel_values: x }, { maskedPositions: tf.zeros([3, 64]) });
    expect(maxAbsDiff(none, clean)).toBeLessThan(1e-6);
    const r = withMaskSub(model).computeGradients({ inputs: { pixel_values: x }, targets: { labels: tf.tensor1d([0, 1, 2], 'int32') } }, 0, mask as DropMask);
    expect(r.grads.get('swin.embeddings.mask_token')!.dataSync().some((v) => v !== 0)).toBe(true);
    release(r);
    tf.dispose([x, base, clean, none, view.forward.maskedPositions!]);
    model.dispose();
  });

  it('offers zero-fill, and rejects token removal naming the option', () => {
    const model = new SwinModel(tiny);
    expect(model.dropOperator('zero-fill').kind).toBe('zero-fill');
    expect(() => model.dropOperator('token-removal')).toThrow(/option 'drop'/);
    model.dispose();
  });
});

describe('Swin DropSub / PathSub', () => {
  for (const variant of ['dropsub', 'pathsub'] as const) {
    it(`${variant}: the sub pass is stochastic and seeded, the main pass deterministic`, () => {
      const model = new SwinModel(tiny, { rng: new Rng(5) });
      const x = tf.randomNormal([2, 3, 16, 16], 0, 1, 'float32', 8);
      const batch = { inputs: { pixel_values: x }, targets: { labels: tf.tensor1d([0, 3], 'int32') } };
      const a = withMaskSub(model, { variant, ratio: 0.5, seed: 1 }).computeGradients(batch);
      const b = withMaskSub(model, { variant, ratio: 0.5, seed: 2 }).computeGradients(batch);
      const c = withMaskSub(model, { variant, ratio: 0.5, seed: 1 }).computeGradients(batch);
      expect(maxAbsDiff(a.mainLogits, b.mainLogits)).toBe(0);
      expect(maxAbsDiff(a.subLogits!, a.mainLogits)).toBeGreaterThan(1e-4);
      expect(maxAbsDiff(a.subLogits!, b.subLogits!)).toBeGreaterThan(1e-4);
      expect(maxAbsDiff(a.subLogits!, c.subLogits!)).toBe(0);
      [a, b, c].forEach(release);
      x.dispose();
      model.dispose();
    });
  }
});
