/** BERT parameter groups: embeddings 0, layer i -> i + 1, pooler and classifier last; HF's no-decay rule (biases, LayerNorm). */
import { describe, expect, it } from 'vitest';
import { tf } from '@masksub/core';
import { checkParamGroups } from '../../core/src/testing/param-groups.js';
import { BertModel } from './index.js';

describe('BERT parameter groups', () => {
  it('places embeddings, layers and head', async () => {
    await tf.setBackend('cpu');
    const m = new BertModel({ model_type: 'bert', vocab_size: 30, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 16, num_labels: 3 });
    const { groups, layers, noDecay } = checkParamGroups(m);
    expect(groups.numLayers).toBe(2);
    expect(layers.get('bert.embeddings.word_embeddings.weight')).toBe(0);
    expect(layers.get('bert.embeddings.LayerNorm.weight')).toBe(0);
    expect(layers.get('bert.encoder.layer.0.attention.self.query.weight')).toBe(1);
    expect(layers.get('bert.encoder.layer.1.output.LayerNorm.bias')).toBe(2);
    expect(layers.get('bert.pooler.dense.weight')).toBe(3);
    expect(layers.get('classifier.weight')).toBe(3);
    expect(noDecay).toEqual(expect.arrayContaining(['bert.embeddings.LayerNorm.weight', 'bert.encoder.layer.0.attention.self.query.bias']));
    expect(noDecay).not.toContain('bert.embeddings.word_embeddings.weight');
    m.dispose();
  });
});
