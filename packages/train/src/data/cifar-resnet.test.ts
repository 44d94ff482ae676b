/**
 * The pretrained CIFAR ResNet-20 of shared/data/models through the trainer's data pipeline: top-1
 * on the first 500 CIFAR-10 test JPEGs is consistent with the 81.03 % PyTorch measured on all 10,000.
 */
import { beforeAll, expect, it } from 'vitest';
import { initBackend, loadPretrained } from '@masksub/core';
import '@masksub/resnet';
import { describeShared, sharedPath } from '../../../core/src/testing/shared.js';
import { evaluate } from '../evaluate.js';
import { preprocessForModel } from '../model-preprocess.js';
import { limitDataset } from '../subset.js';
import { openDataSpec } from './spec.js';

const quiet = { log: () => {} };

describeShared('data/cifar10', 'ResNet-20 top-1 on CIFAR-10 test JPEGs (core data pipeline)', () => {
  beforeAll(async () => {
    await initBackend({ prefer: 'wasm', log: () => {} });
  });

  it('first 500 test images: top-1 consistent with the measured 81.03 % on all 10,000', async () => {
    const dir = sharedPath('data/models/resnet20-cifar10');
    const { model } = await loadPretrained(dir, quiet);
    const preprocess = await preprocessForModel(model, dir);
    expect(preprocess.mean).toEqual([0.485, 0.456, 0.406]);
    const data = limitDataset(await openDataSpec(`webdataset:${sharedPath('data/cifar10/test-000000.tar.gz')}`, { numClasses: 10 }), 500);
    const r = await evaluate(model, data, preprocess, 100);
    expect(r.count).toBe(500);
    console.log(`resnet20 top-1 on the first 500 CIFAR-10 test JPEGs: ${r.top1.toFixed(2)} %`);
    // Binomial sd on 500 images around 81 % is about 1.75 points.
    expect(Math.abs(r.top1 - 81.03)).toBeLessThan(4);
    model.dispose();
  }, 60_000);
});
