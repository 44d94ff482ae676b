/**
 * Loss selection by HF `problem_type`, as BertForSequenceClassification picks it: regression
 * (num_labels 1, e.g. STS-B) -> MSE; single-label -> cross-entropy; multi-label -> BCE. For
 * MaskSub the sub-model is pulled toward the main model's detached output with the matching
 * relaxed loss: soft CE toward softmax, BCE toward sigmoid, and for regression MSE toward the
 * main prediction itself.
 */
import { OptionError, binaryCrossEntropyLoss, crossEntropyLoss, stopGradient, tf, type RelaxedLoss, type Targets } from '@masksub/core';
import type { BertConfig, ProblemType } from './config.js';

/** mean((x - y)^2) over every element. */
function meanSquaredError(x: tf.Tensor, y: tf.Tensor): tf.Scalar {
  return tf.tidy(() => tf.mean(tf.square(tf.sub(x, y))) as tf.Scalar);
}

/** Regression targets as [B, C] float, matching the logits (HF squeezes both when C = 1). */
function regressionTargets(targets: Targets, logits: tf.Tensor): tf.Tensor {
  const t = 'soft' in targets ? targets.soft : targets.labels;
  const want = logits.shape;
  if (t.size !== logits.size) throw new OptionError('targets', `regression targets have ${t.size} values for logits [${want}]`);
  return tf.reshape(tf.cast(t, 'float32'), want);
}

/** MSE for regression heads; the sub pass regresses onto stopgrad(main). */
export function meanSquaredErrorLoss(): RelaxedLoss {
  return {
    kind: 'mse',
    main: (logits, targets) => tf.tidy(() => meanSquaredError(logits, regressionTargets(targets, logits))),
    teacher: (mainLogits) => tf.tidy(() => stopGradient(mainLogits)),
    sub: (subLogits, teacher) => meanSquaredError(subLogits, teacher),
  };
}

/**
 * The problem type HF would use: the config's `problem_type`, else regression for one label,
 * else single-label when labels are class indices (int) and multi-label when they are float.
 */
export function resolveProblemType(cfg: Pick<BertConfig, 'problemType' | 'numLabels'>, labelsAreIntegers = true): ProblemType {
  if (cfg.problemType) return cfg.problemType;
  if (cfg.numLabels === 1) return 'regression';
  return labelsAreIntegers ? 'single_label_classification' : 'multi_label_classification';
}

/** The MaskSub relaxed loss for a BERT config, to pass as `withMaskSub(model, { loss })`. */
export function bertRelaxedLoss(cfg: Pick<BertConfig, 'problemType' | 'numLabels'>, opts: { labelSmoothing?: number; labelsAreIntegers?: boolean } = {}): RelaxedLoss {
  switch (resolveProblemType(cfg, opts.labelsAreIntegers ?? true)) {
    case 'regression':
      if (opts.labelSmoothing) throw new OptionError('labelSmoothing', 'has no meaning for a regression head (problem_type regression)');
      return meanSquaredErrorLoss();
    case 'multi_label_classification':
      return binaryCrossEntropyLoss(opts);
    case 'single_label_classification':
      return crossEntropyLoss(opts);
  }
}
