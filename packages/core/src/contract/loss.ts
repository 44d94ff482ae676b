/**
 * The relaxed loss: the main model takes the recipe's loss (CE or BCE, hard, smoothed or soft
 * targets); the sub-model is pulled toward the main model's *detached* prediction (softmax for CE
 * recipes, sigmoid for BCE recipes). For contrastive models (CLIP) the same idea applies to the
 * image-text similarity matrix, row- and column-wise.
 */
import { OptionError } from '../errors.js';
import { tf } from '../tf.js';

/** Recipe losses of classifiers (one list for schema, CLI and library). */
export const LOSS_KINDS = ['ce', 'bce'] as const;
export type LossKind = (typeof LOSS_KINDS)[number];

/**
 * Which targets a BCE target threshold binarises: 'all' as timm's BinaryCrossEntropy(target_threshold)
 * does when it is the loss function of both passes (RSB, resnet_rsb/train.py:503,621), or 'main'
 * as DeiT-III's `targets.gt(0.0)` on the mixed main target before either pass (deit/engine.py:43-44;
 * its sub target sigmoid(main) stays soft).
 */
export const BCE_THRESHOLD_SCOPES = ['all', 'main'] as const;
export type BceThresholdScope = (typeof BCE_THRESHOLD_SCOPES)[number];

/** Options of the recipe losses. */
export interface LossOptions {
  labelSmoothing?: number;
  /** BCE only: targets > t become 1, the rest 0 (timm `target_threshold`); unset = soft targets. */
  targetThreshold?: number;
  /** Where the threshold applies; 'all' by default (timm). */
  thresholdScope?: BceThresholdScope;
}

/** Targets of the main loss: class indices, or soft targets [B, C] (mixup/cutmix/smoothing). */
export type Targets = { labels: tf.Tensor1D } | { soft: tf.Tensor2D };

/**
 * Identity whose gradient is zero: tfjs has no stop_gradient op. The teacher signal is built from
 * it, so even if a caller computes the teacher inside a gradient tape, no gradient reaches the
 * main pass through the sub loss.
 */
const stopGradientOp = tf.customGrad((...args: unknown[]) => ({
  value: tf.clone(args[0] as tf.Tensor),
  gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
}));
export function stopGradient(x: tf.Tensor): tf.Tensor {
  return stopGradientOp(x);
}

/** log(softmax(x)) along the last axis, written with ops every backend has. */
export function logSoftmax(logits: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    // The shift cancels in the gradient (softmax is shift invariant), so no stop-gradient is needed.
    const max = tf.max(logits, -1, true);
    const shifted = tf.sub(logits, max);
    return tf.sub(shifted, tf.log(tf.sum(tf.exp(shifted), -1, true)));
  });
}

/** mean_i( -sum_c p_ic log_softmax(x)_ic ). */
export function softCrossEntropy(logits: tf.Tensor, probs: tf.Tensor): tf.Scalar {
  return tf.tidy(() => tf.mean(tf.neg(tf.sum(tf.mul(probs, logSoftmax(logits)), -1))) as tf.Scalar);
}

/** BCEWithLogits, mean over every element: max(x,0) - x t + log(1 + exp(-|x|)). */
export function bceWithLogits(logits: tf.Tensor, targets: tf.Tensor): tf.Scalar {
  return tf.tidy(() => {
    const elem = tf.add(tf.sub(tf.relu(logits), tf.mul(logits, targets)), tf.log1p(tf.exp(tf.neg(tf.abs(logits)))));
    return tf.mean(elem) as tf.Scalar;
  });
}

/** Dense targets [B, C] from labels (one-hot, smoothed as in timm: 1-eps+eps/C and eps/C) or soft targets. */
export function denseTargets(targets: Targets, numClasses: number, labelSmoothing = 0): tf.Tensor2D {
  if (labelSmoothing < 0 || labelSmoothing >= 1) throw new OptionError('labelSmoothing', `must be in [0, 1), got ${labelSmoothing}`);
  return tf.tidy(() => {
    if ('soft' in targets) {
      if (targets.soft.shape[1] !== numClasses) {
        throw new OptionError('targets', `soft targets have ${targets.soft.shape[1]} classes, the model ${numClasses}`);
      }
      return targets.soft;
    }
    const oneHot = tf.oneHot(tf.cast(targets.labels, 'int32'), numClasses).toFloat() as tf.Tensor2D;
    if (labelSmoothing === 0) return oneHot;
    return tf.add(tf.mul(oneHot, 1 - labelSmoothing), labelSmoothing / numClasses) as tf.Tensor2D;
  });
}

export interface RelaxedLoss {
  /** Which family (ce / bce / contrastive as built here; 'mse' for regression heads). */
  readonly kind: LossKind | 'contrastive' | 'mse';
  /** The recipe's loss on the main model's logits. */
  main(logits: tf.Tensor, targets: Targets): tf.Scalar;
  /** The teacher signal from the main logits (call on detached logits). */
  teacher(mainLogits: tf.Tensor): tf.Tensor;
  /** The sub-model's loss toward the teacher signal. */
  sub(subLogits: tf.Tensor, teacher: tf.Tensor): tf.Scalar;
}

function refuseThreshold(opts: LossOptions, loss: string): void {
  if (opts.targetThreshold !== undefined) throw new OptionError('targetThreshold', `binarises BCE targets; the ${loss} loss has none to binarise (use the bce loss)`);
}

/** 1 where x > t, else 0 (torch `x.gt(t).to(x.dtype)`). */
function binarise(x: tf.Tensor, threshold: number): tf.Tensor {
  return tf.tidy(() => tf.cast(tf.greater(x, threshold), 'float32'));
}

