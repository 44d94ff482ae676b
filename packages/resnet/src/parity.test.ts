/**
 * Parity with PyTorch + transformers on the hf-tiny ResNet fixture (bottleneck layers, shortcut
 * conv, max-pool): logits, both MaskSub loss halves and every parameter gradient (CE recipe),
 * with the fixture's zero-fill pixel mask replayed. The reference ran batch norm in eval mode in
 * both passes, which is the model's default bn_mode.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend, readSafetensors, tf, toFloat32, withMaskSub, type DropMask, type HostTensor, type TensorMap } from '@masksub/core';
import { describeShared, fixturePath } from '../../core/src/testing/shared.js';
import { ResNetModel } from './index.js';

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function maxAbsOf(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

for (const backend of ['cpu', 'wasm'] as const)
  describeShared('fixtures/hf-tiny/resnet', `ResNet parity with PyTorch (hf-tiny) on ${backend}`, () => {
    let model: ResNetModel;
    let ref: TensorMap;
    let pixels: tf.Tensor4D;
    let labels: tf.Tensor1D;
    let mask: DropMask;

    const get = (name: string): HostTensor => {
      const t = ref.get(name);
      if (!t) throw new Error(`reference lacks ${name}`);
      return t;
    };

    beforeAll(async () => {
      await initBackend({ prefer: backend, log: () => {} });
      expect(tf.getBackend()).toBe(backend);
      const config = JSON.parse(readFileSync(fixturePath('resnet', 'config.json'), 'utf8'));
      model = new ResNetModel(config);
      expect(model.bnMode).toBe('eval');
      const isCounter = (n: string) => n.endsWith('.num_batches_tracked');
      const { created } = model.params.load(readSafetensors(fixturePath('resnet', 'model.safetensors')), 'resnet/model.safetensors', isCounter);
      expect(created).toEqual([]);
      ref = readSafetensors(fixturePath('resnet', 'reference.safetensors'));
      const px = get('input.pixel_values');
      pixels = tf.tensor4d(toFloat32(px), px.shape as [number, number, number, number]);
      labels = tf.tensor1d(toFloat32(get('input.labels')), 'int32');
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
      expect(maxAbs(logits.dataSync(), toFloat32(get('ce.main_logits')))).toBeLessThan(1e-4);
      logits.dispose();
    });

    it('ce: sub logits, loss halves and every gradient match; running statistics untouched', () => {
      const runningBefore = model.params.get('resnet.embedder.embedder.normalization.running_mean').dataSync().slice();
      const trainer = withMaskSub(model, { loss: 'ce' });
      const before = tf.memory().numTensors;
      const r = trainer.computeGradients({ inputs: { pixel_values: pixels }, targets: { labels } }, 0, mask);
      expect(maxAbs(r.mainLogits.dataSync(), toFloat32(get('ce.main_logits')))).toBeLessThan(1e-4);
      expect(maxAbs(r.subLogits!.dataSync(), toFloat32(get('ce.sub_logits')))).toBeLessThan(1e-4);
      expect(Math.abs(r.weights.main * r.lossMain - toFloat32(get('ce.loss_main'))[0])).toBeLessThan(1e-5);
      expect(Math.abs(r.weights.sub * r.lossSub - toFloat32(get('ce.loss_sub'))[0])).toBeLessThan(1e-5);
      const refGrads = [...ref.keys()].filter((k) => k.startsWith('ce.grad.'));
      expect(refGrads.length).toBe(26);
      // Every trainable parameter has a reference gradient, and running statistics get none.
      expect([...r.grads.keys()].sort()).toEqual(refGrads.map((k) => k.slice('ce.grad.'.length)).sort());
      for (const key of refGrads) {
        const name = key.slice('ce.grad.'.length);
        const g = r.grads.get(name);
        expect(g, `gradient of ${name}`).toBeDefined();
        const ours = model.params.gradientToCheckpoint(name, g!);
        const theirs = toFloat32(get(key));
        expect(ours.shape).toEqual(get(key).shape);
        const rel = maxAbs(ours.data as Float32Array, theirs) / Math.max(maxAbsOf(theirs), 1e-5);
        expect(rel, `gradient of ${name}`).toBeLessThan(1e-3);
      }
      expect(Array.from(model.params.get('resnet.embedder.embedder.normalization.running_mean').dataSync())).toEqual(Array.from(runningBefore));
      for (const g of r.grads.values()) g.dispose();
      r.mainLogits.dispose();
      r.subLogits?.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });

    it('the zero-fill operator applies the fixture mask as pixel_values * pixel_mask', () => {
      const view = model.dropOperator('zero-fill').apply({ pixel_values: pixels }, mask);
      const expected = tf.tidy(() => tf.mul(pixels, tf.tensor4d(mask.kind === 'zero-fill' ? mask.pixelMask : new Float32Array(), [4, 1, 32, 32])));
      expect(maxAbs(view.inputs.pixel_values.dataSync(), expected.dataSync())).toBe(0);
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
