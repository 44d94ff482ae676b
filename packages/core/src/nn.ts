/**
 * Building blocks shared by the transformer adapters, as pure functions of tensors. Weights are
 * in masksub's internal layouts (Linear [in, out]), so the forward matmuls are untransposed.
 */
import { fusedDropout, fusedGelu, fusedKernelsActive, fusedLayerNorm, fusedQuickGelu, fusedScaledSoftmax } from './backend/kernels/fused.js';
import {
  batchNormEpilogueActive,
  batchNormKernelsActive,
  nativeBatchNormTrain,
  nativeBatchNormTrainFused,
  type BatchNormEpilogue,
  type BatchNormTrainResult,
} from './backend/kernels/batch_norm.js';
export type { BatchNormEpilogue, BatchNormTrainResult } from './backend/kernels/batch_norm.js';
import { FileFormatError, OptionError } from './errors.js';
import { opWithInputGradients } from './tape.js';
import { tf } from './tf.js';

/**
 * A learned token [1, 1, D] (or [D]) repeated over a batch: [batch, 1, D]. An add onto zeros, not
 * tf.tile / tf.broadcastTo: tfjs' Tile gradient is one slice and one add per batch row (128
 * kernel calls per pass at batch 64), the add's is one row sum.
 */
export function batchToken(token: tf.Tensor, batch: number): tf.Tensor3D {
  const d = token.shape[token.shape.length - 1];
  return tf.add(tf.zeros([batch, 1, d]), tf.reshape(token, [1, 1, d]));
}

/**
 * y = x W + b over the last axis; W is [in, out]. A 1-D bias rides in the matmul (_FusedMatMul:
 * XNNPACK starts its accumulators from the bias on wasm), saving a full pass over y forward;
 * its gradient is the same row sum as for a separate add.
 */
export function linear(x: tf.Tensor, weight: tf.Tensor, bias?: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const inDim = x.shape[x.rank - 1] as number;
    const outDim = weight.shape[1] as number;
    const flat = x.rank === 2 ? x : tf.reshape(x, [-1, inDim]);
    let y: tf.Tensor;
    if (bias && bias.rank === 1) y = linearWithBias(flat as tf.Tensor2D, weight, bias);
    else {
      y = tf.matMul(flat, weight);
      if (bias) y = tf.add(y, bias);
    }
    return x.rank === 2 ? y : tf.reshape(y, [...x.shape.slice(0, -1), outDim]);
  });
}

/**
 * tf.fused.matMul with a bias, keeping for the backward only x and W: tfjs' fused op also saves
 * its output y (for an activation's gradient; there is none here), which holds one tensor of
 * every linear layer's output until the backward reaches it (in the bench ViT, the qkv, proj
 * and fc2 outputs: a fifth of the step's peak). Each input's gradient is computed only when the
 * walk asks for it: x's (a product the size of the forward's) not at all when x is data, such as
 * the patches of a patch embedding.
 */
function linearWithBias(x: tf.Tensor2D, weight: tf.Tensor, bias: tf.Tensor): tf.Tensor {
  return opWithInputGradients(
    { x, weight, bias },
    (save) => {
      save([x, weight]);
      return tf.fused.matMul({ a: x, b: weight as tf.Tensor2D, bias });
    },
    (dy, saved) => {
      const [xs, w] = saved as [tf.Tensor2D, tf.Tensor2D];
      const g = dy as tf.Tensor2D;
      return { x: () => tf.matMul(g, w, false, true), weight: () => tf.matMul(xs, g, true, false), bias: () => tf.sum(g, 0) };
    },
  );
}

/**
 * LayerNorm over the last axis (biased variance, as PyTorch), with a hand-written gradient.
 * Autodiff through the forward's mean/variance emits ~25 kernels per backward; the closed form
 *   dx = rstd * (g - mean(g) - x̂ * mean(g * x̂)),  g = dy * gamma
 * needs about twelve, and the forward keeps x̂ and rstd for it instead of recomputing them.
 */
