/**
 * Pillow's `Image.resize` for uint8 images, re-implemented so preprocessing is deterministic,
 * synchronous (usable inside batch assembly) and matches what HF image processors and
 * torchvision transforms produce (both resize with Pillow).
 *
 * As Pillow (src/libImaging/Resample.c): separable convolution, horizontal pass first, each pass
 * rounded to uint8; when shrinking, the filter is widened by the scale factor (antialiasing);
 * weights in 22-bit fixed point. NEAREST samples the source pixel under each output centre.
 */
import { OptionError } from '@masksub/core/base';
import type { DecodedImage } from './types.js';

export type Resample = 'nearest' | 'bilinear' | 'bicubic' | 'lanczos' | 'box';

/** PIL.Image.Resampling codes as stored in preprocessor_config.json `resample`. */
const PIL_CODES: Record<number, Resample> = { 0: 'nearest', 1: 'lanczos', 2: 'bilinear', 3: 'bicubic', 4: 'box' };

/** The PIL code of a resampling filter (what preprocessor_config.json stores). */
export function resampleToPil(resample: Resample): number {
  const entry = Object.entries(PIL_CODES).find(([, r]) => r === resample);
  if (!entry) throw new OptionError('resample', `'${resample}' has no PIL code`);
  return Number(entry[0]);
}

export function resampleFromPil(code: number): Resample {
  const r = PIL_CODES[code];
  if (!r) throw new OptionError('resample', `PIL resample code ${code} is not supported (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box)`);
  return r;
}

interface Filter {
  support: number;
  f(x: number): number;
}

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = Math.PI * x;
  return Math.sin(px) / px;
}

const FILTERS: Record<Exclude<Resample, 'nearest'>, Filter> = {
  box: { support: 0.5, f: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) },
  bilinear: { support: 1, f: (x) => (x < 0 ? (x > -1 ? 1 + x : 0) : x < 1 ? 1 - x : 0) },
  bicubic: {
    support: 2,
    f: (x) => {
      const a = -0.5;
      const ax = Math.abs(x);
      if (ax < 1) return ((a + 2) * ax - (a + 3)) * ax * ax + 1;
      if (ax < 2) return (((ax - 5) * ax + 8) * ax - 4) * a;
      return 0;
    },
  },
  lanczos: { support: 3, f: (x) => (x > -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) },
};

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 2 ** PRECISION_BITS;

/** Per output index: first source index and fixed-point weights (Pillow's precompute_coeffs). */
function coefficients(inSize: number, outSize: number, filter: Filter): { start: Int32Array; count: Int32Array; ksize: number; weights: Float64Array } {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filter.support * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Float64Array(outSize * ksize);
  const ss = 1 / filterScale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let total = 0;
    const k = new Float64Array(xmax);
    for (let x = 0; x < xmax; x++) {
      k[x] = filter.f((x + xmin - center + 0.5) * ss);
      total += k[x];
    }
    for (let x = 0; x < xmax; x++) {
      const w = total !== 0 ? k[x] / total : k[x];
      // Pillow rounds half away from zero when converting to fixed point.
      weights[xx * ksize + x] = w < 0 ? Math.trunc(-0.5 + w * ONE) : Math.trunc(0.5 + w * ONE);
    }
    start[xx] = xmin;
    count[xx] = xmax;
  }
  return { start, count, ksize, weights };
}

