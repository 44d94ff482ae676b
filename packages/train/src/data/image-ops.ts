/**
 * Pixel operations on uint8 HWC images with Pillow's semantics (Pillow is what timm's
 * RandAugment, torchvision's ColorJitter on PIL images and DeiT-III's ThreeAugment call), so the
 * recipe augmentations transform an image as the official pipelines do. Each function returns a
 * new image; none draws random numbers (the callers do, from the run's Rng).
 *
 * Pillow details kept: enhancement blends compute in float32 and truncate (Blend.c); RGB -> L is
 * the ITU-R 601 luma in 16-bit fixed point (Convert.c); the 3x3 smoothing filter keeps the border
 * pixels; affine transforms sample at pixel centres with Pillow's bilinear/bicubic filters and
 * fill what falls outside; Gaussian blur is Pillow's three-pass extended box blur.
 */
import { OptionError } from '@masksub/core/base';
import type { DecodedImage } from './types.js';

const f32 = Math.fround;

function withPixels(img: DecodedImage, pixels: Uint8Array): DecodedImage {
  return { pixels, height: img.height, width: img.width, channels: img.channels };
}

/** Apply a 256-entry lookup table to every channel. */
export function applyLut(img: DecodedImage, lut: ArrayLike<number>): DecodedImage {
  const out = new Uint8Array(img.pixels.length);
  for (let i = 0; i < out.length; i++) out[i] = lut[img.pixels[i]];
  return withPixels(img, out);
}

/** Pillow's RGB -> L luma: (R*19595 + G*38470 + B*7471 + 0x8000) >> 16. */
export function luma(r: number, g: number, b: number): number {
  return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >>> 16;
}

/** convert('L'): one channel. */
export function toGray(img: DecodedImage): Uint8Array {
  if (img.channels === 1) return img.pixels.slice();
  const n = img.height * img.width;
  const out = new Uint8Array(n);
  const p = img.pixels;
  for (let i = 0; i < n; i++) out[i] = luma(p[3 * i], p[3 * i + 1], p[3 * i + 2]);
  return out;
}

/** convert('L').convert(mode): gray in the image's channel count (torchvision Grayscale(3)). */
export function grayscale(img: DecodedImage): DecodedImage {
  const gray = toGray(img);
  if (img.channels === 1) return withPixels(img, gray);
  const out = new Uint8Array(gray.length * 3);
  for (let i = 0; i < gray.length; i++) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = gray[i];
  return withPixels(img, out);
}

/**
 * Image.blend(degenerate, img, factor): degenerate + factor * (img - degenerate) in float32,
 * truncated; outside [0, 1] the result is clipped to [0, 255] first (Pillow's Blend.c).
 */
export function blend(degenerate: Uint8Array, img: DecodedImage, factor: number): DecodedImage {
  const a = f32(factor);
  const src = img.pixels;
  const out = new Uint8Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const v = f32(degenerate[i] + f32(a * (src[i] - degenerate[i])));
    out[i] = v <= 0 ? 0 : v >= 255 ? 255 : Math.trunc(v);
  }
  return withPixels(img, out);
}

/** ImageEnhance.Brightness: blend with black. */
export function adjustBrightness(img: DecodedImage, factor: number): DecodedImage {
  return blend(new Uint8Array(img.pixels.length), img, factor);
}

/** ImageEnhance.Contrast: blend with the mean gray level, int(mean(L) + 0.5). */
export function adjustContrast(img: DecodedImage, factor: number): DecodedImage {
  const gray = toGray(img);
  let sum = 0;
  for (const v of gray) sum += v;
  const mean = Math.trunc(sum / gray.length + 0.5);
  return blend(new Uint8Array(img.pixels.length).fill(mean), img, factor);
}

/** ImageEnhance.Color (saturation): blend with the image's own grayscale. */
export function adjustSaturation(img: DecodedImage, factor: number): DecodedImage {
  if (img.channels === 1) return img;
  return blend(grayscale(img).pixels, img, factor);
}

/**
 * ImageFilter.SMOOTH (3x3 kernel 1 1 1 / 1 5 1 / 1 1 1, divided by 13), as Pillow's 3x3 filter:
 * float sum + 0.5, clipped and truncated; the first/last row and column are copied unchanged.
 */