export function layerNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps: number): tf.Tensor {
  // One native kernel each way on wasm with masksub's addon (backend/kernels/fused.ts).
  if (fusedKernelsActive()) return fusedLayerNorm(x, gamma, beta, eps);
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xt, g, b] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    const mean = tf.mean(xt, -1, true);
    const centered = tf.sub(xt, mean);
    const rstd = tf.rsqrt(tf.add(tf.mean(tf.square(centered), -1, true), eps));
    const normed = tf.mul(centered, rstd);
    save([normed, rstd, g]);
    return {
      value: tf.add(tf.mul(normed, g), b),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xhat, r, gam] = saved;
        const lastDim = xhat.shape[xhat.rank - 1] as number;
        // Parameter grads reduce over every row: one 2-D column sum each.
        const dy2 = tf.reshape(dy, [-1, lastDim]);
        const dGamma = tf.reshape(tf.sum(tf.mul(dy2, tf.reshape(xhat, [-1, lastDim])), 0), gam.shape);
        const dBeta = tf.reshape(tf.sum(dy2, 0), gam.shape);
        const gx = tf.mul(dy, gam);
        const inner = tf.sub(tf.sub(gx, tf.mean(gx, -1, true)), tf.mul(xhat, tf.mean(tf.mul(gx, xhat), -1, true)));
        return [tf.mul(inner, r), dGamma, dBeta];
      },
    };
  });
  return op(x, gamma, beta);
}

/** 1/√(2π): the standard normal density's constant. */
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/**
 * Batch norm with batch statistics over every axis but the last (channels last, e.g. NHWC):
 * y = (x - mean) / sqrt(var + eps) * gamma + beta with the batch's mean and biased variance,
 * returned too (for running statistics; they carry no gradient). On wasm with masksub's addon
 * it is one native kernel each way (backend/kernels/batch_norm.ts); otherwise tfjs ops, the
 * gradient by autodiff through the statistics.
 *
 * `epilogue` is what a ResNet does next, y = relu?(y + residual?): fused into the same native
 * kernels when the addon has them (no separate Add / Relu / ReLU-gradient passes over memory),
 * tfjs ops after the normalisation otherwise. Callers never ask which: this is the one place
 * that knows.
 */
export function batchNormTrain(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps: number, epilogue: BatchNormEpilogue = {}): BatchNormTrainResult {
  const { residual, relu = false } = epilogue;
  const fusable = residual === undefined || (residual.dtype === 'float32' && tf.util.arraysEqual(residual.shape, x.shape));
  if (batchNormKernelsActive() && x.dtype === 'float32') {
    if (residual === undefined && !relu) return nativeBatchNormTrain(x, gamma, beta, eps);
    if (fusable && batchNormEpilogueActive()) return nativeBatchNormTrainFused(x, gamma, beta, eps, epilogue);
    const r = nativeBatchNormTrain(x, gamma, beta, eps);
    return { ...r, y: applyEpilogue(r.y, epilogue) };
  }
  const axes = Array.from({ length: x.rank - 1 }, (_, i) => i);
  const mean = tf.mean(x, axes) as tf.Tensor1D;
  const centered = tf.sub(x, mean);
  const variance = tf.mean(tf.square(centered), axes) as tf.Tensor1D;
  const y = tf.add(tf.mul(tf.mul(centered, tf.rsqrt(tf.add(variance, eps))), gamma), beta);
  return { y: applyEpilogue(y, epilogue), mean, variance };
}

function applyEpilogue(y: tf.Tensor, { residual, relu = false }: BatchNormEpilogue): tf.Tensor {
  const added = residual === undefined ? y : tf.add(y, residual);
  return relu ? tf.relu(added) : added;
}

/**
 * Exact GELU: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), with a hand-written gradient
 * Phi(x) + x phi(x). Autodiff would differentiate erf through tf.exp, a scalar loop on wasm 4x
 * slower than the threaded XNNPACK sigmoid; so phi's exp(u), u = -x²/2 <= 0, is taken as
 * s / (1 - s) with s = sigmoid(u) (exact algebra; s keeps full relative precision for u << 0).
 */
export function geluExact(x: tf.Tensor): tf.Tensor {
  if (fusedKernelsActive()) return fusedGelu(x);
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const xt = args[0] as tf.Tensor;
    const save = args[1] as tf.GradSaveFunc;
    const cdf = tf.mul(tf.add(tf.erf(tf.mul(xt, Math.SQRT1_2)), 1), 0.5);
    save([xt, cdf]);
    return {
      value: tf.mul(xt, cdf),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, c] = saved;
        const s = tf.sigmoid(tf.mul(tf.square(xs), -0.5));
        const pdf = tf.mul(tf.div(s, tf.sub(1, s)), INV_SQRT_2PI);
        return tf.mul(dy, tf.add(c, tf.mul(xs, pdf)));
      },
    };
  });
  return op(x);
}

