/**
 * Deterministic preprocessing: geometry (resize, center crop), then rescale and normalise into
 * NCHW float32, following Hugging Face image processors (`preprocessor_config.json`) so a model
 * from the hub sees the input it was trained with.
 *
 * HF semantics kept here: `size` is `{height,width}` (exact), `{shortest_edge}` (aspect kept,
 * new long side = floor(size * long / short)) or a plain number (square); `crop_pct` (ConvNeXt/
 * ResNet processors) resizes the short side to floor(shortest_edge / crop_pct) and center-crops
 * to shortest_edge when shortest_edge < 384; center crop offsets are floor((in - out) / 2);
 * resizing uses Pillow's filters (see resample.ts) on uint8 pixels; then `x * rescale_factor`,
 * then `(x - mean) / std`.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { FileFormatError, OptionError } from '@masksub/core/base';
import { cropImage, resampleFromPil, resampleToPil, resizeImage, type Resample } from './resample.js';
import type { DecodedImage } from './types.js';

export interface Size2D {
  height: number;
  width: number;
}

/** How a decoded image becomes model input. */
export interface PreprocessSpec {
  /** Resize step: exact size, shortest edge (aspect kept), or none. */
  resize: Size2D | { shortestEdge: number } | null;
  /** Center crop after resizing, or none. */
  centerCrop: Size2D | null;
  /**
   * How the crop's top/left offsets round: 'floor' as HF image processors (default), 'round'
   * (half to even) as torchvision's CenterCrop in timm's eval transform.
   */
  cropOffsets?: CropOffsetRounding;
  resample: Resample;
  /** Multiply pixels by this (1/255 usually); null leaves 0..255. */
  rescaleFactor: number | null;
  /** Per-channel mean/std (length = channels); null skips normalisation. */
  mean: number[] | null;
  std: number[] | null;
  /** Channels the model wants: gray images are replicated to 3, RGB reduced to luma for 1. */
  channels: 1 | 3;
}

export type CropOffsetRounding = 'floor' | 'round';

export const IMAGENET_MEAN = [0.485, 0.456, 0.406];
export const IMAGENET_STD = [0.229, 0.224, 0.225];

const sizeSchema = z.union([
  z.number().int().positive(),
  z.object({ height: z.number().int().positive(), width: z.number().int().positive() }),
  z.object({ shortest_edge: z.number().int().positive(), longest_edge: z.number().int().positive().optional() }),
]);

const hfSchema = z.object({
  do_resize: z.boolean().optional(),
  size: sizeSchema.optional(),
  resample: z.number().int().optional(),
  do_center_crop: z.boolean().optional(),
  crop_size: sizeSchema.optional(),
  crop_pct: z.number().positive().max(1).nullable().optional(),
  do_rescale: z.boolean().optional(),
  rescale_factor: z.number().positive().optional(),
  do_normalize: z.boolean().optional(),
  image_mean: z.union([z.number(), z.array(z.number())]).optional(),
  image_std: z.union([z.number(), z.array(z.number())]).optional(),
});

function asSize(s: z.infer<typeof sizeSchema>): Size2D | { shortestEdge: number } {
  if (typeof s === 'number') return { height: s, width: s };
  if ('shortest_edge' in s) return { shortestEdge: s.shortest_edge };
  return { height: s.height, width: s.width };
}

function perChannel(v: number | number[], channels: number, option: string, file: string): number[] {
  const a = typeof v === 'number' ? new Array<number>(channels).fill(v) : v;
  if (a.length === channels) return a;
  if (a.length === 3 && channels === 1) return [(a[0] + a[1] + a[2]) / 3];
  throw new FileFormatError(file, `${option} has ${a.length} values for ${channels} channels`);
}

/**
 * A PreprocessSpec from the JSON of an HF `preprocessor_config.json` (`file` names it in errors).
 * Defaults where keys are absent follow `BaseImageProcessor`/ViT: resize on, bilinear, rescale
 * 1/255, normalise with mean = std = 0.5.
 */
