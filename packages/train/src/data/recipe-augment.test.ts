import { describe, expect, it } from 'vitest';
import { Rng } from '@masksub/core';
import { colorJitter } from './color-jitter.js';
import * as ops from './image-ops.js';
import { DataLoader } from './loader.js';
import { explicitPreprocessSpec } from './preprocess.js';
import { randomErase } from './random-erasing.js';
import { applyRandAugmentOp, parseRandAugment, randAugment, RAND_AUGMENT_INCREASING_OPS, sampleMagnitude } from './randaugment.js';
import { recipeLoaderOptions } from './recipe-augment.js';
import { repeatedEpochSize, repeatedOrder } from './repeat-sampler.js';
import { threeAugment } from './three-augment.js';
import type { DecodedImage, ImageDataset, ImageSample } from './types.js';

/**
 * Pillow 9.4 outputs for a 4x5 RGB image (pixel i*37 mod 256), produced once with
 * ImageEnhance / ImageOps / Image.rotate / Image.transform / ImageFilter.GaussianBlur; the ops
 * must reproduce them exactly (blur within 1 level: Pillow's fixed-point box blur).
 */
const PIL: Record<string, number[]> = {
  'input': [0, 37, 74, 111, 148, 185, 222, 3, 40, 77, 114, 151, 188, 225, 6, 43, 80, 117, 154, 191, 228, 9, 46, 83, 120, 157, 194, 231, 12, 49, 86, 123, 160, 197, 234, 15, 52, 89, 126, 163, 200, 237, 18, 55, 92, 129, 166, 203, 240, 21, 58, 95, 132, 169, 206, 243, 24, 61, 98, 135],
  'contrast1.7': [0, 0, 42, 105, 168, 231, 255, 0, 0, 47, 110, 173, 236, 255, 0, 0, 52, 115, 178, 241, 255, 0, 0, 57, 120, 183, 246, 255, 0, 0, 62, 125, 188, 251, 255, 0, 5, 68, 130, 193, 255, 255, 0, 10, 73, 136, 198, 255, 255, 0, 15, 78, 141, 204, 255, 255, 0, 20, 83, 146],
  'sharp1.7': [0, 37, 74, 111, 148, 185, 222, 3, 40, 77, 114, 151, 188, 225, 6, 43, 80, 117, 181, 232, 255, 0, 4, 55, 120, 184, 235, 231, 12, 49, 86, 123, 160, 238, 255, 0, 10, 61, 126, 190, 241, 255, 18, 55, 92, 129, 166, 203, 240, 21, 58, 95, 132, 169, 206, 243, 24, 61, 98, 135],
  'color0.3': [21, 32, 43, 132, 143, 154, 117, 52, 63, 98, 109, 120, 188, 199, 134, 64, 75, 86, 175, 186, 197, 30, 41, 52, 141, 152, 163, 126, 61, 72, 107, 118, 129, 197, 208, 143, 73, 84, 95, 184, 195, 206, 39, 50, 61, 150, 161, 172, 135, 70, 81, 116, 127, 138, 206, 217, 152, 82, 93, 104],
  'equalize': [0, 37, 74, 111, 148, 185, 222, 3, 40, 77, 114, 151, 188, 225, 6, 43, 80, 117, 154, 191, 228, 9, 46, 83, 120, 157, 194, 231, 12, 49, 86, 123, 160, 197, 234, 15, 52, 89, 126, 163, 200, 237, 18, 55, 92, 129, 166, 203, 240, 21, 58, 95, 132, 169, 206, 243, 24, 61, 98, 135],
  'autocontrast': [0, 36, 75, 117, 154, 197, 235, 0, 37, 81, 117, 160, 199, 235, 0, 45, 81, 122, 163, 199, 245, 9, 45, 85, 127, 163, 207, 245, 9, 47, 91, 127, 170, 209, 245, 9, 55, 91, 132, 173, 209, 255, 19, 55, 94, 137, 173, 217, 255, 19, 57, 100, 137, 179, 218, 255, 19, 64, 100, 142],
  'rotate_bicubic': [124, 116, 104, 240, 34, 71, 118, 48, 117, 166, 132, 106, 255, 8, 22, 44, 98, 140, 132, 138, 207, 3, 57, 96, 153, 166, 234, 45, 33, 75, 50, 87, 125, 179, 248, 111, 66, 106, 82, 171, 208, 178, 107, 151, 101, 76, 116, 188, 183, 146, 82, 182, 52, 85, 125, 205, 123, 124, 116, 104],
  'shear_bilinear': [14, 51, 88, 125, 128, 165, 202, 17, 54, 91, 128, 131, 188, 225, 6, 87, 124, 161, 95, 132, 169, 53, 90, 127, 164, 98, 135, 231, 12, 49, 160, 197, 62, 99, 136, 89, 126, 163, 200, 65, 102, 139, 124, 116, 104, 233, 28, 65, 102, 125, 162, 199, 236, 31, 68, 105, 128, 124, 116, 104],
  'blur1.2': [73, 95, 122, 96, 97, 123, 120, 103, 117, 137, 114, 100, 150, 126, 83, 90, 111, 127, 105, 112, 125, 119, 114, 122, 128, 115, 111, 136, 117, 98, 118, 125, 132, 123, 125, 126, 125, 128, 121, 121, 125, 117, 118, 118, 111, 139, 129, 136, 140, 128, 124, 136, 135, 117, 121, 135, 116, 107, 128, 114],
};

