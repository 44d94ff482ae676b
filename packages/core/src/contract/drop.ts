/**
 * The drop operator: what the sub-model sees. An operator draws a replayable mask for a batch
 * (host arrays, so tests can feed fixed masks and checkpoints need not store tensors) and turns
 * it into the sub pass: changed inputs (zero-fill, token masking) and/or instructions the model
 * follows inside its forward (token removal, mask-token swap, dropout, drop-path).
 */
import { OptionError } from '../errors.js';
import type { Rng } from '../rng.js';
import { tf } from '../tf.js';
import type { ForwardOptions, ModelInputs } from '../model.js';

/** Drop operators a model can offer for the 'masksub' / 'masking' variants (one list for schema, CLI and library). */
export const MASK_DROP_KINDS = ['token-removal', 'mask-token', 'zero-fill', 'token-masking'] as const;
export type MaskDropKind = (typeof MASK_DROP_KINDS)[number];
/** Every drop kind, including the stochastic ones behind dropsub / pathsub. */
export const DROP_KINDS = [...MASK_DROP_KINDS, 'dropout', 'drop-path'] as const;
export type DropKind = (typeof DROP_KINDS)[number];

/** What was dropped, as host data: replayable and comparable with reference masks. */
export type DropMask =
  /** Kept patch indices per sample, ascending, CLS excluded: [B, K]. */
  | { kind: 'token-removal'; batch: number; keep: number; keepIndices: Int32Array }
  /** 1 = patch token replaced by the mask token: [B, N]. */
  | { kind: 'mask-token'; batch: number; tokens: number; masked: Uint8Array }
  /** 1 = keep the pixel: [B, 1, H, W] on the normalised input. */
  | { kind: 'zero-fill'; batch: number; height: number; width: number; pixelMask: Float32Array }
  /** Token ids after masking: [B, L]. */
  | { kind: 'token-masking'; batch: number; length: number; maskedIds: Int32Array; masked: Uint8Array }
  /** Stochastic layers: only a rate and a seed (the model draws the noise). */
  | { kind: 'dropout' | 'drop-path'; rate: number; seed: number };

/** The sub pass: inputs to feed and options for the model's forward. */
export interface SubView {
  inputs: ModelInputs;
  forward: ForwardOptions;
}

export interface DropOperator {
  readonly kind: DropKind;
  /** Draw what to drop for this batch at ratio r in [0, 1). */
  sample(inputs: ModelInputs, ratio: number, rng: Rng): DropMask;
  /** The sub-model's view of the batch for a given mask. Tensors it creates are owned by the caller. */
  apply(inputs: ModelInputs, mask: DropMask): SubView;
}

export function checkRatio(ratio: number, option = 'ratio'): void {
  if (!Number.isFinite(ratio) || ratio < 0 || ratio >= 1) {
    throw new OptionError(option, `must be in [0, 1), got ${ratio}`);
  }
}

function requireInput(inputs: ModelInputs, name: string, rank: number, op: string): tf.Tensor {
  const t = inputs[name];
  if (!t) throw new OptionError(name, `the ${op} drop operator needs input '${name}'; got [${Object.keys(inputs)}]`);
  if (t.rank !== rank) throw new OptionError(name, `expected rank ${rank} for the ${op} drop operator, got shape [${t.shape}]`);
  return t;
}

/**
 * How many of `n` units (tokens, mask blocks, zero-fill squares) stay when a fraction r is
 * dropped: floor(n * (1 - r)), the official `len_keep = int(L * (1 - mask_ratio))`
 * (augsub deit/models_v2.py, mae/models_vit.py, swin/models/swin_transformer.py), in the same
 * float64 arithmetic. At least one unit stays (the official code would drop everything only at
 * n * (1 - r) < 1, e.g. one 32 px square on a 32 px image), so r = 0.5 of 49 tokens keeps 24.
 */
export function keptCount(n: number, ratio: number): number {
  checkRatio(ratio);
  return Math.max(1, Math.floor(n * (1 - ratio)));
}

/** Per sample, K = {@link keptCount}(N, r) random indices of [0, N), ascending (MAE's argsort of noise). */
export function sampleKeepIndices(batch: number, tokens: number, ratio: number, rng: Rng): Int32Array {
  const keep = keptCount(tokens, ratio);
  const out = new Int32Array(batch * keep);
  const perm = new Int32Array(tokens);
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < tokens; i++) perm[i] = i;
    // Partial Fisher-Yates: the first `keep` entries are a uniform random subset.
    for (let i = 0; i < keep; i++) {
      const j = i + rng.int(tokens - i);
      const t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
    }
    const chosen = Array.from(perm.subarray(0, keep)).sort((x, y) => x - y);
    out.set(chosen, b * keep);
  }
  return out;
}

