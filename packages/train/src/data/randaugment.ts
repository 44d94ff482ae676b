/**
 * RandAugment with timm's semantics (timm/data/auto_augment.py, `rand_augment_transform`), the
 * policy string the paper's recipes pass as `--aa rand-m9-mstd0.5-inc1`:
 *   - `n` ops (default 2) drawn uniformly with replacement from the 15-op set; `inc1` swaps in
 *     the variants whose severity grows with the magnitude (posterize, solarize, and the four
 *     enhancements);
 *   - each op runs with probability 0.5;
 *   - its magnitude is N(m, mstd) (uniform in [0, m] when mstd > 100), clipped to [0, mmax or 10];
 *   - signed ops (rotate, shear, translate, increasing enhancements) flip sign with probability 1/2;
 *   - geometric ops fill with the mean colour (round(255 * mean)) and resample bicubic/bilinear,
 *     or pick one of the two at random per op ('random', timm's training default).
 * The draws come from the caller's Rng in this order: op choice, then per op: apply?, magnitude,
 * sign, interpolation. Pixels follow Pillow (see image-ops.ts).
 */
import { OptionError, type Rng } from '@masksub/core/base';
import {
  adjustBrightness,
  adjustContrast,
  adjustSaturation,
  adjustSharpness,
  affineTransform,
  autoContrast,
  equalize,
  invert,
  posterize,
  rotate,
  solarize,
  solarizeAdd,
  type AffineResample,
} from './image-ops.js';
import type { DecodedImage } from './types.js';

/** timm's magnitude scale: level / 10 is the fraction of each op's range. */
const LEVEL_DENOM = 10;

export const RAND_AUGMENT_OPS = [
  'AutoContrast',
  'Equalize',
  'Invert',
  'Rotate',
  'Posterize',
  'Solarize',
  'SolarizeAdd',
  'Color',
  'Contrast',
  'Brightness',
  'Sharpness',
  'ShearX',
  'ShearY',
  'TranslateXRel',
  'TranslateYRel',
] as const;

export const RAND_AUGMENT_INCREASING_OPS = [
  'AutoContrast',
  'Equalize',
  'Invert',
  'Rotate',
  'PosterizeIncreasing',
  'SolarizeIncreasing',
  'SolarizeAdd',
  'ColorIncreasing',
  'ContrastIncreasing',
  'BrightnessIncreasing',
  'SharpnessIncreasing',
  'ShearX',
  'ShearY',
  'TranslateXRel',
  'TranslateYRel',
] as const;

export type RandAugmentOpName = (typeof RAND_AUGMENT_OPS)[number] | (typeof RAND_AUGMENT_INCREASING_OPS)[number];

export const AUGMENT_INTERPOLATIONS = ['random', 'bilinear', 'bicubic'] as const;
export type AugmentInterpolation = (typeof AUGMENT_INTERPOLATIONS)[number];

export interface RandAugmentConfig {
  /** Magnitude m in [0, 10] (timm's scale). */
  magnitude: number;
  /** Ops per image (timm `n`, default 2). */
  numOps: number;
  /** Std of the magnitude noise; Infinity samples uniformly in [0, m]. */
  magnitudeStd: number;
  /** Upper clip of the sampled magnitude (timm `mmax`, default 10). */
  magnitudeMax: number;
  /** Use the increasing-severity op set (timm `inc1`). */
  increasing: boolean;
  /** Probability of applying each chosen op (timm: 0.5). */
  prob: number;
}

/** Parse a timm RandAugment string such as `rand-m9-mstd0.5-inc1`. */
export function parseRandAugment(spec: string): RandAugmentConfig {
  const parts = spec.split('-');
  if (parts[0] !== 'rand') throw new OptionError('augment.rand_augment', `'${spec}' is not a RandAugment policy: it must start with 'rand' (e.g. rand-m9-mstd0.5-inc1)`);
  const config: RandAugmentConfig = { magnitude: LEVEL_DENOM, numOps: 2, magnitudeStd: 0, magnitudeMax: LEVEL_DENOM, increasing: false, prob: 0.5 };
  for (const part of parts.slice(1)) {
    const m = /^([a-z]+)(\d.*)$/.exec(part);
    if (!m) throw new OptionError('augment.rand_augment', `'${spec}': cannot read section '${part}' (expected m<int>, n<int>, mstd<float>, mmax<int>, inc<0|1>)`);
    const [, key, val] = m;
    const num = Number(val);
    if (!Number.isFinite(num)) throw new OptionError('augment.rand_augment', `'${spec}': section '${part}' has no number`);
    if (key === 'm') config.magnitude = Math.trunc(num);
    else if (key === 'n') config.numOps = Math.trunc(num);
    else if (key === 'mstd') config.magnitudeStd = num > 100 ? Infinity : num;
    else if (key === 'mmax') config.magnitudeMax = Math.trunc(num);
    else if (key === 'inc') config.increasing = num !== 0;
    else throw new OptionError('augment.rand_augment', `'${spec}': unknown section '${key}' (m, n, mstd, mmax, inc are supported; the weighted choice 'w' is not)`);
  }
  if (config.numOps < 1) throw new OptionError('augment.rand_augment', `'${spec}': n must be >= 1`);
  if (config.magnitude < 0) throw new OptionError('augment.rand_augment', `'${spec}': m must be >= 0`);
  return config;
}

