/**
 * Training augmentation, all driven by an explicit `Rng` so that the same state gives the same
 * pixels (exact resume): torchvision's RandomResizedCrop and RandomCrop(padding), horizontal flip,
 * and timm's `Mixup` (batch mode: mixup or cutmix with switch probability, area-corrected lam,
 * label-smoothed soft targets).
 */
import { OptionError, type Rng } from '@masksub/core/base';
import { applyGeometry, outputSize, type PreprocessSpec } from './preprocess.js';
import { cropImage, flipHorizontal, resizeImage, type Resample } from './resample.js';
import type { DecodedImage } from './types.js';

/** Python's round(): half to even (torchvision's crop sizes use it). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function uniform(rng: Rng, lo: number, hi: number): number {
  return lo + (hi - lo) * rng.next();
}

/** torchvision RandomResizedCrop.get_params: [top, left, height, width] of the crop. */
export function randomResizedCropBox(
  rng: Rng,
  height: number,
  width: number,
  scale: [number, number] = [0.08, 1],
  ratio: [number, number] = [3 / 4, 4 / 3],
): [number, number, number, number] {
  const area = height * width;
  const logRatio = [Math.log(ratio[0]), Math.log(ratio[1])];
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * uniform(rng, scale[0], scale[1]);
    const aspect = Math.exp(uniform(rng, logRatio[0], logRatio[1]));
    const w = roundHalfEven(Math.sqrt(targetArea * aspect));
    const h = roundHalfEven(Math.sqrt(targetArea / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      return [rng.int(height - h + 1), rng.int(width - w + 1), h, w];
    }
  }
  // Fallback to a center crop of the whole image at the nearest allowed aspect ratio.
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < Math.min(...ratio)) h = roundHalfEven(w / Math.min(...ratio));
  else if (inRatio > Math.max(...ratio)) w = roundHalfEven(h * Math.max(...ratio));
  return [Math.floor((height - h) / 2), Math.floor((width - w) / 2), h, w];
}

/** Per-sample training augmentation. */
export interface AugmentOptions {
  /** RandomResizedCrop to the spec's output size; replaces resize/center crop (timm train). */
  randomResizedCrop?: { scale?: [number, number]; ratio?: [number, number]; resample?: Resample };
  /** RandomCrop with zero padding (CIFAR recipe: 4), applied after the eval geometry. */
  padCrop?: number;
  /** Probability of a horizontal flip (default 0.5 when augmenting). */
  hflip?: number;
}

/** Apply the training augmentation to one decoded image; the result has the spec's output size. */
export function augmentImage(img: DecodedImage, spec: PreprocessSpec, aug: AugmentOptions, rng: Rng): DecodedImage {
  let out: DecodedImage;
  if (aug.randomResizedCrop) {
    const size = outputSize(spec, img.height, img.width);
    const [top, left, h, w] = randomResizedCropBox(rng, img.height, img.width, aug.randomResizedCrop.scale, aug.randomResizedCrop.ratio);
    out = resizeImage(cropImage(img, top, left, h, w), size.height, size.width, aug.randomResizedCrop.resample ?? spec.resample);
  } else {
    out = applyGeometry(img, spec);
  }
  if (aug.padCrop !== undefined && aug.padCrop > 0) {
    const p = aug.padCrop;
    // torchvision RandomCrop(size, padding=p): top/left uniform in [0, 2p] of the padded image.
    out = cropImage(out, rng.int(2 * p + 1) - p, rng.int(2 * p + 1) - p, out.height, out.width);
  }
  if (rng.next() < (aug.hflip ?? 0.5)) out = flipHorizontal(out);
  return out;
}

/** Gamma(shape, 1) by Marsaglia-Tsang (boosted for shape < 1). */
export function sampleGamma(rng: Rng, shape: number): number {
  if (shape < 1) return sampleGamma(rng, shape + 1) * Math.pow(1 - rng.next(), 1 / shape);
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = rng.normal();
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = 1 - rng.next();
    if (Math.log(u) < 0.5 * x * x + d - d * v + d * Math.log(v)) return d * v;
  }
}

/** Beta(a, b) as Gamma(a) / (Gamma(a) + Gamma(b)). */
export function sampleBeta(rng: Rng, a: number, b: number): number {
  const x = sampleGamma(rng, a);
  const y = sampleGamma(rng, b);
  return x + y === 0 ? 0.5 : x / (x + y);
}

export interface MixupOptions {
  /** Beta(alpha, alpha) for mixup; 0 disables (timm default 1 when enabled). */
  mixupAlpha?: number;
  /** Beta(alpha, alpha) for cutmix; 0 disables. */
  cutmixAlpha?: number;
  /** Probability of mixing a batch at all (default 1). */
  prob?: number;
  /** Probability of cutmix instead of mixup when both are enabled (default 0.5). */
  switchProb?: number;
  /** Label smoothing of the soft targets (timm default 0.1). */
  labelSmoothing?: number;
  /** Recompute lam from the clipped box area (default true). */
  correctLam?: boolean;
}