export function preprocessSpecFromHf(json: unknown, file: string, channels: 1 | 3 = 3): PreprocessSpec {
  const parsed = hfSchema.safeParse(json);
  if (!parsed.success) throw new FileFormatError(file, `not an image preprocessor config: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const c = parsed.data;
  let resize: PreprocessSpec['resize'] = (c.do_resize ?? true) && c.size !== undefined ? asSize(c.size) : null;
  let centerCrop: Size2D | null = null;
  if ((c.do_center_crop ?? false) && c.crop_size !== undefined) {
    const crop = asSize(c.crop_size);
    centerCrop = 'shortestEdge' in crop ? { height: crop.shortestEdge, width: crop.shortestEdge } : crop;
  }
  if (resize && 'shortestEdge' in resize && c.crop_pct != null) {
    // ConvNeXt-style: below 384 px, resize to edge/crop_pct and center crop; else warp to a square.
    const edge = resize.shortestEdge;
    if (edge < 384) {
      resize = { shortestEdge: Math.floor(edge / c.crop_pct) };
      centerCrop = { height: edge, width: edge };
    } else {
      resize = { height: edge, width: edge };
    }
  }
  const mean = (c.do_normalize ?? true) ? perChannel(c.image_mean ?? 0.5, channels, 'image_mean', file) : null;
  const std = (c.do_normalize ?? true) ? perChannel(c.image_std ?? 0.5, channels, 'image_std', file) : null;
  return {
    resize,
    centerCrop,
    resample: resampleFromPil(c.resample ?? 2),
    rescaleFactor: (c.do_rescale ?? true) ? (c.rescale_factor ?? 1 / 255) : null,
    mean,
    std,
    channels,
  };
}

/**
 * The HF `preprocessor_config.json` of a PreprocessSpec: `preprocessSpecFromHf` reads it back to
 * the same spec, and HF image processors (Python and transformers.js) apply the same steps.
 * `processorType` (e.g. "ViTImageProcessor") tells AutoImageProcessor which class to build.
 */
export function preprocessSpecToHf(spec: PreprocessSpec, processorType?: string): Record<string, unknown> {
  const hf: Record<string, unknown> = {};
  if (processorType) hf.image_processor_type = processorType;
  hf.do_resize = spec.resize !== null;
  if (spec.resize !== null) hf.size = 'shortestEdge' in spec.resize ? { shortest_edge: spec.resize.shortestEdge } : { height: spec.resize.height, width: spec.resize.width };
  hf.resample = resampleToPil(spec.resample);
  hf.do_center_crop = spec.centerCrop !== null;
  if (spec.centerCrop !== null) hf.crop_size = { height: spec.centerCrop.height, width: spec.centerCrop.width };
  hf.do_rescale = spec.rescaleFactor !== null;
  if (spec.rescaleFactor !== null) hf.rescale_factor = spec.rescaleFactor;
  hf.do_normalize = spec.mean !== null && spec.std !== null;
  if (spec.mean !== null && spec.std !== null) {
    hf.image_mean = spec.mean;
    hf.image_std = spec.std;
  }
  return hf;
}

/** Load `preprocessor_config.json` from a model folder or the file itself. */
export async function loadPreprocessorConfig(pathOrDir: string, channels: 1 | 3 = 3): Promise<PreprocessSpec> {
  const info = await stat(pathOrDir).catch(() => null);
  const file = info?.isDirectory() ? join(pathOrDir, 'preprocessor_config.json') : pathOrDir;
  const text = await readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => {
    throw new FileFormatError(file, `cannot read: ${e.code ?? e.message}`);
  });
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new FileFormatError(file, `invalid JSON: ${(e as Error).message}`);
  }
  return preprocessSpecFromHf(json, file, channels);
}

export interface ExplicitPreprocessOptions {
  /** Output size (square when a number). */
  size: number | Size2D;
  mean?: number[];
  std?: number[];
  /** Default 3. */
  channels?: 1 | 3;
  /** Default 'bilinear'. */
  resample?: Resample;
  /**
   * Evaluation crop fraction (timm's crop_pct): resize the short side to size/cropPct, then
   * center-crop to size. Omitted: resize straight to size.
   */
  cropPct?: number;
}

/** A PreprocessSpec from explicit options (CLI flags, models without a preprocessor config). */
export function explicitPreprocessSpec(o: ExplicitPreprocessOptions): PreprocessSpec {
  const size = typeof o.size === 'number' ? { height: o.size, width: o.size } : o.size;
  if (!(size.height > 0 && size.width > 0 && Number.isInteger(size.height) && Number.isInteger(size.width))) throw new OptionError('size', `must be positive integers, got ${JSON.stringify(o.size)}`);
  const channels = o.channels ?? 3;
  const mean = o.mean ?? (channels === 3 ? IMAGENET_MEAN : [0.5]);
  const std = o.std ?? (channels === 3 ? IMAGENET_STD : [0.5]);
  if (mean.length !== channels) throw new OptionError('mean', `needs ${channels} values, got ${mean.length}`);
  if (std.length !== channels || std.some((s) => !(s > 0))) throw new OptionError('std', `needs ${channels} positive values, got [${std}]`);
  if (o.cropPct !== undefined && !(o.cropPct > 0 && o.cropPct <= 1)) throw new OptionError('cropPct', `must be in (0, 1], got ${o.cropPct}`);
  const resize = o.cropPct !== undefined && o.cropPct < 1 ? { shortestEdge: Math.floor(Math.min(size.height, size.width) / o.cropPct) } : size;
  return {
    resize,
    centerCrop: o.cropPct !== undefined && o.cropPct < 1 ? size : null,
    resample: o.resample ?? 'bilinear',
    rescaleFactor: 1 / 255,
    mean,
    std,
    channels,
  };
}

/** The (height, width) a spec produces from an image of the given size. */
export function outputSize(spec: PreprocessSpec, inHeight: number, inWidth: number): Size2D {
  if (spec.centerCrop) return spec.centerCrop;
  return resizeTarget(spec, inHeight, inWidth);
}

function resizeTarget(spec: PreprocessSpec, h: number, w: number): Size2D {
  const r = spec.resize;
  if (r === null) return { height: h, width: w };
  if ('height' in r) return r;
  const short = Math.min(h, w);
  const long = Math.max(h, w);
  const newLong = Math.floor((r.shortestEdge * long) / short);
  return h <= w ? { height: r.shortestEdge, width: newLong } : { height: newLong, width: r.shortestEdge };
}

/**
 * HF center_crop: floor offsets; torchvision's CenterCrop: int(round(d / 2)), Python's round
 * (half to even). A crop larger than the image pads with zeros around it.
 */
export function centerCropImage(img: DecodedImage, height: number, width: number, rounding: CropOffsetRounding = 'floor'): DecodedImage {
  const offset = (d: number) => (rounding === 'floor' ? Math.floor(d / 2) : roundHalfEven(d / 2));
  return cropImage(img, offset(img.height - height), offset(img.width - width), height, width);
}

function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const diff = x - f;
  if (diff !== 0.5) return Math.round(x);
  return f % 2 === 0 ? f : f + 1;
}

/** The evaluation geometry: resize, then center crop. */
export function applyGeometry(img: DecodedImage, spec: PreprocessSpec): DecodedImage {
  const target = resizeTarget(spec, img.height, img.width);
  let out = resizeImage(img, target.height, target.width, spec.resample);
  if (spec.centerCrop) out = centerCropImage(out, spec.centerCrop.height, spec.centerCrop.width, spec.cropOffsets);
  return out;
}

/**
 * Write `img` (uint8 HWC, already at the output size) into `out` at `offset` as normalised CHW
 * with `spec.channels` channels: gray is replicated to RGB; RGB to gray uses ITU-R 601 luma as
 * Pillow's convert('L') does.
 */
export function writeNormalizedCHW(img: DecodedImage, spec: PreprocessSpec, out: Float32Array, offset: number): void {
  const { height: h, width: w, channels: inC, pixels } = img;
  const C = spec.channels;
  const plane = h * w;
  if (offset + C * plane > out.length) throw new OptionError('size', `image ${h}x${w}x${C} does not fit the batch buffer`);
  const scale = spec.rescaleFactor ?? 1;
  for (let c = 0; c < C; c++) {
    const mean = spec.mean ? spec.mean[c] : 0;
    const invStd = spec.std ? 1 / spec.std[c] : 1;
    const base = offset + c * plane;
    for (let p = 0; p < plane; p++) {
      let v: number;
      if (inC === C) v = pixels[p * inC + c];
      else if (inC === 1) v = pixels[p];
      else v = Math.round((pixels[p * 3] * 299 + pixels[p * 3 + 1] * 587 + pixels[p * 3 + 2] * 114) / 1000);
      out[base + p] = (v * scale - mean) * invStd;
    }
  }
}

/** Preprocess one image for evaluation: geometry, then normalised CHW float32. */
export function preprocessImage(img: DecodedImage, spec: PreprocessSpec): { data: Float32Array; shape: [number, number, number] } {
  const g = applyGeometry(img, spec);
  const data = new Float32Array(spec.channels * g.height * g.width);
  writeNormalizedCHW(g, spec, data, 0);
  return { data, shape: [spec.channels, g.height, g.width] };
}