export function smooth(img: DecodedImage): Uint8Array {
  const { height: h, width: w, channels: c, pixels: p } = img;
  const out = p.slice();
  if (h < 3 || w < 3) return out;
  const k = [1, 1, 1, 1, 5, 1, 1, 1, 1].map((v) => f32(v / 13));
  for (let y = 1; y < h - 1; y++) {
    for (let x = 1; x < w - 1; x++) {
      for (let ch = 0; ch < c; ch++) {
        let ss = f32(0.5);
        let t = 0;
        for (let dy = -1; dy <= 1; dy++) {
          const row = (y + dy) * w;
          // Pillow sums each kernel row in float then adds it (KERNEL1x3).
          let r = f32(p[(row + x - 1) * c + ch] * k[t]);
          r = f32(r + f32(p[(row + x) * c + ch] * k[t + 1]));
          r = f32(r + f32(p[(row + x + 1) * c + ch] * k[t + 2]));
          ss = f32(ss + r);
          t += 3;
        }
        out[(y * w + x) * c + ch] = ss <= 0 ? 0 : ss >= 255 ? 255 : Math.trunc(ss);
      }
    }
  }
  return out;
}

/** ImageEnhance.Sharpness: blend with the smoothed image. */
export function adjustSharpness(img: DecodedImage, factor: number): DecodedImage {
  return blend(smooth(img), img, factor);
}

/** ImageOps.solarize: invert the values at or above `threshold`. */
export function solarize(img: DecodedImage, threshold = 128): DecodedImage {
  const lut = new Uint8Array(256);
  for (let i = 0; i < 256; i++) lut[i] = i < threshold ? i : 255 - i;
  return applyLut(img, lut);
}

/** timm solarize_add: add `add` (clipped at 255) to values below `threshold`. */
export function solarizeAdd(img: DecodedImage, add: number, threshold = 128): DecodedImage {
  const lut = new Uint8Array(256);
  for (let i = 0; i < 256; i++) lut[i] = i < threshold ? Math.min(255, i + add) : i;
  return applyLut(img, lut);
}

/** ImageOps.posterize: keep the `bits` most significant bits (timm returns the image for bits >= 8). */
export function posterize(img: DecodedImage, bits: number): DecodedImage {
  if (bits >= 8) return img;
  const mask = ~(2 ** (8 - bits) - 1) & 0xff;
  const lut = new Uint8Array(256);
  for (let i = 0; i < 256; i++) lut[i] = i & mask;
  return applyLut(img, lut);
}

/** ImageOps.invert. */
export function invert(img: DecodedImage): DecodedImage {
  const lut = new Uint8Array(256);
  for (let i = 0; i < 256; i++) lut[i] = 255 - i;
  return applyLut(img, lut);
}

function channelHistograms(img: DecodedImage): Uint32Array[] {
  const c = img.channels;
  const hists = Array.from({ length: c }, () => new Uint32Array(256));
  for (let i = 0; i < img.pixels.length; i++) hists[i % c][img.pixels[i]]++;
  return hists;
}

function applyChannelLuts(img: DecodedImage, luts: Uint8Array[]): DecodedImage {
  const c = img.channels;
  const out = new Uint8Array(img.pixels.length);
  for (let i = 0; i < out.length; i++) out[i] = luts[i % c][img.pixels[i]];
  return withPixels(img, out);
}

/** ImageOps.autocontrast (cutoff 0): stretch each channel's [min, max] to [0, 255]. */
export function autoContrast(img: DecodedImage): DecodedImage {
  const luts = channelHistograms(img).map((h) => {
    const lut = new Uint8Array(256);
    let lo = 0;
    while (lo < 256 && h[lo] === 0) lo++;
    let hi = 255;
    while (hi >= 0 && h[hi] === 0) hi--;
    if (hi <= lo) {
      for (let i = 0; i < 256; i++) lut[i] = i;
      return lut;
    }
    const scale = 255 / (hi - lo);
    const offset = -lo * scale;
    for (let i = 0; i < 256; i++) lut[i] = Math.min(255, Math.max(0, Math.trunc(i * scale + offset)));
    return lut;
  });
  return applyChannelLuts(img, luts);
}

