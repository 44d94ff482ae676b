/**
 * resnet_cifar: the pretrained ResNet-20/56 of shared/data/models reproduce their PyTorch logits
 * through core's loadPretrained (top-1 through the trainer's data pipeline is tested in
 * @masksub/train); the option-A shortcut is x[:, :, ::2, ::2] with planes // 4 zero channels on each side; zero-fill MaskSub trains it.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  Rng,
  initBackend,
  loadPretrained,
  readSafetensors,
  tf,
  toFloat32,
  withMaskSub,
} from '@masksub/core';
import { describeShared, sharedPath } from '../../core/src/testing/shared.js';
import { ResNetCifarModel, optionAShortcut, parseResNetCifarConfig, resnetCifarPlan } from './index.js';

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const quiet = { log: () => {} };

describe('CIFAR ResNet structure', () => {
  it('builds 6n + 2 layers from depth, with PyTorch names, and rejects other depths naming the key', () => {
    const m = new ResNetCifarModel({ model_type: 'resnet_cifar', depth: 20, num_classes: 10 });
    const names = [...m.params.specs.keys()];
    // stem conv + 9 blocks x 2 convs + linear = 20 weight layers
    expect(names.filter((n) => n.endsWith('conv1.weight') || n.endsWith('conv2.weight')).length + 1).toBe(20);
    expect(names).toContain('layer3.2.bn2.running_var');
    expect(m.params.specs.get('layer2.0.conv1.weight')!.shape).toEqual([32, 16, 3, 3]);
    expect(m.params.specs.get('bn1.running_mean')!.trainable).toBe(false);
    // The README's 269,722 parameters of ResNet-20: running statistics are buffers, not counted.
    const trainable = [...m.params.specs.values()].filter((p) => p.trainable ?? true);
    expect(trainable.reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0)).toBe(269722);
    m.dispose();
    expect(() => new ResNetCifarModel({ model_type: 'resnet_cifar', depth: 21 })).toThrow(/depth.*6n \+ 2/);
  });

  it('option-A shortcut: every second pixel from 0, planes // 4 zero channels before and after', async () => {
    await tf.setBackend('cpu');
    const shortcuts = resnetCifarPlan(parseResNetCifarConfig({ model_type: 'resnet_cifar', depth: 20 })).blocks.map((b) => b.shortcut);
    expect(shortcuts.filter((s) => s !== null)).toEqual([
      { stride: 2, padChannels: 8, inChannels: 16 },
      { stride: 2, padChannels: 16, inChannels: 32 },
    ]);
    const rng = new Rng(1);
    // Odd size: PyTorch's ::2 keeps ceil(7 / 2) = 4 rows.
    const x = tf.tensor4d(Float32Array.from({ length: 7 * 7 * 4 }, () => rng.normal()), [1, 7, 7, 4]);
    const y = optionAShortcut(x, 2, 2);
    expect(y.shape).toEqual([1, 4, 4, 8]);
    const xs = x.arraySync()[0];
    const ys = y.arraySync()[0];
    for (let i = 0; i < 4; i++)
      for (let j = 0; j < 4; j++)
        for (let c = 0; c < 8; c++) expect(ys[i][j][c]).toBe(c >= 2 && c < 6 ? xs[2 * i][2 * j][c - 2] : 0);
    tf.dispose([x, y]);
  });
});

for (const name of ['resnet20', 'resnet56'])
  describeShared(`data/models/${name}-cifar10`, `${name} (CIFAR-10, pretrained) reproduces PyTorch`, () => {
    it('logits of reference.safetensors within 1e-4 from `images`', async () => {
      await initBackend({ prefer: 'wasm', log: () => {} });
      const dir = sharedPath(`data/models/${name}-cifar10`);
      const { model, created } = await loadPretrained(dir, quiet);
      expect(created).toEqual([]);
      expect(model.architecture).toBe('resnet_cifar');
      const ref = readSafetensors(join(dir, 'reference.safetensors'));
      const img = ref.get('images')!;
      const images = tf.tensor4d(toFloat32(img), img.shape as [number, number, number, number]);
      const logits = model.forward({ pixel_values: images });
      expect(maxAbsDiff(logits.dataSync(), toFloat32(ref.get('logits')!))).toBeLessThan(1e-4);
      if (name === 'resnet20') {
        // Zero-fill MaskSub on it (8 px squares on CIFAR: half of the 16 squares zeroed).
        const labels = tf.tensor1d(toFloat32(ref.get('labels')!), 'int32');
        const r = withMaskSub(model, { seed: 3 }).computeGradients({ inputs: { pixel_values: images }, targets: { labels } });
        expect(r.mask?.kind).toBe('zero-fill');
        if (r.mask?.kind === 'zero-fill') {
          const kept = r.mask.pixelMask.slice(0, 32 * 32).reduce((a, b) => a + b, 0);
          expect(kept).toBe(8 * 8 * 8); // 8 of the 16 squares of the first image
        }
        expect(maxAbsDiff(r.subLogits!.dataSync(), r.mainLogits.dataSync())).toBeGreaterThan(1e-3);
        expect([...r.grads.keys()].sort()).toEqual([...model.params.trainable().keys()].sort());
        expect(r.grads.has('bn1.running_mean')).toBe(false);
        tf.dispose([labels, r.mainLogits, r.subLogits!, ...r.grads.values()]);
      }
      tf.dispose([images, logits]);
      model.dispose();
    }, 60_000);

    it('numLabels equal to num_classes keeps the pretrained head; another count makes a new one', async () => {
      const dir = sharedPath(`data/models/${name}-cifar10`);
      const plain = await loadPretrained(dir, quiet);
      const same = await loadPretrained(dir, { numLabels: 10, ...quiet });
      expect(same.created).toEqual([]);
      expect(same.model.params.get('linear.weight').dataSync()).toEqual(plain.model.params.get('linear.weight').dataSync());
      same.model.dispose();
      plain.model.dispose();
      const other = await loadPretrained(dir, { numLabels: 5, ...quiet });
      const x = tf.zeros([1, 3, 32, 32]);
      const logits = other.model.forward({ pixel_values: x });
      expect(logits.shape).toEqual([1, 5]);
      tf.dispose([x, logits]);
      other.model.dispose();
    });
  });
