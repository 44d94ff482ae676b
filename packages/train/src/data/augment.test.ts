import { describe, expect, it } from 'vitest';
import { Rng } from '@masksub/core';
import { augmentImage, cutmixBox, mixBatch, mixupTargets, randomResizedCropBox, roundHalfEven, sampleBeta } from './augment.js';
import { explicitPreprocessSpec } from './preprocess.js';
import type { DecodedImage } from './types.js';

/** Batch whose sample i is filled with the value i (one channel plane per channel). */
function constantBatch(B: number, C: number, H: number, W: number): Float32Array {
  const x = new Float32Array(B * C * H * W);
  for (let i = 0; i < B; i++) x.fill(i, i * C * H * W, (i + 1) * C * H * W);
  return x;
}

describe('random resized crop', () => {
  it('stays inside the image with area and aspect in range, deterministically', () => {
    const a = new Rng(3);
    const b = new Rng(3);
    for (let k = 0; k < 200; k++) {
      const box = randomResizedCropBox(a, 40, 60);
      expect(randomResizedCropBox(b, 40, 60)).toEqual(box);
      const [top, left, h, w] = box;
      expect(top).toBeGreaterThanOrEqual(0);
      expect(left).toBeGreaterThanOrEqual(0);
      expect(top + h).toBeLessThanOrEqual(40);
      expect(left + w).toBeLessThanOrEqual(60);
      // Rounding of w and h can move area/ratio slightly past the sampled bounds.
      expect((h * w) / 2400).toBeGreaterThan(0.06);
      expect(w / h).toBeGreaterThan(0.6);
      expect(w / h).toBeLessThan(1.6);
    }
  });

  it('falls back to a center crop at the allowed ratio when no attempt fits', () => {
    // scale > 1 never fits, so the fallback is taken: a 100x10 image clipped to ratio 4/3.
    expect(randomResizedCropBox(new Rng(1), 10, 100, [2, 3])).toEqual([0, 43, 10, 13]);
  });

  it('rounds half to even like Python', () => {
    expect([0.5, 1.5, 2.5, -0.5, 2.4].map(roundHalfEven)).toEqual([0, 2, 2, -0, 2]);
  });

  it('produces the output size and is reproducible from the rng state', () => {
    const img: DecodedImage = { pixels: Uint8Array.from({ length: 50 * 30 * 3 }, (_, i) => i % 256), height: 30, width: 50, channels: 3 };
    const spec = explicitPreprocessSpec({ size: 16 });
    const aug = { randomResizedCrop: {}, padCrop: 2, hflip: 0.5 };
    const a = augmentImage(img, spec, aug, new Rng(9));
    const b = augmentImage(img, spec, aug, new Rng(9));
    expect([a.height, a.width, a.channels]).toEqual([16, 16, 3]);
    expect(a.pixels).toEqual(b.pixels);
    expect(augmentImage(img, spec, aug, new Rng(10)).pixels).not.toEqual(a.pixels);
  });
});