/** tanh-approximated GELU ("gelu_new", "gelu_pytorch_tanh"). */
export function geluTanh(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI));
    return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
  });
}

/** x * sigmoid(1.702 x) (CLIP's "quick_gelu"). */
export function quickGelu(x: tf.Tensor): tf.Tensor {
  // Composed, the forward is 3 kernels and autodiff's backward 6 more, each a pass over memory.
  if (fusedKernelsActive()) return fusedQuickGelu(x);
  return tf.tidy(() => tf.mul(x, tf.sigmoid(tf.mul(x, 1.702))));
}

export type Activation = 'gelu' | 'gelu_new' | 'gelu_pytorch_tanh' | 'quick_gelu' | 'relu';

export function activation(name: string): (x: tf.Tensor) => tf.Tensor {
  switch (name) {
    case 'gelu':
      return geluExact;
    case 'gelu_new':
    case 'gelu_pytorch_tanh':
      return geluTanh;
    case 'quick_gelu':
      return quickGelu;
    case 'relu':
      return (x) => tf.relu(x);
    default:
      throw new OptionError('hidden_act', `config.json: '${name}' is not supported (gelu, gelu_new, gelu_pytorch_tanh, quick_gelu, relu)`);
  }
}

/** Inverted dropout with a seeded mask; identity when rate is 0. */
export function dropout(x: tf.Tensor, rate: number, seed: number): tf.Tensor {
  if (rate <= 0) return x;
  if (rate >= 1) return tf.mul(x, 0); // PyTorch's p = 1: everything dropped (and no 1/0 scale)
  // Fused: no random tensor drawn in JS (~30 ns per element on wasm) and no mask kept for backward.
  if (fusedKernelsActive() && x.dtype === 'float32') return fusedDropout(x, rate, seed);
  return tf.tidy(() => {
    const keep = tf.cast(tf.greaterEqual(tf.randomUniform(x.shape, 0, 1, 'float32', seed), rate), 'float32');
    return tf.mul(x, tf.div(keep, 1 - rate));
  });
}

/**
 * How a drop-path rate spreads over a network's residual blocks:
 * - 'linear': block i of n drops with rate * i / (n - 1) (timm's `torch.linspace(0, rate, n)`,
 *   MAE, Swin, timm ResNet);
 * - 'uniform': every block drops with the rate (DeiT-III, augsub deit/models_v2.py
 *   `dpr = [drop_path_rate for i in range(depth)]`; the official PathSub sub pass).
 */
export const DROP_PATH_RULES = ['linear', 'uniform'] as const;
export type DropPathRule = (typeof DROP_PATH_RULES)[number];

/** The drop-path probability of block `index` of `depth` (flattened over stages) under `rule`. */
export function blockDropPathRate(rate: number, rule: DropPathRule, index: number, depth: number): number {
  if (rule === 'uniform') return rate;
  return depth > 1 ? (rate * index) / (depth - 1) : 0;
}

/**
 * The masksub config.json key `drop_path_rule` (absent: `dflt`, 'linear' as timm, HF and MAE;
 * DeiT-III checkpoints' recipe is 'uniform').
 */
export function parseDropPathRule(raw: Record<string, unknown>, source: string, dflt: DropPathRule = 'linear'): DropPathRule {
  const v = raw.drop_path_rule ?? dflt;
  if (typeof v !== 'string' || !(DROP_PATH_RULES as readonly string[]).includes(v)) {
    throw new FileFormatError(source, `'drop_path_rule' must be one of ${DROP_PATH_RULES.join(', ')}, got ${JSON.stringify(v)}`);
  }
  return v as DropPathRule;
}

/** Dropout rates of one transformer pass, by where they apply. */
export interface PassDropoutRates {
  /** On the attention probabilities. */
  attentionProbs: number;
  /** After the attention output projection (timm `proj_drop`). */
  attentionOutput: number;
  /** After the MLP activation (timm `Mlp.drop` after `act`; HF layouts have none). */
  mlpHidden: number;
  /** After the MLP's second linear (timm `Mlp.drop` after fc2). */
  mlpOutput: number;
  /** Everything else the config drops (embeddings, before the head): DropSub leaves it alone. */
  other: number;
}

/**
 * The dropout rates of a pass. Without `dropoutRate` they are the config's in training passes
 * (0 otherwise). DropSub's sub pass sets `dropoutRate` = r where the official code does
 * (augsub deit/models_v2.py forward_features_dropout: `attn.proj_drop.p` and `mlp.drop.p`, the
 * latter applied after the activation and after fc2 in timm's Mlp); the attention probabilities,
 * embeddings and head keep the config's rates.
 */