/** A cutmix box in pixels, rows [y0, y1) and columns [x0, x1). */
export interface CutBox {
  y0: number;
  y1: number;
  x0: number;
  x1: number;
}

/** timm rand_bbox: a box of side sqrt(1-lam) * size at a random centre, clipped to the image. */
export function cutmixBox(rng: Rng, height: number, width: number, lam: number): CutBox {
  const ratio = Math.sqrt(1 - lam);
  const cutH = Math.trunc(height * ratio);
  const cutW = Math.trunc(width * ratio);
  const cy = rng.int(height);
  const cx = rng.int(width);
  const clip = (v: number, hi: number): number => Math.min(Math.max(v, 0), hi);
  return {
    y0: clip(cy - Math.floor(cutH / 2), height),
    y1: clip(cy + Math.floor(cutH / 2), height),
    x0: clip(cx - Math.floor(cutW / 2), width),
    x1: clip(cx + Math.floor(cutW / 2), width),
  };
}

/** timm mixup_target: lam * smooth(onehot(y)) + (1 - lam) * smooth(onehot(flip(y))). */
export function mixupTargets(labels: Int32Array, numClasses: number, lam: number, smoothing: number): Float32Array {
  const B = labels.length;
  const off = smoothing / numClasses;
  const on = 1 - smoothing + off;
  for (const label of labels) {
    if (!(label >= 0 && label < numClasses)) throw new OptionError('numClasses', `label ${label} is outside 0..${numClasses - 1}`);
  }
  const t = new Float32Array(B * numClasses).fill(off);
  for (let i = 0; i < B; i++) {
    const row = i * numClasses;
    t[row + labels[i]] += (on - off) * lam;
    t[row + labels[B - 1 - i]] += (on - off) * (1 - lam);
  }
  return t;
}

export interface MixResult {
  targets: Float32Array;
  lam: number;
  mode: 'none' | 'mixup' | 'cutmix';
  box?: CutBox;
}

/**
 * timm `Mixup` in batch mode, in place on NCHW `images`: sample i is mixed with sample B-1-i
 * (the batch flipped). Returns the soft targets and the (area-corrected) lam.
 */
export function mixBatch(
  images: Float32Array,
  shape: readonly [number, number, number, number],
  labels: Int32Array,
  numClasses: number,
  options: MixupOptions,
  rng: Rng,
): MixResult {
  const mixupAlpha = options.mixupAlpha ?? 0;
  const cutmixAlpha = options.cutmixAlpha ?? 0;
  const prob = options.prob ?? 1;
  const switchProb = options.switchProb ?? 0.5;
  const smoothing = options.labelSmoothing ?? 0.1;
  if (mixupAlpha < 0 || cutmixAlpha < 0) throw new OptionError('mixup', `alphas must be >= 0, got mixup ${mixupAlpha}, cutmix ${cutmixAlpha}`);
  if (!(smoothing >= 0 && smoothing < 1)) throw new OptionError('labelSmoothing', `must be in [0, 1), got ${smoothing}`);
  const [B, C, H, W] = shape;
  let lam = 1;
  let useCutmix = false;
  if ((mixupAlpha > 0 || cutmixAlpha > 0) && rng.next() < prob) {
    if (mixupAlpha > 0 && cutmixAlpha > 0) useCutmix = rng.next() < switchProb;
    else useCutmix = cutmixAlpha > 0;
    const alpha = useCutmix ? cutmixAlpha : mixupAlpha;
    lam = sampleBeta(rng, alpha, alpha);
  }
  if (lam === 1) return { targets: mixupTargets(labels, numClasses, 1, smoothing), lam: 1, mode: 'none' };
  const plane = H * W;
  const sampleSize = C * plane;
  if (useCutmix) {
    const box = cutmixBox(rng, H, W, lam);
    if (options.correctLam ?? true) lam = 1 - ((box.y1 - box.y0) * (box.x1 - box.x0)) / (H * W);
    // Paste from the flipped batch; source rows come from the unmodified copy of the partner.
    const original = images.slice();
    for (let i = 0; i < B; i++) {
      const src = (B - 1 - i) * sampleSize;
      const dst = i * sampleSize;
      for (let c = 0; c < C; c++) {
        for (let y = box.y0; y < box.y1; y++) {
          const rowOff = c * plane + y * W;
          images.set(original.subarray(src + rowOff + box.x0, src + rowOff + box.x1), dst + rowOff + box.x0);
        }
      }
    }
    return { targets: mixupTargets(labels, numClasses, lam, smoothing), lam, mode: 'cutmix', box };
  }
  const original = images.slice();
  for (let i = 0; i < B; i++) {
    const src = (B - 1 - i) * sampleSize;
    const dst = i * sampleSize;
    for (let k = 0; k < sampleSize; k++) images[dst + k] = original[dst + k] * lam + original[src + k] * (1 - lam);
  }
  return { targets: mixupTargets(labels, numClasses, lam, smoothing), lam, mode: 'mixup' };
}
