/** CLIP parameter groups: both towers (CLIPModel) or the vision tower and its classifier (FT-CLIP). */
import { describe, expect, it } from 'vitest';
import { buildFromConfig, tf } from '@masksub/core';
import { checkParamGroups } from '../../core/src/testing/param-groups.js';
import { CLIP_CLASSIFIER_ARCHITECTURE } from './index.js';

const vision = { image_size: 16, patch_size: 4, hidden_size: 16, num_hidden_layers: 3, num_attention_heads: 2, intermediate_size: 32 };

describe('CLIP parameter groups', () => {
  it('CLIPModel: each tower from its embeddings, the shallower text tower ending where the vision tower does', async () => {
    await tf.setBackend('cpu');
    const { model } = buildFromConfig({
      model_type: 'clip',
      projection_dim: 8,
      text_config: { vocab_size: 20, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 8 },
      vision_config: vision,
    });
    const { groups, layers, noDecay } = checkParamGroups(model);
    expect(groups.numLayers).toBe(3);
    expect(layers.get('vision_model.embeddings.class_embedding')).toBe(0);
    expect(layers.get('vision_model.pre_layrnorm.weight')).toBe(0);
    expect(layers.get('text_model.embeddings.token_embedding.weight')).toBe(0);
    expect(layers.get('vision_model.encoder.layers.0.mlp.fc1.weight')).toBe(1);
    expect(layers.get('vision_model.encoder.layers.2.mlp.fc1.weight')).toBe(3);
    expect(layers.get('text_model.encoder.layers.0.mlp.fc1.weight')).toBe(2);
    expect(layers.get('text_model.encoder.layers.1.mlp.fc1.weight')).toBe(3);
    for (const n of ['vision_model.post_layernorm.weight', 'text_model.final_layer_norm.weight', 'visual_projection.weight', 'logit_scale']) expect(layers.get(n), n).toBe(4);
    expect(noDecay).toEqual(expect.arrayContaining(['vision_model.embeddings.position_embedding.weight', 'text_model.embeddings.position_embedding.weight', 'logit_scale']));
    expect(noDecay).not.toContain('text_model.embeddings.token_embedding.weight');
    model.dispose();
  });
  it('FT-CLIP classifier: vision tower and head', async () => {
    await tf.setBackend('cpu');
    const { model } = buildFromConfig({ model_type: 'clip', num_labels: 4, vision_config: vision }, 0, { architecture: CLIP_CLASSIFIER_ARCHITECTURE });
    const { groups, layers } = checkParamGroups(model);
    expect(groups.numLayers).toBe(3);
    expect(layers.get('vision_model.embeddings.patch_embedding.weight')).toBe(0);
    expect(layers.get('vision_model.encoder.layers.2.self_attn.out_proj.weight')).toBe(3);
    expect(layers.get('classifier.weight')).toBe(4);
    model.dispose();
  });
});