export function passDropoutRates(
  options: { training?: boolean; dropoutRate?: number },
  config: { hidden: number; attentionProbs: number; attentionOutput?: number; other?: number },
): PassDropoutRates {
  const t = options.training ?? false;
  const sub = options.dropoutRate;
  const cfg = (r: number) => (t ? r : 0);
  return {
    attentionProbs: cfg(config.attentionProbs),
    attentionOutput: sub ?? cfg(config.attentionOutput ?? config.hidden),
    mlpHidden: sub ?? 0,
    mlpOutput: sub ?? cfg(config.hidden),
    other: cfg(config.other ?? config.hidden),
  };
}

/** Stochastic depth: drops a residual branch per sample (x is [B, ...]); identity when rate is 0. */
export function dropPath(x: tf.Tensor, rate: number, seed: number): tf.Tensor {
  if (rate <= 0) return x;
  return tf.tidy(() => {
    const shape = [x.shape[0], ...new Array<number>(x.rank - 1).fill(1)];
    const keep = tf.cast(tf.greaterEqual(tf.randomUniform(shape, 0, 1, 'float32', seed), rate), 'float32');
    return tf.mul(x, tf.div(keep, 1 - rate));
  });
}

export interface AttentionWeights {
  q: [tf.Tensor, tf.Tensor?];
  k: [tf.Tensor, tf.Tensor?];
  v: [tf.Tensor, tf.Tensor?];
  out: [tf.Tensor, tf.Tensor?];
}

/**
 * The tokens a caller reads from a last layer: the first n of each sequence, or (`at`) one
 * position per sequence, such as the EOS token a CLIP text tower pools at.
 */
export type TokenRows = number | { at: Int32Array };

/** How many tokens per sequence a selection keeps (T when it is undefined). */
function selectedCount(rows: TokenRows | undefined, t: number): number {
  return rows === undefined ? t : typeof rows === 'number' ? rows : 1;
}

/**
 * The first n tokens of x [B, T, D] (x itself when n is undefined): the rows a last layer keeps
 * when its caller reads only the leading tokens (see multiHeadAttention's `queries`).
 */
export function leadingTokens(x: tf.Tensor, n: number | undefined): tf.Tensor {
  const [b, t, d] = x.shape as [number, number, number];
  return n === undefined || n === t ? x : tf.slice(x, [0, 0, 0], [b, n, d]);
}

/**
 * The rows a selection keeps: of x [B, T, D] the leading n ({@link leadingTokens}); of x [B, T, ...]
 * one per sequence at `at[b]`, [B, 1, ...]; x itself when `rows` is undefined. Positions outside [0, T)
 * or a count other than B are refused, naming `queries`.
 */
export function selectTokens(x: tf.Tensor, rows: TokenRows | undefined): tf.Tensor {
  if (rows === undefined || typeof rows === 'number') return leadingTokens(x, rows);
  const [b, t] = x.shape;
  const at = rows.at;
  if (at.length !== b) throw new OptionError('queries', `one position per sequence: ${at.length} positions for a batch of ${b}`);
  const flat = new Int32Array(b);
  for (let i = 0; i < b; i++) {
    if (!(Number.isInteger(at[i]) && at[i] >= 0 && at[i] < t)) throw new OptionError('queries', `position ${at[i]} of sequence ${i} is outside [0, ${t})`);
    flat[i] = i * t + at[i];
  }
  return tf.tidy(() => {
    const inner = x.shape.slice(2);
    // A flat gather (b * T + position): its gradient is a plain UnsortedSegmentSum on every backend.
    const picked = tf.gather(tf.reshape(x, [b * t, ...inner]), tf.tensor1d(flat, 'int32'));
    return tf.reshape(picked, [b, 1, ...inner]);
  });
}

/**
 * Multi-head self-attention on x [B, T, D]. `bias` (optional) is added to the scores
 * [B or 1, heads or 1, T or 1, T] (padding masks, relative positions). Attention dropout on the
 * probabilities when `dropoutRate` > 0.
 *
 * With `queries` only some tokens attend (keys and values come from all T): the first n, or one
 * position per sequence (`{ at }`), and the result is [B, n, D] (n = 1 for `at`). They are the
 * rows a final layer computes when its caller reads only those tokens (a CLS pool, a text tower's
 * EOS pool), the same values those rows have in the full product at a fraction of the work (in
 * the last of 6 ViT blocks, every product but K and V shrinks from 65 rows to 1).
 */