const img = (pixels: number[], height: number, width: number, channels: 1 | 3 = 3): DecodedImage => ({ pixels: Uint8Array.from(pixels), height, width, channels });
const tiny = img(PIL.input, 4, 5);
const FILL = [124, 116, 104];

describe('image ops (Pillow semantics)', () => {
  it('match Pillow on a fixed image', () => {
    expect(Array.from(ops.adjustContrast(tiny, 1.7).pixels)).toEqual(PIL['contrast1.7']);
    expect(Array.from(ops.adjustSharpness(tiny, 1.7).pixels)).toEqual(PIL['sharp1.7']);
    expect(Array.from(ops.adjustSaturation(tiny, 0.3).pixels)).toEqual(PIL['color0.3']);
    expect(Array.from(ops.equalize(tiny).pixels)).toEqual(PIL.equalize);
    expect(Array.from(ops.autoContrast(tiny).pixels)).toEqual(PIL.autocontrast);
    expect(Array.from(ops.rotate(tiny, 23.5, 'bicubic', FILL).pixels)).toEqual(PIL.rotate_bicubic);
    expect(Array.from(ops.affineTransform(tiny, [1, 0.27, 0, 0, 1, 0], 'bilinear', FILL).pixels)).toEqual(PIL.shear_bilinear);
    const blur = ops.gaussianBlur(tiny, 1.2).pixels;
    PIL['blur1.2'].forEach((v, i) => expect(Math.abs(blur[i] - v)).toBeLessThanOrEqual(1));
  });

  it('follow their definitions on hand-computed pixels', () => {
    const g = img([0, 100, 200, 255], 2, 2, 1);
    expect(Array.from(ops.solarize(g, 128).pixels)).toEqual([0, 100, 55, 0]);
    expect(Array.from(ops.solarizeAdd(g, 30).pixels)).toEqual([30, 130, 200, 255]);
    expect(Array.from(ops.posterize(g, 2).pixels)).toEqual([0, 64, 192, 192]);
    expect(Array.from(ops.invert(g).pixels)).toEqual([255, 155, 55, 0]);
    // Brightness 0.5: trunc(0.5 v); 1.5: clipped at 255.
    expect(Array.from(ops.adjustBrightness(g, 0.5).pixels)).toEqual([0, 50, 100, 127]);
    expect(Array.from(ops.adjustBrightness(g, 1.5).pixels)).toEqual([0, 150, 255, 255]);
    // autocontrast maps [100, 200] to [0, 255] with int(v * 2.55 - 255) in doubles, as Pillow (200 -> 254).
    expect(Array.from(ops.autoContrast(img([100, 150, 200, 200], 2, 2, 1)).pixels)).toEqual([0, 127, 254, 254]);
    // RGB -> L: (R*19595 + G*38470 + B*7471 + 0x8000) >> 16.
    expect(ops.luma(255, 0, 0)).toBe(76);
    expect(ops.luma(10, 200, 30)).toBe(124);
    // A translation by whole pixels moves pixels and fills the rest.
    const t = ops.affineTransform(img([1, 2, 3, 4, 5, 6], 2, 3, 1), [1, 0, 1, 0, 1, 0], 'bilinear', [9]);
    expect(Array.from(t.pixels)).toEqual([2, 3, 9, 5, 6, 9]);
  });
});

