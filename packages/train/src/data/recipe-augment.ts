/**
 * The recipe augmentations after the crop and flip, in the official order: RandAugment (timm) or
 * DeiT-III's ThreeAugment, then colour jitter (on uint8 pixels, Pillow semantics); random erasing
 * runs later on the normalised tensor (random-erasing.ts). All draws come from the sample's Rng.
 */
import type { Rng } from '@masksub/core/base';
import { colorJitter, colorJitterStrength, type ColorJitterStrength } from './color-jitter.js';
import type { PreprocessSpec } from './preprocess.js';
import type { RandomErasingMode, RandomErasingOptions } from './random-erasing.js';
import { parseRandAugment, randAugment, type AugmentInterpolation, type RandAugmentConfig, type RandAugmentOptions } from './randaugment.js';
import type { RepeatedAugmentation } from './repeat-sampler.js';
import { threeAugment } from './three-augment.js';
import type { DecodedImage } from './types.js';

export interface RecipeAugmentOptions {
  randAugment?: { config: RandAugmentConfig } & RandAugmentOptions;
  threeAugment?: boolean;
  colorJitter?: ColorJitterStrength;
}

export function recipeAugmentActive(o: RecipeAugmentOptions | undefined): boolean {
  return !!o && (!!o.randAugment || !!o.threeAugment || (!!o.colorJitter && o.colorJitter.some((v) => v > 0)));
}

export function applyRecipeAugment(img: DecodedImage, o: RecipeAugmentOptions, rng: Rng): DecodedImage {
  let out = img;
  if (o.randAugment) out = randAugment(out, o.randAugment.config, o.randAugment, rng);
  if (o.threeAugment) out = threeAugment(out, rng);
  if (o.colorJitter && o.colorJitter.some((v) => v > 0)) out = colorJitter(out, o.colorJitter, rng);
  return out;
}

/** The loader options of the `augment` config section's recipe keys. */
export function recipeLoaderOptions(
  aug: {
    rand_augment: string | null;
    rand_augment_interpolation: AugmentInterpolation;
    three_augment: boolean;
    color_jitter: number | [number, number, number];
    random_erasing: number;
    random_erasing_mode: RandomErasingMode;
    random_erasing_count: number;
    repeated_aug: number;
    repeated_aug_round: number;
  },
  spec: PreprocessSpec,
): { recipe?: RecipeAugmentOptions; erasing?: RandomErasingOptions; repeat?: RepeatedAugmentation } {
  // timm fills geometric ops with the mean colour: round(255 * mean) on 0..1 statistics.
  const scale = spec.rescaleFactor ?? 1;
  const fill = Array.from({ length: spec.channels }, (_, c) => (spec.mean ? Math.min(255, Math.max(0, Math.round(spec.mean[c] / scale))) : 128));
  const recipe: RecipeAugmentOptions = {
    randAugment: aug.rand_augment ? { config: parseRandAugment(aug.rand_augment), fill, interpolation: aug.rand_augment_interpolation } : undefined,
    threeAugment: aug.three_augment,
    colorJitter: colorJitterStrength(aug.color_jitter),
  };
  return {
    recipe: recipeAugmentActive(recipe) ? recipe : undefined,
    erasing: aug.random_erasing > 0 ? { prob: aug.random_erasing, mode: aug.random_erasing_mode, count: aug.random_erasing_count } : undefined,
    repeat: aug.repeated_aug > 1 ? { count: aug.repeated_aug, round: aug.repeated_aug_round } : undefined,
  };
}
