/**
 * timm RandomErasing on one normalised CHW image (timm/data/random_erasing.py): with probability
 * `prob`, erase 1..count boxes (count drawn uniformly when count > 1), each of area uniform in
 * [minArea, maxArea] / count of the image and log-uniform aspect in [minAspect, 1 / minAspect];
 * h = round(sqrt(area * aspect)), w = round(sqrt(area / aspect)), accepted when h < H and
 * w < W (10 attempts per box), placed uniformly. Fill: 'pixel' per-pixel N(0, 1) (the paper's
 * recipes, `--remode pixel`), 'rand' one N(0, 1) colour per channel, 'const' zeros. The values
 * live on the normalised scale, as timm erases after Normalize.
 */
import { OptionError, type Rng } from '@masksub/core/base';

export const RANDOM_ERASING_MODES = ['pixel', 'rand', 'const'] as const;
export type RandomErasingMode = (typeof RANDOM_ERASING_MODES)[number];

export interface RandomErasingOptions {
  prob: number;
  mode?: RandomErasingMode;
  /** Maximum boxes per image (timm `recount`, default 1). */
  count?: number;
  minArea?: number;
  maxArea?: number;
  minAspect?: number;
}

/** Python's round() to an integer: half to even. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Erase boxes of `data[offset .. offset + C*H*W)` in place; returns the boxes [top, left, h, w]. */
export function randomErase(data: Float32Array, offset: number, shape: readonly [number, number, number], options: RandomErasingOptions, rng: Rng): [number, number, number, number][] {
  const [C, H, W] = shape;
  const { prob } = options;
  const mode = options.mode ?? 'pixel';
  const maxCount = options.count ?? 1;
  const minArea = options.minArea ?? 0.02;
  const maxArea = options.maxArea ?? 1 / 3;
  const minAspect = options.minAspect ?? 0.3;
  if (!(prob >= 0 && prob <= 1)) throw new OptionError('augment.random_erasing', `a probability in [0, 1] is needed, got ${prob}`);
  if (!(Number.isInteger(maxCount) && maxCount >= 1)) throw new OptionError('augment.random_erasing_count', `must be a positive integer, got ${maxCount}`);
  const boxes: [number, number, number, number][] = [];
  // timm: `if random.random() > self.probability: return`
  if (rng.next() > prob) return boxes;
  const area = H * W;
  const logAspect = [Math.log(minAspect), Math.log(1 / minAspect)];
  const count = maxCount > 1 ? 1 + rng.int(maxCount) : 1;
  const plane = H * W;
  for (let n = 0; n < count; n++) {
    for (let attempt = 0; attempt < 10; attempt++) {
      const target = ((minArea + (maxArea - minArea) * rng.next()) * area) / count;
      const aspect = Math.exp(logAspect[0] + (logAspect[1] - logAspect[0]) * rng.next());
      const h = roundHalfEven(Math.sqrt(target * aspect));
      const w = roundHalfEven(Math.sqrt(target / aspect));
      if (!(w < W && h < H)) continue;
      // random.randint(0, H - h) includes both ends.
      const top = rng.int(H - h + 1);
      const left = rng.int(W - w + 1);
      for (let c = 0; c < C; c++) {
        const colour = mode === 'rand' ? rng.normal() : 0;
        for (let y = top; y < top + h; y++) {
          const row = offset + c * plane + y * W;
          for (let x = left; x < left + w; x++) data[row + x] = mode === 'pixel' ? rng.normal() : colour;
        }
      }
      boxes.push([top, left, h, w]);
      break;
    }
  }
  return boxes;
}
