/**
 * timm's `pretrained_cfg` (the data config of a timm hub folder's config.json) as a typed
 * description, so generic code (the trainer's preprocessing) never reads raw timm keys.
 * timm's eval transform (`transforms_imagenet_eval`): resize the short side to
 * floor(size / crop_pct) with `interpolation`, center-crop to `input_size`, then ToTensor and
 * Normalize(mean, std).
 */
import { FileFormatError } from '../errors.js';

/** timm interpolation names (`pretrained_cfg.interpolation`). */
export const TIMM_INTERPOLATIONS = ['nearest', 'bilinear', 'bicubic', 'lanczos', 'box'] as const;
export type TimmInterpolation = (typeof TIMM_INTERPOLATIONS)[number];

/** timm's DEFAULT_CROP_PCT (used when `crop_pct` is absent). */
export const TIMM_DEFAULT_CROP_PCT = 0.875;

export interface TimmPreprocessing {
  /** [channels, height, width], timm's `input_size`. */
  inputSize: [number, number, number];
  mean: number[];
  std: number[];
  /** Fraction of the resized image kept by the evaluation center crop. */
  cropPct: number;
  interpolation: TimmInterpolation;
}

/**
 * The preprocessing `config.pretrained_cfg` describes, or undefined when the config has none.
 * Every present key is validated (an error names it); absent keys take timm's defaults
 * (ImageNet mean/std, input 3x224x224, crop_pct 0.875, bilinear).
 */
export function timmPreprocessing(config: Readonly<Record<string, unknown>>, source = 'config.json'): TimmPreprocessing | undefined {
  const cfg = config.pretrained_cfg;
  if (cfg === undefined || cfg === null) return undefined;
  if (typeof cfg !== 'object' || Array.isArray(cfg)) throw new FileFormatError(source, `'pretrained_cfg' must be an object, got ${JSON.stringify(cfg)}`);
  const c = cfg as Record<string, unknown>;
  const numbers = (key: string, length: number, positive: boolean, dflt: number[]): number[] => {
    const v = c[key] ?? dflt;
    if (!Array.isArray(v) || v.length !== length || !v.every((x) => typeof x === 'number' && Number.isFinite(x) && (!positive || x > 0))) {
      throw new FileFormatError(source, `'pretrained_cfg.${key}' must be ${length} ${positive ? 'positive ' : ''}finite numbers, got ${JSON.stringify(v)}`);
    }
    return v as number[];
  };
  const inputSize = numbers('input_size', 3, true, [3, 224, 224]);
  if (!inputSize.every(Number.isInteger) || (inputSize[0] !== 1 && inputSize[0] !== 3)) {
    throw new FileFormatError(source, `'pretrained_cfg.input_size' must be [1 or 3, height, width] integers, got ${JSON.stringify(c.input_size)}`);
  }
  const channels = inputSize[0] as number;
  const mean = numbers('mean', channels, false, channels === 3 ? [0.485, 0.456, 0.406] : [0.5]);
  const std = numbers('std', channels, true, channels === 3 ? [0.229, 0.224, 0.225] : [0.5]);
  const cropPct = c.crop_pct ?? TIMM_DEFAULT_CROP_PCT;
  if (typeof cropPct !== 'number' || !(cropPct > 0 && cropPct <= 1)) throw new FileFormatError(source, `'pretrained_cfg.crop_pct' must be in (0, 1], got ${JSON.stringify(c.crop_pct)}`);
  const interpolation = c.interpolation ?? 'bilinear';
  if (typeof interpolation !== 'string' || !(TIMM_INTERPOLATIONS as readonly string[]).includes(interpolation)) {
    throw new FileFormatError(source, `'pretrained_cfg.interpolation' ${JSON.stringify(c.interpolation)} is not one of ${TIMM_INTERPOLATIONS.join(', ')}`);
  }
  return { inputSize: inputSize as [number, number, number], mean, std, cropPct, interpolation: interpolation as TimmInterpolation };
}
