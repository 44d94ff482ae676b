/**
 * Parity with PyTorch + transformers on the hf-tiny ResNet fixture (bottleneck layers, shortcut
 * conv, max-pool): logits, both MaskSub loss halves and every parameter gradient (CE recipe),
 * with the fixture's zero-fill pixel mask replayed. The reference ran batch norm in eval mode in
 * both passes, so the model is built with bn_mode 'eval' (training defaults to 'train').
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tf, toFloat32, withMaskSub, type DropMask, type HostTensor, type TensorMap } from '@masksub/core';
import { describeShared } from '../../core/src/testing/shared.js';
import {
  disposeStep,
  expectGradientsMatch,
  expectStepMatches,
  loadParityFixture,
  maxAbsDiff,
  recipeKeys,
  referenceEntry,
  referenceTensor,
} from '../../core/src/testing/parity.js';
import { ResNetModel } from './index.js';

for (const backend of ['cpu', 'wasm'] as const)
  describeShared('fixtures/hf-tiny/resnet', `ResNet parity with PyTorch (hf-tiny) on ${backend}`, () => {
    let model: ResNetModel;
    let ref: TensorMap;
    let pixels: tf.Tensor4D;
    let labels: tf.Tensor1D;
    let mask: DropMask;

    const get = (name: string): HostTensor => referenceEntry(ref, name);

    beforeAll(async () => {
      const isCounter = (n: string) => n.endsWith('.num_batches_tracked');
      const fixture = await loadParityFixture('resnet', backend, (config) => new ResNetModel(config, { bnMode: 'eval' }), isCounter);
      ({ model, ref } = fixture);
      expect(model.bnMode).toBe('eval');
      expect(fixture.created).toEqual([]);
      pixels = referenceTensor<tf.Rank.R4>(ref, 'input.pixel_values');
      labels = referenceTensor<tf.Rank.R1>(ref, 'input.labels', 'int32');
      const pm = get('input.pixel_mask');
      mask = { kind: 'zero-fill', batch: pm.shape[0], height: pm.shape[2], width: pm.shape[3], pixelMask: toFloat32(pm) };
    });

    afterAll(() => {
      model?.dispose();
      pixels?.dispose();
      labels?.dispose();
    });

    it('main logits match within 1e-4 (eval mode)', () => {
      const logits = model.forward({ pixel_values: pixels });
      expect(maxAbsDiff(logits.dataSync(), toFloat32(get('ce.main_logits')))).toBeLessThan(1e-4);
      logits.dispose();
    });

    it('ce: sub logits, loss halves and every gradient match; running statistics untouched', () => {
      const runningBefore = model.params.get('resnet.embedder.embedder.normalization.running_mean').dataSync().slice();
      const trainer = withMaskSub(model, { loss: 'ce' });
      const before = tf.memory().numTensors;
      const r = trainer.computeGradients({ inputs: { pixel_values: pixels }, targets: { labels } }, 0, mask);
      expectStepMatches(r, ref, recipeKeys('ce'));
      const { names } = expectGradientsMatch(model, ref, 'ce.grad.', r.grads, { relTol: 1e-3 });
      expect(names.length).toBe(26);
      // Every trainable parameter has a reference gradient, and running statistics get none.
      expect([...r.grads.keys()].sort()).toEqual([...names].sort());
      expect(Array.from(model.params.get('resnet.embedder.embedder.normalization.running_mean').dataSync())).toEqual(Array.from(runningBefore));
      disposeStep(r);
      expect(tf.memory().numTensors).toBe(before);
    });

    it('the zero-fill operator applies the fixture mask as pixel_values * pixel_mask', () => {
      const view = model.dropOperator('zero-fill').apply({ pixel_values: pixels }, mask);
      const expected = tf.tidy(() => tf.mul(pixels, tf.tensor4d(mask.kind === 'zero-fill' ? mask.pixelMask : new Float32Array(), [4, 1, 32, 32])));
      expect(maxAbsDiff(view.inputs.pixel_values.dataSync(), expected.dataSync())).toBe(0);
      tf.dispose([view.inputs.pixel_values, expected]);
    });
  });

describe('ResNet input validation', () => {
  it('names the input and the expected shape', () => {
    const m = new ResNetModel({ model_type: 'resnet', embedding_size: 8, hidden_sizes: [8], depths: [1], layer_type: 'basic', num_labels: 3 });
    expect(() => m.forward({ pixel_values: tf.zeros([2, 1, 16, 16]) })).toThrow(/pixel_values.*\[B, 3, H, W\]/);
    expect(() => m.forward({})).toThrow(/pixel_values/);
    m.dispose();
  });
});
