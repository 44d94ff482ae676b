/**
 * torchvision ColorJitter(brightness, contrast, saturation) on PIL images: each factor uniform in
 * [max(0, 1 - v), 1 + v], the three adjustments applied in a random order (torchvision draws a
 * permutation of its four; hue is not supported here, as timm's scalar jitter and DeiT-III use
 * none). Pixels follow Pillow's ImageEnhance (image-ops.ts).
 */
import { OptionError, type Rng } from '@masksub/core/base';
import { adjustBrightness, adjustContrast, adjustSaturation } from './image-ops.js';
import type { DecodedImage } from './types.js';

/** Strength of brightness, contrast and saturation jitter (0 leaves that one out). */
export type ColorJitterStrength = readonly [brightness: number, contrast: number, saturation: number];

export function colorJitterStrength(value: number | readonly number[]): ColorJitterStrength {
  const v = typeof value === 'number' ? [value, value, value] : [...value];
  if (v.length !== 3 || v.some((x) => !(x >= 0))) throw new OptionError('augment.color_jitter', `expected a number or [brightness, contrast, saturation], each >= 0, got ${JSON.stringify(value)}`);
  return [v[0], v[1], v[2]];
}

export function colorJitter(img: DecodedImage, strength: ColorJitterStrength, rng: Rng): DecodedImage {
  const order = [0, 1, 2];
  rng.shuffle(order);
  const factors = strength.map((s) => (s > 0 ? Math.max(0, 1 - s) + (1 + s - Math.max(0, 1 - s)) * rng.next() : null));
  let out = img;
  for (const i of order) {
    const f = factors[i];
    if (f === null) continue;
    out = i === 0 ? adjustBrightness(out, f) : i === 1 ? adjustContrast(out, f) : adjustSaturation(out, f);
  }
  return out;
}