export interface RandAugmentOptions {
  /** Fill of the geometric ops, per channel (timm: round(255 * mean)). */
  fill: readonly number[];
  interpolation: AugmentInterpolation;
  /** timm's relative translation range (0.45). */
  translatePct?: number;
}

function negate(rng: Rng, v: number): number {
  // timm: `-v if random.random() > 0.5 else v`
  return rng.next() > 0.5 ? -v : v;
}

function pickInterpolation(rng: Rng, interpolation: AugmentInterpolation): AffineResample {
  if (interpolation !== 'random') return interpolation;
  return rng.int(2) === 0 ? 'bilinear' : 'bicubic';
}

/** Apply one op at magnitude `level` (already noised and clipped); signs and filters from `rng`. */
export function applyRandAugmentOp(img: DecodedImage, op: RandAugmentOpName, level: number, rng: Rng, options: RandAugmentOptions): DecodedImage {
  const frac = level / LEVEL_DENOM;
  const enhance = () => frac * 1.8 + 0.1;
  const enhanceIncreasing = () => Math.max(0.1, 1 + negate(rng, frac * 0.9));
  const geometric = (m: number[]) => affineTransform(img, m, pickInterpolation(rng, options.interpolation), options.fill);
  switch (op) {
    case 'AutoContrast':
      return autoContrast(img);
    case 'Equalize':
      return equalize(img);
    case 'Invert':
      return invert(img);
    case 'Rotate': {
      const degrees = negate(rng, frac * 30);
      return rotate(img, degrees, pickInterpolation(rng, options.interpolation), options.fill);
    }
    case 'Posterize':
      return posterize(img, Math.trunc(frac * 4));
    case 'PosterizeIncreasing':
      return posterize(img, 4 - Math.trunc(frac * 4));
    case 'Solarize':
      return solarize(img, Math.trunc(frac * 256));
    case 'SolarizeIncreasing':
      return solarize(img, 256 - Math.trunc(frac * 256));
    case 'SolarizeAdd':
      return solarizeAdd(img, Math.trunc(frac * 110), 128);
    case 'Color':
      return adjustSaturation(img, enhance());
    case 'ColorIncreasing':
      return adjustSaturation(img, enhanceIncreasing());
    case 'Contrast':
      return adjustContrast(img, enhance());
    case 'ContrastIncreasing':
      return adjustContrast(img, enhanceIncreasing());
    case 'Brightness':
      return adjustBrightness(img, enhance());
    case 'BrightnessIncreasing':
      return adjustBrightness(img, enhanceIncreasing());
    case 'Sharpness':
      return adjustSharpness(img, enhance());
    case 'SharpnessIncreasing':
      return adjustSharpness(img, enhanceIncreasing());
    case 'ShearX':
      return geometric([1, negate(rng, frac * 0.3), 0, 0, 1, 0]);
    case 'ShearY':
      return geometric([1, 0, 0, negate(rng, frac * 0.3), 1, 0]);
    case 'TranslateXRel':
      return geometric([1, 0, negate(rng, frac * (options.translatePct ?? 0.45)) * img.width, 0, 1, 0]);
    case 'TranslateYRel':
      return geometric([1, 0, 0, 0, 1, negate(rng, frac * (options.translatePct ?? 0.45)) * img.height]);
  }
}

/** The magnitude one op uses: timm's AugmentOp noise and clip. */
export function sampleMagnitude(rng: Rng, config: RandAugmentConfig): number {
  let m = config.magnitude;
  if (config.magnitudeStd === Infinity) m = m * rng.next();
  else if (config.magnitudeStd > 0) m = m + config.magnitudeStd * rng.normal();
  return Math.max(0, Math.min(m, config.magnitudeMax));
}

/** One RandAugment draw on one image. */
export function randAugment(img: DecodedImage, config: RandAugmentConfig, options: RandAugmentOptions, rng: Rng): DecodedImage {
  const set = config.increasing ? RAND_AUGMENT_INCREASING_OPS : RAND_AUGMENT_OPS;
  const chosen = Array.from({ length: config.numOps }, () => set[rng.int(set.length)]);
  let out = img;
  for (const op of chosen) {
    // timm: `if self.prob < 1.0 and random.random() > self.prob: return img`
    if (config.prob < 1 && rng.next() > config.prob) continue;
    out = applyRandAugmentOp(out, op, sampleMagnitude(rng, config), rng, options);
  }
  return out;
}
