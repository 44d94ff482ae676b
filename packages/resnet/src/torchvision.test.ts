/**
 * torchvision ResNet names (zoo-layouts/resnet-torchvision: a bare state dict in a `.pth` with
 * num_batches_tracked buffers, beside HF's config.json): parity with the PyTorch reference on cpu
 * and wasm, and timm hub configs of the plain ResNets.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPretrained, readPth, readSafetensors, saveModel, tf, toFloat32, withMaskSub, type DropMask, type TensorMap } from '@masksub/core';
import { describeShared, sharedPath } from '../../core/src/testing/shared.js';
import { disposeStep, expectGradientsMatch, expectStepMatches, quiet, recipeKeys, referenceEntry, referenceTensor, useBackend } from '../../core/src/testing/parity.js';
import { ResNetModel, parseResNetConfig, timmResNetToHfConfig, torchvisionResNetAliases } from './index.js';

describe('timm / torchvision ResNet names', () => {
  it('resnet50 from a timm config is HF ResNet-50 v1.5, and every torchvision name maps', () => {
    const hf = timmResNetToHfConfig({ architecture: 'resnet50', num_classes: 1000, pretrained_cfg: {} });
    const c = parseResNetConfig(hf);
    expect(c.hiddenSizes).toEqual([256, 512, 1024, 2048]);
    expect(c.depths).toEqual([3, 4, 6, 3]);
    const aliases = torchvisionResNetAliases(c);
    expect(aliases['layer3.5.bn3.running_var']).toBe('resnet.encoder.stages.2.layers.5.layer.2.normalization.running_var');
    expect(aliases['layer1.0.downsample.0.weight']).toBe('resnet.encoder.stages.0.layers.0.shortcut.convolution.weight');
    expect(aliases['fc.weight']).toBe('classifier.1.weight');
    // every model tensor has exactly one torchvision name (a small net of both block types)
    for (const layer_type of ['basic', 'bottleneck']) {
      const small = { model_type: 'resnet', embedding_size: 8, hidden_sizes: [8, 16], depths: [2, 1], layer_type, num_labels: 3 };
      const m = new ResNetModel(small);
      const targets = new Set(Object.values(torchvisionResNetAliases(parseResNetConfig(small))));
      for (const name of m.params.export().keys()) expect(targets.has(name), name).toBe(true);
      m.dispose();
    }
  });


  it('refuses ResNet variants it does not build, naming them', () => {
    expect(() => timmResNetToHfConfig({ architecture: 'resnet50d', model_args: {} })).toThrow(/'resnet50d' is not served/);
  });
});

for (const backend of ['cpu', 'wasm'] as const)
  describeShared('fixtures/zoo-layouts/resnet-torchvision', `torchvision ResNet .pth parity on ${backend}`, () => {
    let model: ResNetModel;
    let ref: TensorMap;
    let pixels: tf.Tensor4D;
    let labels: tf.Tensor1D;
    let mask: DropMask;

    beforeAll(async () => {
      await useBackend(backend);
      const loaded = await loadPretrained(sharedPath('fixtures/zoo-layouts/resnet-torchvision'), quiet);
      expect(loaded.format).toBe('pth');
      expect(loaded.created).toEqual([]);
      model = loaded.model as ResNetModel;
      ref = readSafetensors(sharedPath('fixtures/zoo-layouts/resnet-torchvision/reference.safetensors'));
      pixels = referenceTensor<tf.Rank.R4>(ref, 'input.pixel_values');
      labels = referenceTensor<tf.Rank.R1>(ref, 'input.labels', 'int32');
      const pm = referenceEntry(ref, 'input.pixel_mask');
      mask = { kind: 'zero-fill', batch: pm.shape[0], height: pm.shape[2], width: pm.shape[3], pixelMask: toFloat32(pm) };
    });
    afterAll(() => {
      model?.dispose();
      pixels?.dispose();
      labels?.dispose();
    });

    it('ce: logits, loss halves and every gradient (HF names) match', () => {
      const r = withMaskSub(model, { loss: 'ce', bnMode: 'eval' }).computeGradients({ inputs: { pixel_values: pixels }, targets: { labels } }, 0, mask);
      expectStepMatches(r, ref, recipeKeys('ce'));
      const { names } = expectGradientsMatch(model, ref, 'ce.grad.', r.grads, { relTol: 1e-3 });
      expect(names.length).toBe(26);
      disposeStep(r);
    });
  });

describeShared('fixtures/zoo-layouts/resnet-torchvision', 'torchvision ResNet: load -> save -> load in the source layout', () => {
  it('writes pytorch_model.pth back under torchvision names, num_batches_tracked included, every value the same', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'masksub-tv-'));
    try {
      const first = await loadPretrained(sharedPath('fixtures/zoo-layouts/resnet-torchvision'), quiet);
      saveModel(first.model, tmp, {}, { layout: first.layout });
      expect(existsSync(join(tmp, 'model.safetensors'))).toBe(false);
      const original = readPth(sharedPath('fixtures/zoo-layouts/resnet-torchvision/pytorch_model.pth')).tensors;
      const saved = readPth(join(tmp, 'pytorch_model.pth')).tensors;
      expect([...saved.keys()].sort()).toEqual([...original.keys()].sort());
      expect(saved.get('layer1.0.bn1.num_batches_tracked')?.dtype).toBe('int64');
      for (const [name, t] of original) expect(Array.from(saved.get(name)!.data as ArrayLike<number>), name).toEqual(Array.from(t.data as ArrayLike<number>));
      const again = await loadPretrained(tmp, quiet);
      const x = tf.randomNormal([2, 3, 32, 32], 0, 1, 'float32', 4);
      const y1 = first.model.forward({ pixel_values: x }, { training: false });
      const y2 = again.model.forward({ pixel_values: x }, { training: false });
      expect(Array.from(y2.dataSync())).toEqual(Array.from(y1.dataSync()));
      tf.dispose([x, y1, y2]);
      first.model.dispose();
      again.model.dispose();
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