export function multiHeadAttention(
  x: tf.Tensor,
  w: AttentionWeights,
  heads: number,
  opts: { bias?: tf.Tensor; dropoutRate?: number; seed?: number; scale?: number; queries?: TokenRows } = {},
): tf.Tensor {
  return tf.tidy(() => {
    const [b, t, d] = x.shape as [number, number, number];
    const n = selectedCount(opts.queries, t);
    if (!Number.isInteger(n) || n < 1 || n > t) throw new OptionError('queries', `multiHeadAttention: queries must be an integer in [1, ${t}], got ${n}`);
    const dh = d / heads;
    const split = (y: tf.Tensor, rows: number) => tf.transpose(tf.reshape(y, [b, rows, heads, dh]), [0, 2, 1, 3]);
    const q = split(linear(selectTokens(x, opts.queries), w.q[0], w.q[1]), n);
    const k = split(linear(x, w.k[0], w.k[1]), t);
    const v = split(linear(x, w.v[0], w.v[1]), t);
    let bias = opts.bias;
    // A per-query bias (causal, relative positions) keeps the rows of the queries that attend.
    const selected = typeof opts.queries === 'number' ? opts.queries < t : opts.queries !== undefined;
    if (bias && selected && bias.shape[bias.rank - 2] === t) bias = queryBiasRows(bias, opts.queries!, b);
    let probs = scaledSoftmax(tf.matMul(q, k, false, true), opts.scale ?? 1 / Math.sqrt(dh), bias);
    if (opts.dropoutRate) probs = dropout(probs, opts.dropoutRate, opts.seed ?? 0);
    const ctx = tf.reshape(tf.transpose(tf.matMul(probs, v), [0, 2, 1, 3]), [b, n, d]);
    return linear(ctx, w.out[0], w.out[1]);
  });
}

/** A per-query bias [B or 1, H or 1, T, T] cut to the selected query rows [., ., n, T]. */
function queryBiasRows(bias: tf.Tensor, rows: TokenRows, batch: number): tf.Tensor {
  const [bb, hh, t, tk] = bias.shape as [number, number, number, number];
  if (typeof rows === 'number') return tf.slice(bias, [0, 0, 0, 0], [bb, hh, rows, tk]);
  // Positions differ per sequence: the bias needs its batch axis, then the rows as tokens.
  const perSequence = bb === batch ? bias : tf.broadcastTo(bias, [batch, hh, t, tk]);
  const picked = selectTokens(tf.transpose(perSequence, [0, 2, 1, 3]), rows);
  return tf.transpose(picked, [0, 2, 1, 3]);
}

/**
 * softmax(scale * scores + bias) over the last axis. Without a bias the scale rides in the fused
 * softmax kernel where one is active (a pass over the [B, heads, T, T] scores saved each way).
 */
export function scaledSoftmax(scores: tf.Tensor, scale: number, bias?: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const fused = fusedKernelsActive();
    if (bias) {
      const biased = tf.add(tf.mul(scores, scale), bias);
      return fused ? fusedScaledSoftmax(biased, 1) : tf.softmax(biased);
    }
    return fused ? fusedScaledSoftmax(scores, scale) : tf.softmax(tf.mul(scores, scale));
  });
}

/**
 * table[ids] for a vocabulary table [V, D] and flat int32 ids [N], with the table's gradient as
 * a scatter-add of the N rows (tf.scatterND sums repeated ids). tf.gather's own gradient is an
 * UnsortedSegmentSum with V segments, which tfjs' cpu backend computes segment by segment: 11 s
 * per step for CLIP's 49,408-token vocabulary against 10 ms this way.
 */
export function embedding(table: tf.Tensor, ids: tf.Tensor): tf.Tensor {
  if (ids.rank !== 1 || ids.dtype !== 'int32') throw new TypeError(`embedding: ids must be a 1-D int32 tensor, got rank ${ids.rank} ${ids.dtype}`);
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [t, i] = args as tf.Tensor[];
    const save = args[2] as tf.GradSaveFunc;
    save([i]);
    return {
      value: tf.gather(t, i),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const idx = saved[0];
        // ids are integers: they get no gradient (zeros keep customGrad's arity).
        return [tf.scatterND(tf.reshape(idx, [idx.shape[0] as number, 1]), dy, t.shape), tf.zerosLike(idx)];
      },
    };
  });
  return op(table, ids);
}