function clip8(acc: number): number {
  const v = Math.floor(acc / ONE);
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

function resizeHorizontal(src: Uint8Array, h: number, w: number, c: number, outW: number, filter: Filter): Uint8Array {
  const { start, count, ksize, weights } = coefficients(w, outW, filter);
  const out = new Uint8Array(h * outW * c);
  for (let y = 0; y < h; y++) {
    const row = y * w * c;
    for (let xx = 0; xx < outW; xx++) {
      const s = start[xx];
      const n = count[xx];
      const kb = xx * ksize;
      for (let ch = 0; ch < c; ch++) {
        let acc = ONE / 2;
        for (let x = 0; x < n; x++) acc += src[row + (s + x) * c + ch] * weights[kb + x];
        out[(y * outW + xx) * c + ch] = clip8(acc);
      }
    }
  }
  return out;
}

function resizeVertical(src: Uint8Array, h: number, w: number, c: number, outH: number, filter: Filter): Uint8Array {
  const { start, count, ksize, weights } = coefficients(h, outH, filter);
  const out = new Uint8Array(outH * w * c);
  const stride = w * c;
  for (let yy = 0; yy < outH; yy++) {
    const s = start[yy];
    const n = count[yy];
    const kb = yy * ksize;
    for (let i = 0; i < stride; i++) {
      let acc = ONE / 2;
      for (let y = 0; y < n; y++) acc += src[(s + y) * stride + i] * weights[kb + y];
      out[yy * stride + i] = clip8(acc);
    }
  }
  return out;
}

function resizeNearest(img: DecodedImage, outH: number, outW: number): Uint8Array {
  const { pixels, height: h, width: w, channels: c } = img;
  const out = new Uint8Array(outH * outW * c);
  const sy = h / outH;
  const sx = w / outW;
  for (let y = 0; y < outH; y++) {
    const iy = Math.min(Math.floor((y + 0.5) * sy), h - 1);
    for (let x = 0; x < outW; x++) {
      const ix = Math.min(Math.floor((x + 0.5) * sx), w - 1);
      for (let ch = 0; ch < c; ch++) out[(y * outW + x) * c + ch] = pixels[(iy * w + ix) * c + ch];
    }
  }
  return out;
}

/** Resize to height x width (Pillow semantics). Returns the input itself when the size is unchanged. */
export function resizeImage(img: DecodedImage, height: number, width: number, resample: Resample): DecodedImage {
  if (!(Number.isInteger(height) && Number.isInteger(width) && height > 0 && width > 0)) throw new OptionError('size', `resize target must be positive integers, got ${height}x${width}`);
  if (height === img.height && width === img.width) return img;
  if (resample === 'nearest') return { ...img, pixels: resizeNearest(img, height, width), height, width };
  const filter = FILTERS[resample];
  let pixels = img.pixels;
  let w = img.width;
  if (width !== img.width) {
    pixels = resizeHorizontal(pixels, img.height, w, img.channels, width, filter);
    w = width;
  }
  if (height !== img.height) pixels = resizeVertical(pixels, img.height, w, img.channels, height, filter);
  return { pixels, height, width, channels: img.channels };
}

/** The integer region [top, top+h) x [left, left+w); out-of-image parts are zero (as PIL's crop). */
export function cropImage(img: DecodedImage, top: number, left: number, h: number, w: number): DecodedImage {
  const c = img.channels;
  if (top === 0 && left === 0 && h === img.height && w === img.width) return img;
  const out = new Uint8Array(h * w * c);
  for (let y = 0; y < h; y++) {
    const sy = top + y;
    if (sy < 0 || sy >= img.height) continue;
    const x0 = Math.max(0, -left);
    const x1 = Math.min(w, img.width - left);
    if (x1 <= x0) continue;
    out.set(img.pixels.subarray((sy * img.width + left + x0) * c, (sy * img.width + left + x1) * c), (y * w + x0) * c);
  }
  return { pixels: out, height: h, width: w, channels: c };
}

/** Mirror left-right. */
export function flipHorizontal(img: DecodedImage): DecodedImage {
  const { pixels, height: h, width: w, channels: c } = img;
  const out = new Uint8Array(pixels.length);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const s = (y * w + x) * c;
      const d = (y * w + (w - 1 - x)) * c;
      for (let ch = 0; ch < c; ch++) out[d + ch] = pixels[s + ch];
    }
  }
  return { ...img, pixels: out };
}
