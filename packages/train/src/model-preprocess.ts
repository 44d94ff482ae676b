/**
 * How images become a model's input, decided in one place for training and evaluation: the
 * checkpoint's preprocessor_config.json when it has one (resize, crop, rescale, normalise, as HF
 * image processors do); a timm hub config's `pretrained_cfg` (read by core's timmPreprocessing:
 * timm's eval transform); otherwise the model's image size with ImageNet statistics. Explicit
 * values (run config or CLI flags) override any of them.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FileFormatError, type MaskSubModel, OptionError, type TimmPreprocessing, folderFile, timmPreprocessing } from '@masksub/core';
import { IMAGENET_MEAN, IMAGENET_STD, explicitPreprocessSpec, loadPreprocessorConfig, type PreprocessSpec } from './data/preprocess.js';

export interface PreprocessOverrides {
  imageSize?: number;
  mean?: number[];
  std?: number[];
}

export async function preprocessForModel(model: MaskSubModel, modelDir: string, overrides: PreprocessOverrides = {}): Promise<PreprocessSpec> {
  const mc = model.config as Record<string, unknown>;
  const channels = (mc.num_channels === 1 ? 1 : 3) as 1 | 3;
  // Found by name in an untrusted folder: folderFile refuses a symlink out of it.
  const ppPath = folderFile(modelDir, 'preprocessor_config.json');
  let spec: PreprocessSpec;
  let source = ppPath ?? join(modelDir, 'preprocessor_config.json');
  const timm = ppPath !== undefined ? undefined : timmPreprocessing(mc, join(modelDir, 'config.json'));
  if (ppPath !== undefined) {
    spec = await loadPreprocessorConfig(ppPath, channels);
  } else if (timm) {
    spec = timmEvalSpec(timm);
    source = join(modelDir, 'config.json');
  } else {
    // Dual-encoder and vision-tower configs (CLIP, FT-CLIP) keep it in vision_config.
    const vision = mc.vision_config as Record<string, unknown> | undefined;
    const img = mc.image_size ?? vision?.image_size;
    const size = overrides.imageSize ?? (Array.isArray(img) ? Number(img[0]) : typeof img === 'number' ? img : undefined);
    if (!size) throw new OptionError('data.image_size', 'the model config has no image_size; set data.image_size');
    spec = explicitPreprocessSpec({ size, channels, mean: channels === 1 ? [IMAGENET_MEAN[0]] : IMAGENET_MEAN, std: channels === 1 ? [IMAGENET_STD[0]] : IMAGENET_STD });
  }
  if (overrides.imageSize) spec = { ...spec, resize: { height: overrides.imageSize, width: overrides.imageSize }, centerCrop: null };
  const mean = overrides.mean ?? spec.mean;
  const std = overrides.std ?? spec.std;
  checkNormalisation(mean, spec.channels, overrides.mean ? 'data.mean' : source, false);
  checkNormalisation(std, spec.channels, overrides.std ? 'data.std' : source, true);
  return { ...spec, mean, std };
}

/**
 * timm's `transforms_imagenet_eval`: Resize(floor(size / crop_pct)) on the short side (aspect
 * kept), CenterCrop(input_size) (torchvision's rounded offsets), ToTensor (x / 255), Normalize(mean, std). A non-square
 * input_size resizes by the shorter target side (timm's ResizeKeepRatio fits both sides).
 */
export function timmEvalSpec(t: TimmPreprocessing): PreprocessSpec {
  const [channels, height, width] = t.inputSize;
  return {
    resize: { shortestEdge: Math.floor(Math.min(height, width) / t.cropPct) },
    centerCrop: { height, width },
    cropOffsets: 'round',
    resample: t.interpolation,
    rescaleFactor: 1 / 255,
    mean: t.mean,
    std: t.std,
    channels: channels === 1 ? 1 : 3,
  };
}

/**
 * One finite value per channel (and a positive std): a 2-value mean on RGB or a zero std would
 * otherwise turn every input into NaN and the run into silent garbage.
 */
function checkNormalisation(values: number[] | null, channels: number, source: string, positive: boolean): void {
  if (values === null) return;
  const what = positive ? 'std' : 'mean';
  const problem =
    values.length !== channels
      ? `needs ${channels} value${channels > 1 ? 's' : ''} (one per channel), got ${values.length}: [${values}]`
      : values.some((v) => !Number.isFinite(v) || (positive && !(v > 0)))
        ? `needs ${positive ? 'positive ' : ''}finite numbers, got [${values}]`
        : undefined;
  if (!problem) return;
  if (source.startsWith('data.')) throw new OptionError(source, `${problem} (also --${what} of masksub eval)`);
  throw new FileFormatError(source, `image_${what} ${problem}`);
}

/**
 * The `image_processor_type` of a checkpoint's preprocessor_config.json, carried over to the
 * fine-tuned model's; undefined without one (HF's AutoImageProcessor then uses its base class,
 * which applies the same resize / rescale / normalise keys).
 */
export function imageProcessorType(modelDir: string): string | undefined {
  const ppPath = folderFile(modelDir, 'preprocessor_config.json');
  if (ppPath === undefined) return undefined;
  try {
    const json = JSON.parse(readFileSync(ppPath, 'utf8')) as { image_processor_type?: unknown };
    return typeof json.image_processor_type === 'string' ? json.image_processor_type : undefined;
  } catch {
    return undefined; // preprocessForModel already reported an unreadable file, naming it
  }
}