/** ImageOps.equalize: per channel, step = (pixels - count of the last used level) // 255. */
export function equalize(img: DecodedImage): DecodedImage {
  const luts = channelHistograms(img).map((h) => {
    const lut = new Uint8Array(256);
    const used = Array.from(h).filter((v) => v > 0);
    const identity = () => {
      for (let i = 0; i < 256; i++) lut[i] = i;
      return lut;
    };
    if (used.length <= 1) return identity();
    const total = used.reduce((a, b) => a + b, 0);
    const step = Math.floor((total - used[used.length - 1]) / 255);
    if (step === 0) return identity();
    let n = Math.floor(step / 2);
    for (let i = 0; i < 256; i++) {
      lut[i] = Math.min(255, Math.floor(n / step));
      n += h[i];
    }
    return lut;
  });
  return applyChannelLuts(img, luts);
}

export type AffineResample = 'nearest' | 'bilinear' | 'bicubic';

/**
 * Image.transform(size, AFFINE, [a, b, c, d, e, f], resample, fillcolor): output pixel (x, y)
 * reads the input at (a*(x+.5) + b*(y+.5) + c, d*(x+.5) + e*(y+.5) + f); points outside the
 * input take `fill` (one value per channel). Filters as Pillow's Geometry.c: bilinear truncates,
 * bicubic (a = -1) clips then truncates; neighbours beyond the edge are clamped.
 */
export function affineTransform(img: DecodedImage, matrix: readonly number[], resample: AffineResample, fill: readonly number[]): DecodedImage {
  if (matrix.length !== 6) throw new OptionError('matrix', `an affine transform needs 6 coefficients, got ${matrix.length}`);
  const { height: h, width: w, channels: c, pixels: p } = img;
  const [a, b, cc, d, e, f] = matrix;
  const out = new Uint8Array(p.length);
  const xclip = (x: number) => (x < 0 ? 0 : x < w ? x : w - 1);
  const yclip = (y: number) => (y < 0 ? 0 : y < h ? y : h - 1);
  const at = (y: number, x: number, ch: number) => p[(y * w + x) * c + ch];
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const xo = x + 0.5;
      const yo = y + 0.5;
      let xin = a * xo + b * yo + cc;
      let yin = d * xo + e * yo + f;
      const dst = (y * w + x) * c;
      if (resample === 'nearest') {
        const xi = Math.floor(xin);
        const yi = Math.floor(yin);
        if (xi < 0 || xi >= w || yi < 0 || yi >= h) for (let ch = 0; ch < c; ch++) out[dst + ch] = fill[ch] ?? fill[0];
        else for (let ch = 0; ch < c; ch++) out[dst + ch] = at(yi, xi, ch);
        continue;
      }
      if (xin < 0 || xin >= w || yin < 0 || yin >= h) {
        for (let ch = 0; ch < c; ch++) out[dst + ch] = fill[ch] ?? fill[0];
        continue;
      }
      xin -= 0.5;
      yin -= 0.5;
      const x0 = Math.floor(xin);
      const y0 = Math.floor(yin);
      const dx = xin - x0;
      const dy = yin - y0;
      for (let ch = 0; ch < c; ch++) {
        if (resample === 'bilinear') {
          const r0 = yclip(y0);
          const xa = xclip(x0);
          const xb = xclip(x0 + 1);
          const v1 = at(r0, xa, ch) + (at(r0, xb, ch) - at(r0, xa, ch)) * dx;
          const v2 = y0 + 1 >= 0 && y0 + 1 < h ? at(y0 + 1, xa, ch) + (at(y0 + 1, xb, ch) - at(y0 + 1, xa, ch)) * dx : v1;
          out[dst + ch] = Math.trunc(v1 + (v2 - v1) * dy);
        } else {
          const cubic = (q1: number, q2: number, q3: number, q4: number, t: number) => {
            const p1 = q2;
            const p2 = -q1 + q3;
            const p3 = 2 * (q1 - q2) + q3 - q4;
            const p4 = -q1 + q2 - q3 + q4;
            return p1 + t * (p2 + t * (p3 + t * p4));
          };
          const xs = [xclip(x0 - 1), xclip(x0), xclip(x0 + 1), xclip(x0 + 2)];
          const rowAt = (yy: number) => cubic(at(yy, xs[0], ch), at(yy, xs[1], ch), at(yy, xs[2], ch), at(yy, xs[3], ch), dx);
          const v1 = rowAt(yclip(y0 - 1));
          const v2 = y0 >= 0 && y0 < h ? rowAt(y0) : v1;
          const v3 = y0 + 1 >= 0 && y0 + 1 < h ? rowAt(y0 + 1) : v2;
          const v4 = y0 + 2 >= 0 && y0 + 2 < h ? rowAt(y0 + 2) : v3;
          const v = cubic(v1, v2, v3, v4, dy);
          out[dst + ch] = v <= 0 ? 0 : v >= 255 ? 255 : Math.trunc(v);
        }
      }
    }
  }
  return withPixels(img, out);
}