/**
 * MAE-style token removal for transformers with a CLS token: positions are added to all tokens
 * first, then K of N patch tokens are gathered per sample (CLS kept in front), so the sub pass
 * runs on 1+K tokens and costs about (1-r) of the main pass.
 */
export function tokenRemoval(numPatches: number, inputName = 'pixel_values'): DropOperator {
  return {
    kind: 'token-removal',
    sample(inputs, ratio, rng) {
      const x = requireInput(inputs, inputName, 4, 'token-removal');
      const batch = x.shape[0];
      const keepIndices = sampleKeepIndices(batch, numPatches, ratio, rng);
      return { kind: 'token-removal', batch, keep: keepIndices.length / batch, keepIndices };
    },
    apply(inputs, mask) {
      if (mask.kind !== 'token-removal') throw new OptionError('mask', `token-removal got a ${mask.kind} mask`);
      return { inputs, forward: { keepIndices: tf.tensor2d(mask.keepIndices, [mask.batch, mask.keep], 'int32') } };
    },
  };
}

/**
 * 1 where a patch token is dropped, in square blocks of `block` x `block` tokens on a grid:
 * blocks - {@link keptCount}(blocks, r) random blocks (Swin's official `L - len_keep`).
 */
export function sampleBlockMask(batch: number, gridH: number, gridW: number, block: number, ratio: number, rng: Rng): Uint8Array {
  const bh = Math.ceil(gridH / block);
  const bw = Math.ceil(gridW / block);
  const blocks = bh * bw;
  const dropBlocks = blocks - keptCount(blocks, ratio);
  const out = new Uint8Array(batch * gridH * gridW);
  const order = new Int32Array(blocks);
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < blocks; i++) order[i] = i;
    rng.shuffle(order);
    for (let k = 0; k < dropBlocks; k++) {
      const by = Math.floor(order[k] / bw);
      const bx = order[k] % bw;
      for (let y = by * block; y < Math.min(gridH, (by + 1) * block); y++) {
        for (let x = bx * block; x < Math.min(gridW, (bx + 1) * block); x++) out[b * gridH * gridW + y * gridW + x] = 1;
      }
    }
  }
  return out;
}

/**
 * BEiT/SimMIM-style mask-token swap: masked patch tokens are replaced by a learnable mask token
 * after patch embedding; the sequence length is unchanged (needed by windowed models like Swin).
 * `blockTokens` is the side of the square blocks in tokens (32 px / patch size in the paper).
 */
export function maskTokenSwap(gridH: number, gridW: number, blockTokens = 1, inputName = 'pixel_values'): DropOperator {
  return {
    kind: 'mask-token',
    sample(inputs, ratio, rng) {
      const x = requireInput(inputs, inputName, 4, 'mask-token');
      const batch = x.shape[0];
      return { kind: 'mask-token', batch, tokens: gridH * gridW, masked: sampleBlockMask(batch, gridH, gridW, blockTokens, ratio, rng) };
    },
    apply(inputs, mask) {
      if (mask.kind !== 'mask-token') throw new OptionError('mask', `mask-token got a ${mask.kind} mask`);
      return { inputs, forward: { maskedPositions: tf.tensor2d(Float32Array.from(mask.masked), [mask.batch, mask.tokens]) } };
    },
  };
}

/**
 * Zero-fill of random `patch` x `patch` pixel squares on the normalised input: r is the dropped
 * fraction, floor(L (1 - r)) squares stay. (The official ResNet code, augsub
 * resnet_rsb/models.py random_masking, zeroes the first `len_keep = int(L (1 - r))` shuffled
 * squares instead: its mask is inverted, which equals this rule only at r = 0.5 with L even —
 * its "r = 0.25" zeroes 75 % of the squares. Pass 1 - r here to reproduce it.) Works on any image model, including a plain tf.LayersModel, since only the input changes.
 * `layout` says where the channels are: 'NCHW' (HF pixel_values) or 'NHWC' (tfjs layers).
 */
