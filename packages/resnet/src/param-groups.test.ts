/** ResNet parameter groups (timm group_matcher, one group per block): stem 0, blocks over stages, head last; layer decay now reaches ResNets. */
import { describe, expect, it } from 'vitest';
import { buildFromConfig, tf } from '@masksub/core';
import { checkParamGroups } from '../../core/src/testing/param-groups.js';
import { ResNetCifarModel, ResNetModel } from './index.js';
import './index.js';

describe('ResNet parameter groups', () => {
  it('HF ResNet (and torchvision / timm files, which load under its names)', async () => {
    await tf.setBackend('cpu');
    const m = new ResNetModel({ model_type: 'resnet', embedding_size: 8, hidden_sizes: [8, 16], depths: [2, 1], layer_type: 'basic', num_labels: 3 });
    const { groups, layers, lrScale } = checkParamGroups(m);
    expect(groups.numLayers).toBe(3);
    expect(layers.get('resnet.embedder.embedder.convolution.weight')).toBe(0);
    expect(layers.get('resnet.embedder.embedder.normalization.running_mean')).toBe(0);
    expect(layers.get('resnet.encoder.stages.0.layers.0.layer.0.convolution.weight')).toBe(1);
    expect(layers.get('resnet.encoder.stages.0.layers.1.layer.1.normalization.weight')).toBe(2);
    expect(layers.get('resnet.encoder.stages.1.layers.0.shortcut.convolution.weight')).toBe(3);
    expect(layers.get('classifier.1.weight')).toBe(4);
    // Before, layer decay left every ResNet scale at 1.
    expect(lrScale.get('resnet.embedder.embedder.convolution.weight')).toBe(0.5 ** 4);
    expect(lrScale.get('resnet.encoder.stages.0.layers.1.layer.1.convolution.weight')).toBe(0.25);
    m.dispose();
    const timm = buildFromConfig({ architecture: 'resnet18', num_classes: 4, pretrained_cfg: {} }).model;
    expect(checkParamGroups(timm).groups.numLayers).toBe(8);
    timm.dispose();
  });
  it('CIFAR ResNet', async () => {
    await tf.setBackend('cpu');
    const m = new ResNetCifarModel({ model_type: 'resnet_cifar', depth: 8, num_classes: 10 });
    const { groups, layers, noDecay } = checkParamGroups(m);
    expect(groups.numLayers).toBe(3);
    expect(layers.get('conv1.weight')).toBe(0);
    expect(layers.get('bn1.weight')).toBe(0);
    expect(layers.get('layer1.0.conv1.weight')).toBe(1);
    expect(layers.get('layer3.0.conv2.weight')).toBe(3);
    expect(layers.get('linear.weight')).toBe(4);
    expect(noDecay).toEqual(expect.arrayContaining(['bn1.weight', 'bn1.bias', 'linear.bias']));
    expect(noDecay).not.toContain('conv1.weight');
    m.dispose();
  });
});
