/** Swin parameter groups (official get_swin_layer): blocks counted over stages, patch merging with its stage's last block; layer decay now works. */
import { describe, expect, it } from 'vitest';
import { tf } from '@masksub/core';
import { checkParamGroups } from '../../core/src/testing/param-groups.js';
import { SwinModel } from './index.js';

const tiny = { model_type: 'swin', image_size: 16, patch_size: 2, embed_dim: 8, depths: [2, 3], num_heads: [2, 2], window_size: 4, num_labels: 5 };

describe('Swin parameter groups', () => {
  it('numbers blocks over both stages and changes each parameter\'s lr under layer decay', async () => {
    await tf.setBackend('cpu');
    const m = new SwinModel(tiny);
    const { groups, layers, lrScale, noDecay } = checkParamGroups(m);
    expect(groups.numLayers).toBe(5);
    expect(layers.get('swin.embeddings.patch_embeddings.projection.weight')).toBe(0);
    expect(layers.get('swin.encoder.layers.0.blocks.0.attention.self.query.weight')).toBe(1);
    expect(layers.get('swin.encoder.layers.0.blocks.1.output.dense.weight')).toBe(2);
    // Patch merging after stage 0 shares the stage's last block (sum(depths[:1]) = 2).
    expect(layers.get('swin.encoder.layers.0.downsample.reduction.weight')).toBe(2);
    expect(layers.get('swin.encoder.layers.1.blocks.0.layernorm_before.weight')).toBe(3);
    expect(layers.get('swin.encoder.layers.1.blocks.2.output.dense.weight')).toBe(5);
    expect(layers.get('swin.layernorm.weight')).toBe(6);
    expect(layers.get('classifier.weight')).toBe(6);
    expect(lrScale.get('swin.embeddings.patch_embeddings.projection.weight')).toBe(0.5 ** 6);
    expect(lrScale.get('classifier.weight')).toBe(1);
    expect(noDecay).toContain('swin.encoder.layers.1.blocks.2.attention.self.relative_position_bias_table');
    expect(noDecay).not.toContain('swin.encoder.layers.0.downsample.reduction.weight');
    m.dispose();
  });
});
