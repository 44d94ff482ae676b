/** ViT / DeiT / timm ViT parameter groups: embeddings 0, block i -> i + 1, norm and head last; tokens without weight decay. */
import { describe, expect, it } from 'vitest';
import { tf } from '@masksub/core';
import { checkParamGroups } from '../../core/src/testing/param-groups.js';
import { TimmViTModel, ViTModel } from './index.js';

const hf = { model_type: 'vit', image_size: 28, patch_size: 7, num_channels: 1, hidden_size: 16, num_hidden_layers: 3, num_attention_heads: 2, intermediate_size: 32, num_labels: 10 };

describe('ViT parameter groups', () => {
  it('HF ViT and DeiT', async () => {
    await tf.setBackend('cpu');
    for (const modelType of ['vit', 'deit']) {
      const m = new ViTModel({ ...hf, model_type: modelType });
      const { groups, layers, noDecay } = checkParamGroups(m);
      const p = modelType;
      expect(groups.numLayers).toBe(3);
      expect(layers.get(`${p}.embeddings.cls_token`)).toBe(0);
      expect(layers.get(`${p}.embeddings.patch_embeddings.projection.weight`)).toBe(0);
      expect(layers.get(`${p}.encoder.layer.0.attention.attention.query.weight`)).toBe(1);
      expect(layers.get(`${p}.encoder.layer.2.output.dense.bias`)).toBe(3);
      expect(layers.get(`${p}.layernorm.weight`)).toBe(4);
      expect(layers.get([...layers.keys()].find((n) => n.endsWith('classifier.weight'))!)).toBe(4);
      expect(noDecay).toContain(`${p}.embeddings.position_embeddings`);
      expect(noDecay).toContain(`${p}.embeddings.cls_token`);
      if (modelType === 'deit') expect(noDecay).toContain('deit.embeddings.distillation_token');
      expect(noDecay).not.toContain(`${p}.encoder.layer.0.attention.attention.query.weight`);
      m.dispose();
    }
  });
  it('timm ViT', async () => {
    await tf.setBackend('cpu');
    const m = new TimmViTModel({ architecture: 'vit_tiny_patch16_224', num_classes: 5, model_args: { img_size: 32, embed_dim: 16, depth: 2, num_heads: 2 } });
    const { groups, layers, noDecay } = checkParamGroups(m);
    expect(groups.numLayers).toBe(2);
    for (const n of ['cls_token', 'pos_embed', 'patch_embed.proj.weight']) expect(layers.get(n), n).toBe(0);
    expect(layers.get('blocks.0.attn.qkv.weight')).toBe(1);
    expect(layers.get('blocks.1.mlp.fc2.weight')).toBe(2);
    expect(layers.get('norm.weight')).toBe(3);
    expect(layers.get('head.weight')).toBe(3);
    expect(noDecay).toEqual(expect.arrayContaining(['cls_token', 'pos_embed', 'blocks.0.norm1.weight', 'head.bias']));
    expect(noDecay).not.toContain('head.weight');
    m.dispose();
  });
});
