/**
 * DeiT-III's ThreeAugment (facebookresearch/deit augment.py, `new_data_aug_generator`): after the
 * crop and flip, exactly one of grayscale (3 channels), solarization (threshold 128) or Gaussian
 * blur (radius uniform in [0.1, 2]) is chosen uniformly; colour jitter follows when its strength
 * is non-zero (DeiT-III: 0.3).
 */
import type { Rng } from '@masksub/core/base';
import { gaussianBlur, grayscale, solarize } from './image-ops.js';
import type { DecodedImage } from './types.js';

export const THREE_AUGMENT_OPS = ['grayscale', 'solarize', 'blur'] as const;

export function threeAugment(img: DecodedImage, rng: Rng): DecodedImage {
  const op = THREE_AUGMENT_OPS[rng.int(3)];
  if (op === 'grayscale') return grayscale(img);
  if (op === 'solarize') return solarize(img, 128);
  return gaussianBlur(img, 0.1 + 1.9 * rng.next());
}