describe('RandAugment (timm rand-m9-mstd0.5-inc1)', () => {
  it('parses the policy string as timm does', () => {
    expect(parseRandAugment('rand-m9-mstd0.5-inc1')).toEqual({ magnitude: 9, numOps: 2, magnitudeStd: 0.5, magnitudeMax: 10, increasing: true, prob: 0.5 });
    expect(parseRandAugment('rand-m7-n3-mstd101').magnitudeStd).toBe(Infinity);
    expect(() => parseRandAugment('rand-m9-w0')).toThrow(/'w'/);
    expect(() => parseRandAugment('augmix-m3')).toThrow(/start with 'rand'/);
  });

  it('samples magnitudes from N(m, mstd) clipped to [0, 10]', () => {
    const rng = new Rng(3);
    const cfg = parseRandAugment('rand-m9-mstd0.5-inc1');
    const ms = Array.from({ length: 4000 }, () => sampleMagnitude(rng, cfg));
    const mean = ms.reduce((a, b) => a + b, 0) / ms.length;
    expect(Math.max(...ms)).toBeLessThanOrEqual(10);
    expect(mean).toBeGreaterThan(8.9);
    expect(mean).toBeLessThan(9.05); // clipping at 10 pulls the mean slightly below 9
    expect(sampleMagnitude(rng, parseRandAugment('rand-m9'))).toBe(9);
  });

  it('increasing variants get stronger with the magnitude', () => {
    const g = img([0, 60, 120, 180, 240, 255], 2, 3, 1);
    // SolarizeIncreasing at m = 10: threshold 0, every value inverted; at 0: threshold 256, none.
    expect(Array.from(applyRandAugmentOp(g, 'SolarizeIncreasing', 10, new Rng(0), { fill: [0], interpolation: 'bilinear' }).pixels)).toEqual([255, 195, 135, 75, 15, 0]);
    expect(Array.from(applyRandAugmentOp(g, 'SolarizeIncreasing', 0, new Rng(0), { fill: [0], interpolation: 'bilinear' }).pixels)).toEqual([0, 60, 120, 180, 240, 255]);
    // PosterizeIncreasing at m = 10 keeps 0 bits.
    expect(Array.from(applyRandAugmentOp(g, 'PosterizeIncreasing', 10, new Rng(0), { fill: [0], interpolation: 'bilinear' }).pixels)).toEqual([0, 0, 0, 0, 0, 0]);
    // BrightnessIncreasing at m = 10: factor 1.9 or 0.1 (sign drawn), never 1.
    const b = applyRandAugmentOp(g, 'BrightnessIncreasing', 10, new Rng(1), { fill: [0], interpolation: 'bilinear' }).pixels;
    expect([Array.from(ops.adjustBrightness(g, 1.9).pixels), Array.from(ops.adjustBrightness(g, 0.1).pixels)]).toContainEqual(Array.from(b));
    expect(RAND_AUGMENT_INCREASING_OPS).toHaveLength(15);
  });

  it('applies each op with probability 0.5 and is reproducible from the rng state', () => {
    const cfg = parseRandAugment('rand-m9-mstd0.5-inc1');
    const opts = { fill: FILL, interpolation: 'random' as const };
    let unchanged = 0;
    const trials = 400;
    for (let s = 0; s < trials; s++) {
      const out = randAugment(tiny, cfg, opts, new Rng(s));
      if (out === tiny) unchanged++;
      expect(Array.from(randAugment(tiny, cfg, opts, new Rng(s)).pixels)).toEqual(Array.from(out.pixels));
    }
    // Both ops skipped: 0.25.
    expect(unchanged / trials).toBeGreaterThan(0.18);
    expect(unchanged / trials).toBeLessThan(0.32);
  });
});