/** Image.rotate(degrees, resample, fillcolor) about the centre, same size (counter-clockwise). */
export function rotate(img: DecodedImage, degrees: number, resample: AffineResample, fill: readonly number[]): DecodedImage {
  const turn = ((degrees % 360) + 360) % 360;
  if (turn === 0) return img;
  const angle = (-degrees * Math.PI) / 180;
  const cos = Math.cos(angle);
  const sin = Math.sin(angle);
  const cx = img.width / 2;
  const cy = img.height / 2;
  const m = [cos, sin, 0, -sin, cos, 0];
  m[2] = m[0] * -cx + m[1] * -cy + cx;
  m[5] = m[3] * -cx + m[4] * -cy + cy;
  return affineTransform(img, m, resample, fill);
}

/** Pillow's box radius for a Gaussian of `radius` (sigma) approximated by `passes` box blurs. */
export function gaussianBoxRadius(radius: number, passes = 3): number {
  const sigma2 = (radius * radius) / passes;
  const L = Math.sqrt(12 * sigma2 + 1);
  const l = Math.floor((L - 1) / 2);
  const a = ((2 * l + 1) * (l * (l + 1) - 3 * sigma2)) / (6 * (sigma2 - (l + 1) * (l + 1)));
  return l + a;
}

/**
 * One extended box blur pass along a line (Pillow BoxBlur.c): a box of integer half-width r with
 * the next pixel on each side weighted by the fraction; edges extend the border pixel; the
 * result is rounded in 24-bit fixed point.
 */
function boxBlurLine(src: Uint8Array, dst: Uint8Array, offset: number, stride: number, n: number, radius: number): void {
  const r = Math.floor(radius);
  const ww = Math.floor((1 << 24) / (radius * 2 + 1));
  const fw = Math.floor(((1 << 24) - (r * 2 + 1) * ww) / 2);
  const px = (i: number) => src[offset + (i < 0 ? 0 : i >= n ? n - 1 : i) * stride];
  for (let x = 0; x < n; x++) {
    let acc = 0;
    for (let k = -r; k <= r; k++) acc += px(x + k);
    const edge = px(x - r - 1) + px(x + r + 1);
    dst[offset + x * stride] = Math.floor((acc * ww + edge * fw + (1 << 23)) / (1 << 24));
  }
}

/** ImageFilter.GaussianBlur(radius): three extended box blurs, horizontal then vertical. */
export function gaussianBlur(img: DecodedImage, radius: number, passes = 3): DecodedImage {
  if (!(radius >= 0)) throw new OptionError('radius', `a Gaussian blur radius must be >= 0, got ${radius}`);
  if (radius === 0) return img;
  const box = gaussianBoxRadius(radius, passes);
  const { height: h, width: w, channels: c } = img;
  let a = img.pixels.slice();
  let b = new Uint8Array(a.length);
  for (let pass = 0; pass < passes; pass++) {
    for (let y = 0; y < h; y++) for (let ch = 0; ch < c; ch++) boxBlurLine(a, b, y * w * c + ch, c, w, box);
    [a, b] = [b, a];
  }
  for (let pass = 0; pass < passes; pass++) {
    for (let x = 0; x < w; x++) for (let ch = 0; ch < c; ch++) boxBlurLine(a, b, x * c + ch, w * c, h, box);
    [a, b] = [b, a];
  }
  return withPixels(img, a);
}

/** The colour channels of gray+alpha (2) or RGBA (4) pixels: the alpha channel dropped. */
export function dropAlpha(pixels: Uint8Array | Uint8ClampedArray, channels: 2 | 4): Uint8Array {
  const keep = channels - 1;
  const n = pixels.length / channels;
  const out = new Uint8Array(n * keep);
  for (let p = 0; p < n; p++) for (let c = 0; c < keep; c++) out[p * keep + c] = pixels[p * channels + c];
  return out;
}