export function zeroFill(patch = 32, inputName = 'pixel_values', layout: 'NCHW' | 'NHWC' = 'NCHW'): DropOperator {
  if (!Number.isInteger(patch) || patch < 1) throw new OptionError('patch', `zero-fill patch size must be a positive integer, got ${patch}`);
  return {
    kind: 'zero-fill',
    sample(inputs, ratio, rng) {
      const x = requireInput(inputs, inputName, 4, 'zero-fill');
      const [batch, d1, d2, d3] = x.shape as [number, number, number, number];
      const [height, width] = layout === 'NCHW' ? [d2, d3] : [d1, d2];
      const gridH = Math.ceil(height / patch);
      const gridW = Math.ceil(width / patch);
      const dropped = sampleBlockMask(batch, gridH, gridW, 1, ratio, rng);
      const pixelMask = new Float32Array(batch * height * width);
      for (let b = 0; b < batch; b++) {
        for (let y = 0; y < height; y++) {
          for (let xx = 0; xx < width; xx++) {
            const cell = Math.floor(y / patch) * gridW + Math.floor(xx / patch);
            pixelMask[(b * height + y) * width + xx] = dropped[b * gridH * gridW + cell] ? 0 : 1;
          }
        }
      }
      return { kind: 'zero-fill', batch, height, width, pixelMask };
    },
    apply(inputs, mask) {
      if (mask.kind !== 'zero-fill') throw new OptionError('mask', `zero-fill got a ${mask.kind} mask`);
      const x = requireInput(inputs, inputName, 4, 'zero-fill');
      const shape: [number, number, number, number] =
        layout === 'NCHW' ? [mask.batch, 1, mask.height, mask.width] : [mask.batch, mask.height, mask.width, 1];
      const masked = tf.tidy(() => tf.mul(x, tf.tensor4d(mask.pixelMask, shape)));
      return { inputs: { ...inputs, [inputName]: masked }, forward: {} };
    },
  };
}

/**
 * BERT-style token masking: of the n real tokens (attention_mask = 1, never the special ids),
 * n - {@link keptCount}(n, r) become [MASK] (the same count rule as the image operators); at
 * least one per sequence so the sub pass always differs.
 */
export function tokenMasking(maskTokenId: number, specialIds: readonly number[]): DropOperator {
  const special = new Set(specialIds);
  return {
    kind: 'token-masking',
    sample(inputs, ratio, rng) {
      checkRatio(ratio);
      const ids = requireInput(inputs, 'input_ids', 2, 'token-masking');
      const [batch, length] = ids.shape;
      const idData = ids.dataSync();
      const attention = inputs.attention_mask?.dataSync();
      const masked = new Uint8Array(batch * length);
      const maskedIds = Int32Array.from(idData);
      for (let b = 0; b < batch; b++) {
        const candidates: number[] = [];
        for (let i = 0; i < length; i++) {
          const k = b * length + i;
          if ((attention ? attention[k] : 1) && !special.has(idData[k])) candidates.push(i);
        }
        if (candidates.length === 0) continue;
        rng.shuffle(candidates);
        const n = candidates.length - keptCount(candidates.length, ratio) || 1;
        for (const i of candidates.slice(0, n)) {
          masked[b * length + i] = 1;
          maskedIds[b * length + i] = maskTokenId;
        }
      }
      return { kind: 'token-masking', batch, length, maskedIds, masked };
    },
    apply(inputs, mask) {
      if (mask.kind !== 'token-masking') throw new OptionError('mask', `token-masking got a ${mask.kind} mask`);
      return { inputs: { ...inputs, input_ids: tf.tensor2d(mask.maskedIds, [mask.batch, mask.length], 'int32') }, forward: {} };
    },
  };
}

/** DropSub: dropout at rate r on attention output projections and in MLPs, in the sub pass only. */
export function dropoutSub(): DropOperator {
  return stochastic('dropout');
}

/** PathSub: drop-path (stochastic depth) at rate r in every block, in the sub pass only. */
export function dropPathSub(): DropOperator {
  return stochastic('drop-path');
}

function stochastic(kind: 'dropout' | 'drop-path'): DropOperator {
  return {
    kind,
    sample(_inputs, ratio, rng) {
      checkRatio(ratio);
      return { kind, rate: ratio, seed: rng.nextUint32() };
    },
    apply(inputs, mask) {
      if (mask.kind !== kind) throw new OptionError('mask', `${kind} got a ${mask.kind} mask`);
      const forward: ForwardOptions =
        kind === 'dropout'
          ? { dropoutRate: mask.rate, seed: mask.seed }
          : // The official sub pass sets every block's drop-path probability to r (augsub deit/models_v2.py forward_features_droppath).
            { dropPathRate: mask.rate, dropPathRule: 'uniform', seed: mask.seed };
      return { inputs, forward };
    },
  };
}
