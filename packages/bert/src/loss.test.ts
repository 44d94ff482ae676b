/** problem_type -> loss, as BertForSequenceClassification picks it, and the regression relaxed loss. */
import { describe, expect, it } from 'vitest';
import { tf } from '@masksub/core';
import { bertRelaxedLoss, parseBertConfig, resolveProblemType } from './index.js';

describe('BERT loss selection', () => {
  it('follows HF: explicit problem_type, else regression for one label, else by label dtype', () => {
    expect(resolveProblemType(parseBertConfig({ model_type: 'bert', num_labels: 1 }))).toBe('regression');
    expect(resolveProblemType(parseBertConfig({ model_type: 'bert', num_labels: 3 }))).toBe('single_label_classification');
    expect(resolveProblemType(parseBertConfig({ model_type: 'bert', num_labels: 3 }), false)).toBe('multi_label_classification');
    expect(resolveProblemType(parseBertConfig({ model_type: 'bert', num_labels: 3, problem_type: 'regression' }))).toBe('regression');
    expect(() => parseBertConfig({ model_type: 'bert', problem_type: 'ranking' })).toThrow(/problem_type/);
    expect(bertRelaxedLoss({ numLabels: 4, problemType: undefined }).kind).toBe('ce');
    expect(bertRelaxedLoss({ numLabels: 4, problemType: 'multi_label_classification' }).kind).toBe('bce');
    expect(() => bertRelaxedLoss({ numLabels: 1, problemType: undefined }, { labelSmoothing: 0.1 })).toThrow(/labelSmoothing/);
  });

  it('regression: main = MSE to the scores, sub = MSE to the detached main prediction', () => {
    const loss = bertRelaxedLoss({ numLabels: 1, problemType: undefined });
    const main = tf.tensor2d([[1], [2], [4]]);
    const sub = tf.tensor2d([[0], [2], [5]]);
    const scores = tf.tensor1d([1.5, 2, 3]);
    expect(loss.main(main, { labels: scores }).dataSync()[0]).toBeCloseTo((0.25 + 0 + 1) / 3, 6);
    const teacher = loss.teacher(main);
    expect(loss.sub(sub, teacher).dataSync()[0]).toBeCloseTo((1 + 0 + 1) / 3, 6);
    // No gradient reaches the main output through the teacher.
    const g = tf.grad((m: tf.Tensor) => loss.sub(sub, loss.teacher(m)))(main);
    expect(Array.from(g.dataSync())).toEqual([0, 0, 0]);
    expect(() => loss.main(main, { labels: tf.tensor1d([1, 2]) })).toThrow(/targets/);
    tf.dispose([main, sub, scores, teacher, g]);
  });
});