describe('random erasing (timm, pixel mode)', () => {
  it('erases one box within timm area/aspect bounds with N(0, 1) noise, with probability p', () => {
    const C = 3;
    const H = 20;
    const W = 24;
    let erased = 0;
    for (let s = 0; s < 300; s++) {
      const data = new Float32Array(C * H * W).fill(7);
      const boxes = randomErase(data, 0, [C, H, W], { prob: 0.25, mode: 'pixel' }, new Rng(s));
      const changed = data.filter((v) => v !== 7).length;
      if (boxes.length === 0) {
        expect(changed).toBe(0);
        continue;
      }
      erased++;
      const [top, left, h, w] = boxes[0];
      expect(h * w).toBeGreaterThanOrEqual(Math.floor(0.02 * H * W * 0.5));
      expect(h * w).toBeLessThanOrEqual(Math.ceil((H * W) / 3) + H + W);
      expect(h < H && w < W && top + h <= H && left + w <= W).toBe(true);
      expect(changed).toBe(C * h * w); // every erased value is fresh noise
    }
    expect(erased / 300).toBeGreaterThan(0.17);
    expect(erased / 300).toBeLessThan(0.33);
  });

  it('const mode writes zeros, rand mode one value per channel; an offset erases only that sample', () => {
    const data = new Float32Array(2 * 2 * 10 * 10).fill(1);
    randomErase(data, 200, [2, 10, 10], { prob: 1, mode: 'const' }, new Rng(5));
    expect(data.subarray(0, 200).every((v) => v === 1)).toBe(true);
    expect(data.subarray(200).some((v) => v === 0)).toBe(true);
    const r = new Float32Array(2 * 10 * 10).fill(1);
    randomErase(r, 0, [2, 10, 10], { prob: 1, mode: 'rand' }, new Rng(6));
    for (let c = 0; c < 2; c++) expect(new Set(Array.from(r.subarray(c * 100, c * 100 + 100)).filter((v) => v !== 1)).size).toBe(1);
  });
});

describe('ThreeAugment and colour jitter', () => {
  it('ThreeAugment applies exactly one of grayscale, solarize, blur', () => {
    const seen = new Set<string>();
    for (let s = 0; s < 60; s++) {
      const out = Array.from(threeAugment(tiny, new Rng(s)).pixels);
      if (JSON.stringify(out) === JSON.stringify(Array.from(ops.grayscale(tiny).pixels))) seen.add('gray');
      else if (JSON.stringify(out) === JSON.stringify(Array.from(ops.solarize(tiny, 128).pixels))) seen.add('solarize');
      else seen.add('blur');
    }
    expect([...seen].sort()).toEqual(['blur', 'gray', 'solarize']);
  });

  it('colour jitter factors stay within [1 - s, 1 + s]', () => {
    const gray = img([100, 100, 100, 100], 2, 2, 1);
    for (let s = 0; s < 50; s++) {
      // On a flat gray image contrast and saturation do nothing; brightness scales by the factor.
      const v = colorJitter(gray, [0.3, 0.3, 0.3], new Rng(s)).pixels[0];
      expect(v).toBeGreaterThanOrEqual(70);
      expect(v).toBeLessThanOrEqual(130);
    }
    expect(colorJitter(gray, [0, 0, 0], new Rng(1))).toBe(gray);
  });
});

describe('repeated augmentation (timm RepeatAugSampler, one process)', () => {
  it('repeats each index 3 times in a row and rounds the epoch down', () => {
    const perm = Int32Array.from([4, 0, 3, 1, 2, 5, 7, 6]);
    expect(Array.from(repeatedOrder(perm, { count: 3, round: 0 }))).toEqual([4, 4, 4, 0, 0, 0, 3, 3]);
    expect(repeatedEpochSize(1000, { count: 3, round: 256 })).toBe(768);
    expect(() => repeatedEpochSize(100, { count: 3, round: 256 })).toThrow(/repeated_aug_round: 0/);
  });
});