/**
 * NCHW images [B, C, H, W] (H and W multiples of `patchSize`) as patch vectors
 * [B, (H/p)(W/p), C p p], each in (C, ph, pw) order: a p x p stride-p conv is then a matmul with
 * its weight flattened the same way (the 'patch-linear' layout). Two rank-4 transposes rather
 * than one rank-6: wasm's high-rank transpose is ~50x slower per element.
 */
export function patchify(x: tf.Tensor, patchSize: number): tf.Tensor {
  const [b, c, h, w] = x.shape as [number, number, number, number];
  const p = patchSize;
  if (x.rank !== 4 || h % p !== 0 || w % p !== 0) throw new OptionError('pixel_values', `patchify needs [B, C, H, W] with H and W multiples of ${p}, got [${x.shape}]`);
  const gh = h / p;
  const gw = w / p;
  return tf.tidy(() => {
    const rows = tf.transpose(tf.reshape(x, [b * c * gh, p, gw, p]), [0, 2, 1, 3]); // [B*C*gh, gw, p, p]
    const grouped = tf.reshape(rows, [b, c, gh * gw, p * p]);
    return tf.reshape(tf.transpose(grouped, [0, 2, 1, 3]), [b, gh * gw, c * p * p]);
  });
}

/** Per-sample patch indices keepIndices [B, K] as flat row indices b * N + idx [B K] (validated). */
export function flatKeepIndices(keepIndices: tf.Tensor, batch: number, numPatches: number): tf.Tensor1D {
  if (keepIndices.rank !== 2 || keepIndices.shape[0] !== batch) {
    throw new OptionError('keepIndices', `expected [${batch}, K] patch indices, got [${keepIndices.shape}]`);
  }
  const k = keepIndices.shape[1] as number;
  return tf.tidy(() => {
    const offsets = tf.mul(tf.range(0, batch, 1, 'int32').reshape([batch, 1]), tf.scalar(numPatches, 'int32'));
    return tf.reshape(tf.add(tf.cast(keepIndices, 'int32'), offsets), [batch * k]) as tf.Tensor1D;
  });
}

/**
 * MAE token removal on embedded tokens h [B, P+N, D] (positions already added): the P prefix
 * tokens (CLS, distillation) stay in front, K patch tokens per sample are gathered. A flat gather
 * keeps the gradient a plain UnsortedSegmentSum, which every backend has (masksub registers it
 * for wasm).
 */
export function removeTokens(h: tf.Tensor, keepIndices: tf.Tensor, prefixCount: number): tf.Tensor {
  const [b, t, d] = h.shape as [number, number, number];
  const n = t - prefixCount;
  const k = keepIndices.shape[1] as number;
  return tf.tidy(() => {
    const flat = flatKeepIndices(keepIndices, b, n);
    const prefix = tf.slice(h, [0, 0, 0], [b, prefixCount, d]);
    const patches = tf.reshape(tf.slice(h, [0, prefixCount, 0], [b, n, d]), [b * n, d]);
    return tf.concat([prefix, tf.reshape(tf.gather(patches, flat), [b, k, d])], 1);
  });
}

/**
 * MAE token removal before the patch embedding, for a sub pass that costs what its tokens cost:
 * embedding and positions are per token, so embedding the K kept raw patches [B, N, F] and adding
 * their positions (patchPositions [N, D]) equals removing tokens after "embed, add positions".
 * Returns the kept patch tokens [B, K, D].
 */
export function embedKeptPatches(
  rawPatches: tf.Tensor,
  keepIndices: tf.Tensor,
  embed: (patches: tf.Tensor) => tf.Tensor,
  patchPositions: tf.Tensor,
): tf.Tensor {
  const [b, n] = rawPatches.shape as [number, number, number];
  const k = keepIndices.shape[1] as number;
  return tf.tidy(() => {
    const flat = flatKeepIndices(keepIndices, b, n);
    const kept = embed(tf.gather(tf.reshape(rawPatches, [b * n, -1]), flat));
    const d = kept.shape[kept.rank - 1] as number;
    const positions = tf.gather(patchPositions, tf.reshape(tf.cast(keepIndices, 'int32'), [b * k]));
    return tf.reshape(tf.add(kept, positions), [b, k, d]);
  });
}

/** A per-layer seed from a pass seed, so layers draw different noise. */
export function layerSeed(seed: number, layer: number, slot: number): number {
  return (seed * 1009 + layer * 31 + slot) >>> 0;
}