describe('mixup / cutmix (timm semantics)', () => {
  it('Beta(a, a) has mean 1/2 and the right variance', () => {
    const rng = new Rng(7);
    const n = 4000;
    for (const alpha of [0.2, 1, 3]) {
      let s = 0;
      let s2 = 0;
      let outside = 0;
      for (let i = 0; i < n; i++) {
        const x = sampleBeta(rng, alpha, alpha);
        if (!(x >= 0 && x <= 1)) outside++;
        s += x;
        s2 += x * x;
      }
      expect(outside).toBe(0);
      const mean = s / n;
      const variance = s2 / n - mean * mean;
      expect(mean).toBeCloseTo(0.5, 1);
      expect(variance).toBeCloseTo(1 / (4 * (2 * alpha + 1)), 1);
    }
  });

  it('smoothed one-hot targets: off = eps/K, on = 1 - eps + eps/K', () => {
    const t = mixupTargets(Int32Array.from([2, 0]), 4, 1, 0.1);
    expect(Array.from(t.subarray(0, 4)).map((v) => +v.toFixed(6))).toEqual([0.025, 0.025, 0.925, 0.025]);
    expect(() => mixupTargets(Int32Array.from([4]), 4, 1, 0)).toThrow(/label 4 is outside 0\.\.3/);
  });

  it('mixup: images are lam-weighted with the flipped batch and targets sum to 1', () => {
    const [B, C, H, W] = [4, 2, 3, 3];
    const x = constantBatch(B, C, H, W);
    const labels = Int32Array.from([0, 1, 2, 3]);
    const r = mixBatch(x, [B, C, H, W], labels, 5, { mixupAlpha: 0.8, labelSmoothing: 0.1 }, new Rng(11));
    expect(r.mode).toBe('mixup');
    expect(r.lam).toBeGreaterThan(0);
    expect(r.lam).toBeLessThan(1);
    for (let i = 0; i < B; i++) {
      expect(x[i * C * H * W]).toBeCloseTo(i * r.lam + (B - 1 - i) * (1 - r.lam), 5);
      const row = r.targets.subarray(i * 5, (i + 1) * 5);
      expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
      expect(row[labels[i]] - 0.02).toBeCloseTo(0.9 * r.lam, 5);
      expect(row[labels[B - 1 - i]] - 0.02).toBeCloseTo(0.9 * (1 - r.lam), 5);
    }
  });

  it('cutmix: pasted area matches 1 - lam and targets sum to 1', () => {
    const [B, C, H, W] = [6, 3, 16, 20];
    for (let seed = 0; seed < 20; seed++) {
      const x = constantBatch(B, C, H, W);
      const labels = Int32Array.from([0, 1, 2, 3, 4, 5]);
      const r = mixBatch(x, [B, C, H, W], labels, 6, { cutmixAlpha: 1, labelSmoothing: 0 }, new Rng(seed));
      expect(r.mode).toBe('cutmix');
      // Count pixels of sample 0 that came from its partner B-1 (value 5).
      let pasted = 0;
      for (let p = 0; p < H * W; p++) if (x[p] === B - 1) pasted++;
      expect(1 - pasted / (H * W)).toBeCloseTo(r.lam, 10);
      const box = r.box!;
      expect(pasted).toBe((box.y1 - box.y0) * (box.x1 - box.x0));
      for (let i = 0; i < B; i++) {
        const row = r.targets.subarray(i * 6, (i + 1) * 6);
        expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
        if (labels[i] !== labels[B - 1 - i]) expect(row[labels[i]]).toBeCloseTo(r.lam, 6);
      }
    }
  });

  it('switch probability chooses between mixup and cutmix; prob 0 only smooths', () => {
    const rng = new Rng(5);
    const modes = { mixup: 0, cutmix: 0, none: 0 };
    for (let k = 0; k < 200; k++) modes[mixBatch(constantBatch(2, 1, 4, 4), [2, 1, 4, 4], Int32Array.from([0, 1]), 2, { mixupAlpha: 1, cutmixAlpha: 1, switchProb: 0.25 }, rng).mode]++;
    expect(modes.cutmix / 200).toBeGreaterThan(0.15);
    expect(modes.cutmix / 200).toBeLessThan(0.35);
    const none = mixBatch(constantBatch(2, 1, 4, 4), [2, 1, 4, 4], Int32Array.from([0, 1]), 2, { mixupAlpha: 1, prob: 0, labelSmoothing: 0.2 }, rng);
    expect(none).toMatchObject({ mode: 'none', lam: 1 });
    expect(Array.from(none.targets).map((v) => +v.toFixed(6))).toEqual([0.9, 0.1, 0.1, 0.9]);
  });

  it('cutmix box is clipped to the image', () => {
    const rng = new Rng(2);
    for (let k = 0; k < 100; k++) {
      const b = cutmixBox(rng, 10, 12, 0.3);
      expect(b.y0).toBeGreaterThanOrEqual(0);
      expect(b.y1).toBeLessThanOrEqual(10);
      expect(b.x0).toBeGreaterThanOrEqual(0);
      expect(b.x1).toBeLessThanOrEqual(12);
    }
  });
});