class Pixels implements ImageDataset {
  readonly kind = 'map' as const;
  readonly numClasses = 4;
  readonly description = 'test pixels';
  constructor(readonly size: number) {}
  async get(i: number): Promise<ImageSample> {
    const pixels = new Uint8Array(8 * 8 * 3);
    for (let k = 0; k < pixels.length; k++) pixels[k] = (i * 31 + k * 7) % 256;
    return { pixels, height: 8, width: 8, channels: 3, label: i % 4 };
  }
  async raw(i: number) {
    return { kind: 'decoded' as const, key: String(i), ...(await this.get(i)) };
  }
}

describe('loader with the recipe augmentations', () => {
  const spec = explicitPreprocessSpec({ size: 8, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] });
  const aug = {
    rand_augment: 'rand-m9-mstd0.5-inc1',
    rand_augment_interpolation: 'bicubic' as const,
    three_augment: false,
    color_jitter: 0.3,
    random_erasing: 0.25,
    random_erasing_mode: 'pixel' as const,
    random_erasing_count: 1,
    repeated_aug: 3,
    repeated_aug_round: 0,
  };
  const make = () => new DataLoader(new Pixels(12), { batchSize: 3, preprocess: spec, seed: 9, dropLast: true, augment: { hflip: 0.5 }, ...recipeLoaderOptions(aug, spec) });

  it('fills with round(255 * mean) and builds every stage', () => {
    const o = recipeLoaderOptions(aug, spec);
    expect(o.recipe?.randAugment?.fill).toEqual([124, 116, 104]);
    expect(o.erasing).toEqual({ prob: 0.25, mode: 'pixel', count: 1 });
    expect(o.repeat).toEqual({ count: 3, round: 0 });
  });

  it('a batch holds three differently augmented views of one image', async () => {
    const loader = make();
    const it = loader.epochBatches();
    const first = (await it.next()).value!;
    await it.return(undefined);
    expect(new Set(first.keys).size).toBe(1);
    const n = first.images.length / 3;
    const views = [0, 1, 2].map((k) => Array.from(first.images.subarray(k * n, (k + 1) * n)));
    expect(views[0]).not.toEqual(views[1]);
    expect(loader.batchesPerEpoch).toBe(4);
  });

  it('resumes bit-identically from a saved position', async () => {
    const all: Float32Array[] = [];
    const a = make();
    for (let e = 0; e < 2; e++) for await (const b of a.epochBatches()) all.push(b.images);
    const b = make();
    for await (const _ of b.epochBatches()) void _;
    const it = b.epochBatches();
    await it.next(); // one batch into the second epoch
    const state = b.state();
    expect(state).toMatchObject({ epoch: 1, index: 3 });
    await it.return(undefined);
    const c = make();
    c.restore(state);
    const rest: Float32Array[] = [];
    for await (const batch of c.epochBatches()) rest.push(batch.images);
    expect(rest.map((x) => Array.from(x))).toEqual(all.slice(5).map((x) => Array.from(x)));
  });
});

describe('augment config keys', () => {
  const base = { model: 'm', data: { train: 'folder:x' }, train: { steps: 1 } };
  it('defaults to off and validates the policy and combinations', async () => {
    const { parseRunConfig } = await import('../config.js');
    const c = parseRunConfig(base);
    expect(c.augment).toMatchObject({ rand_augment: null, three_augment: false, color_jitter: 0, random_erasing: 0, random_erasing_mode: 'pixel', repeated_aug: 1, repeated_aug_round: 256 });
    expect(() => parseRunConfig({ ...base, augment: { rand_augment: 'rand-m9-w0' } })).toThrow(/'w'/);
    expect(() => parseRunConfig({ ...base, augment: { rand_augment: 'rand-m9', three_augment: true } })).toThrow(/alternatives/);
    expect(() => parseRunConfig({ ...base, augment: { random_erasing_mode: 'noise' } })).toThrow(/random_erasing_mode/);
  });
});
