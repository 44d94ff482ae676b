/**
 * Repeated augmentation (Hoffer et al.; DeiT's RASampler, timm `RepeatAugSampler`) for one
 * process: the epoch's permutation with every index repeated `count` times in a row (each copy is
 * augmented independently, so a batch holds several views of one image), cut to
 * floor(N / round) * round samples (timm's `selected_round`, 256; 0 keeps N). An epoch therefore
 * has about N samples but only N / count distinct images, as in the official recipes. The
 * permutation comes from the loader's epoch seed (the run's seed and epoch), not from the epoch
 * number alone as in timm, so different seeds give different orders.
 */
import { OptionError } from '@masksub/core/base';

export interface RepeatedAugmentation {
  /** Copies of each image per epoch (DeiT: 3). */
  count: number;
  /** Epoch length is rounded down to a multiple of this (timm: 256; 0 = no rounding). */
  round: number;
}

/** Samples per epoch under repeated augmentation for a source of `size` samples. */
export function repeatedEpochSize(size: number, repeat: RepeatedAugmentation): number {
  if (!(Number.isInteger(repeat.count) && repeat.count >= 1)) throw new OptionError('augment.repeated_aug', `must be a positive integer, got ${repeat.count}`);
  if (!(Number.isInteger(repeat.round) && repeat.round >= 0)) throw new OptionError('augment.repeated_aug_round', `must be a non-negative integer, got ${repeat.round}`);
  const selected = repeat.round > 0 ? Math.floor(size / repeat.round) * repeat.round : size;
  if (size > 0 && selected === 0) {
    throw new OptionError('augment.repeated_aug_round', `the ${size} training samples round down to an empty epoch at a multiple of ${repeat.round} (timm's rule); set augment.repeated_aug_round: 0 for small data`);
  }
  return Math.min(selected, size * repeat.count);
}

/** The epoch order: each index of `permutation` `count` times in a row, cut to the epoch size. */
export function repeatedOrder(permutation: Int32Array, repeat: RepeatedAugmentation): Int32Array {
  const n = repeatedEpochSize(permutation.length, repeat);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = permutation[Math.floor(i / repeat.count)];
  return out;
}