/** CE recipes: main CE (label smoothing, soft targets); sub soft-CE toward softmax(stopgrad(main)). */
export function crossEntropyLoss(opts: LossOptions = {}): RelaxedLoss {
  refuseThreshold(opts, 'ce');
  const eps = opts.labelSmoothing ?? 0;
  return {
    kind: 'ce',
    main: (logits, targets) => tf.tidy(() => softCrossEntropy(logits, denseTargets(targets, logits.shape[logits.rank - 1], eps))),
    teacher: (mainLogits) => tf.tidy(() => tf.softmax(stopGradient(mainLogits))),
    sub: (subLogits, teacher) => softCrossEntropy(subLogits, teacher),
  };
}

/**
 * BCE recipes (DeiT-III, RSB): main BCE on (smoothed) one-hot or soft targets; sub BCE toward
 * sigmoid(stopgrad(main)). With `targetThreshold` t the main target becomes (target > t), and
 * with scope 'all' (default) the sub target too: (sigmoid(main) > t).
 */
export function binaryCrossEntropyLoss(opts: LossOptions = {}): RelaxedLoss {
  const eps = opts.labelSmoothing ?? 0;
  const t = opts.targetThreshold;
  const scope = opts.thresholdScope ?? 'all';
  if (t !== undefined && !(t >= 0 && t < 1)) throw new OptionError('targetThreshold', `must be in [0, 1), got ${t}`);
  if (!(BCE_THRESHOLD_SCOPES as readonly string[]).includes(scope)) throw new OptionError('thresholdScope', `'${scope}' (${BCE_THRESHOLD_SCOPES.join(', ')})`);
  return {
    kind: 'bce',
    main: (logits, targets) =>
      tf.tidy(() => {
        const dense = denseTargets(targets, logits.shape[logits.rank - 1], eps);
        return bceWithLogits(logits, t === undefined ? dense : binarise(dense, t));
      }),
    teacher: (mainLogits) =>
      tf.tidy(() => {
        const p = tf.sigmoid(stopGradient(mainLogits));
        return t !== undefined && scope === 'all' ? binarise(p, t) : p;
      }),
    sub: (subLogits, teacher) => bceWithLogits(subLogits, teacher),
  };
}

/**
 * The contrastive main loss's targets for a [B, B] similarity matrix, row-wise (image -> texts)
 * and column-wise (text -> images). `labels` are caption groups: pair i is positive with every
 * pair j of its group, and the target of row i spreads uniformly over them. Distinct groups
 * (`arange(B)`, CLIP's setting) give the identity, i.e. CE(S, arange); duplicate captions in a
 * batch (template captions of one class) share their row's mass instead of asking the model to
 * tell identical texts apart. `soft` targets [B, B] are the row targets; the column targets are
 * their transpose, renormalised per text.
 */
export function contrastiveTargets(targets: Targets, n: number): { rows: tf.Tensor2D; cols: tf.Tensor2D } {
  return tf.tidy(() => {
    if ('soft' in targets) {
      const [r, c] = targets.soft.shape;
      if (r !== n || c !== n) throw new OptionError('targets', `contrastive soft targets must be [${n}, ${n}] (images x texts), got [${targets.soft.shape}]`);
      const t = tf.transpose(targets.soft);
      return { rows: tf.clone(targets.soft), cols: tf.div(t, tf.maximum(tf.sum(t, 1, true), 1e-12)) as tf.Tensor2D };
    }
    if (targets.labels.shape[0] !== n) throw new OptionError('targets', `${targets.labels.shape[0]} caption groups for a ${n} x ${n} similarity matrix`);
    const g = tf.cast(targets.labels, 'int32');
    const same = tf.cast(tf.equal(tf.expandDims(g, 1), tf.expandDims(g, 0)), 'float32');
    // Symmetric with rows summing to 1 and (by symmetry of the relation) columns too.
    const rows = tf.div(same, tf.sum(same, 1, true)) as tf.Tensor2D;
    return { rows, cols: tf.clone(rows) };
  });
}

/**
 * Contrastive form for image-text models. "Logits" here is the [B, B] similarity matrix S
 * (images x texts). Main: (CE(S, T) + CE(S^T, T')) / 2 with the targets of `contrastiveTargets`
 * (T = identity for distinct pairs, CLIP's loss). Sub: the masked-image matrix mimics softmax of
 * the detached main matrix, row-wise and column-wise. The teacher packs both directions as
 * [2, B, B].
 */
export function contrastiveLoss(): RelaxedLoss {
  return {
    kind: 'contrastive',
    main: (s, targets) =>
      tf.tidy(() => {
        const { rows, cols } = contrastiveTargets(targets, s.shape[0]);
        return tf.div(tf.add(softCrossEntropy(s, rows), softCrossEntropy(tf.transpose(s), cols)), 2) as tf.Scalar;
      }),
    teacher: (s) =>
      tf.tidy(() => {
        const d = stopGradient(s);
        return tf.stack([tf.softmax(d), tf.softmax(tf.transpose(d))]);
      }),
    sub: (sSub, teacher) =>
      tf.tidy(() => {
        const [rowT, colT] = tf.unstack(teacher);
        return tf.div(tf.add(softCrossEntropy(sSub, rowT), softCrossEntropy(tf.transpose(sSub), colT)), 2) as tf.Scalar;
      }),
  };
}

export function relaxedLoss(kind: LossKind | 'contrastive', opts: LossOptions = {}): RelaxedLoss {
  switch (kind) {
    case 'ce':
      return crossEntropyLoss(opts);
    case 'bce':
      return binaryCrossEntropyLoss(opts);
    case 'contrastive':
      refuseThreshold(opts, 'contrastive');
      return contrastiveLoss();
    default:
      throw new OptionError('loss', `unknown loss '${String(kind)}' (ce, bce, contrastive)`);
  }
}
