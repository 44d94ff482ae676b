import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { OptionError } from '../errors.js';
import { describeShared, fixturePath } from '../testing/shared.js';
import { defaultNoDecay, layerDecayScale, layerId, resolveParamHypers } from './param-groups.js';

/** Names and shapes from a safetensors header (enough for rule tests; no tensor data read). */
function headerShapes(file: string): Map<string, { shape: number[] }> {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { shape?: number[] }>;
  const out = new Map<string, { shape: number[] }>();
  for (const [name, v] of Object.entries(header)) if (name !== '__metadata__') out.set(name, { shape: v.shape! });
  return out;
}

describe('defaultNoDecay', () => {
  it.each([
    ['vit.embeddings.position_embeddings', [1, 197, 768], true],
    ['vit.embeddings.mask_token', [1, 1, 768], true],
    ['deit.embeddings.distillation_token', [1, 1, 768], true],
    ['swin.encoder.layers.1.blocks.0.attention.self.relative_position_bias_table', [169, 3], true],
    ['vision_model.embeddings.position_embedding.weight', [50, 768], true],
    ['logit_scale', [], true],
    ['some.odd.LayerNorm.weight', [2, 3], true],
    ['vit.encoder.layer.0.attention.attention.query.weight', [768, 768], false],
    ['vit.embeddings.patch_embeddings.projection.weight', [768, 3, 16, 16], false],
    ['bert.embeddings.word_embeddings.weight', [30522, 768], false],
    ['swin.encoder.layers.0.downsample.reduction.weight', [192, 384], false],
  ])('%s %j -> %s', (name, shape, expected) => {
    expect(defaultNoDecay(name, shape)).toBe(expected);
  });
});

describe('layerId / layer decay (BEiT recipe)', () => {
  it('maps ViT/BERT/CLIP names to depths', () => {
    expect(layerId('vit.embeddings.cls_token', 12)).toBe(0);
    expect(layerId('vit.embeddings.patch_embeddings.projection.weight', 12)).toBe(0);
    expect(layerId('vit.encoder.layer.0.attention.attention.query.weight', 12)).toBe(1);
    expect(layerId('vit.encoder.layer.11.output.dense.bias', 12)).toBe(12);
    expect(layerId('vit.layernorm.weight', 12)).toBe(13);
    expect(layerId('classifier.weight', 12)).toBe(13);
    expect(layerId('bert.encoder.layer.3.attention.self.key.weight', 12)).toBe(4);
    expect(layerId('bert.pooler.dense.weight', 12)).toBe(13);
    expect(layerId('vision_model.pre_layrnorm.weight', 12)).toBe(0);
    expect(layerId('vision_model.encoder.layers.5.mlp.fc1.weight', 12)).toBe(6);
    expect(layerId('vision_model.post_layernorm.bias', 12)).toBe(13);
    expect(() => layerId('vit.encoder.layer.12.output.dense.bias', 12)).toThrow(OptionError);
  });

  it('scales: head 1, last block decay, embeddings decay^(L+1)', () => {
    expect(layerDecayScale(13, 12, 0.65)).toBe(1);
    expect(layerDecayScale(12, 12, 0.65)).toBeCloseTo(0.65, 12);
    expect(layerDecayScale(0, 12, 0.65)).toBeCloseTo(0.65 ** 13, 12);
  });

  it('a pluggable layerId and noDecay replace the defaults', () => {
    const params = new Map([
      ['resnet.encoder.stages.2.layers.0.layer.1.convolution.weight', { shape: [4, 4, 3, 3] }],
      ['classifier.1.weight', { shape: [10, 32] }],
    ]);
    const h = resolveParamHypers(params, 0.1, {
      noDecay: (name) => name.startsWith('classifier'),
      layerDecay: { decay: 0.5, numLayers: 4, layerId: (name, n) => (/stages\.(\d+)/.exec(name) ? Number(/stages\.(\d+)/.exec(name)![1]) + 1 : n + 1) },
    });
    expect(h.get('resnet.encoder.stages.2.layers.0.layer.1.convolution.weight')).toEqual({ weightDecay: 0.1, lrScale: 0.25 });
    expect(h.get('classifier.1.weight')).toEqual({ weightDecay: 0, lrScale: 1 });
    expect(() => resolveParamHypers(params, 0.1, { layerDecay: { decay: 1.5, numLayers: 4 } })).toThrow(/layerDecay.decay/);
  });
});

describeShared('fixtures/hf-tiny', 'param rules on real hf-tiny checkpoints', () => {
  it('ViT: decay only on 2-D+ weights that are not tokens; depths by block', () => {
    const params = headerShapes(fixturePath('vit', 'model.safetensors'));
    const h = resolveParamHypers(params, 0.05, { layerDecay: { decay: 0.5, numLayers: 2 } });
    const decayed = [...h].filter(([, v]) => v.weightDecay > 0).map(([n]) => n).sort();
    // 6 linear weights per block x 2 blocks + patch projection + classifier.
    expect(decayed).toHaveLength(14);
    expect(decayed).toContain('vit.embeddings.patch_embeddings.projection.weight');
    expect(decayed.every((n) => n.endsWith('.weight') && !/norm/i.test(n))).toBe(true);
    expect(h.get('vit.embeddings.cls_token')).toEqual({ weightDecay: 0, lrScale: 0.125 });
    expect(h.get('vit.embeddings.position_embeddings')!.weightDecay).toBe(0);
    expect(h.get('vit.encoder.layer.0.intermediate.dense.weight')).toEqual({ weightDecay: 0.05, lrScale: 0.25 });
    expect(h.get('vit.encoder.layer.1.layernorm_before.weight')).toEqual({ weightDecay: 0, lrScale: 0.5 });
    expect(h.get('vit.layernorm.bias')!.lrScale).toBe(1);
    expect(h.get('classifier.weight')).toEqual({ weightDecay: 0.05, lrScale: 1 });
  });

  it('BERT: LayerNorm and biases excluded, embeddings at depth 0, pooler with the head', () => {
    const params = headerShapes(fixturePath('bert', 'model.safetensors'));
    const h = resolveParamHypers(params, 0.01, { layerDecay: { decay: 0.9, numLayers: 2 } });
    expect(h.get('bert.embeddings.LayerNorm.weight')!.weightDecay).toBe(0);
    expect(h.get('bert.encoder.layer.1.attention.output.LayerNorm.weight')!.weightDecay).toBe(0);
    expect(h.get('bert.encoder.layer.1.attention.self.query.bias')!.weightDecay).toBe(0);
    expect(h.get('bert.embeddings.word_embeddings.weight')).toEqual({ weightDecay: 0.01, lrScale: 0.9 ** 3 });
    expect(h.get('bert.encoder.layer.0.output.dense.weight')!.lrScale).toBeCloseTo(0.81, 12);
    expect(h.get('bert.pooler.dense.weight')).toEqual({ weightDecay: 0.01, lrScale: 1 });
  });

  it('CLIP vision and Swin tokens/tables are excluded from decay', () => {
    const clip = resolveParamHypers(headerShapes(fixturePath('clip', 'model.safetensors')), 0.1);
    expect(clip.get('vision_model.embeddings.class_embedding')!.weightDecay).toBe(0);
    expect(clip.get('vision_model.embeddings.position_embedding.weight')!.weightDecay).toBe(0);
    expect(clip.get('logit_scale')!.weightDecay).toBe(0);
    expect(clip.get('vision_model.encoder.layers.0.mlp.fc1.weight')!.weightDecay).toBe(0.1);
    const swin = resolveParamHypers(headerShapes(fixturePath('swin', 'model.safetensors')), 0.1);
    expect(swin.get('swin.encoder.layers.0.blocks.0.attention.self.relative_position_bias_table')!.weightDecay).toBe(0);
    expect(swin.get('swin.encoder.layers.0.downsample.reduction.weight')!.weightDecay).toBe(0.1);
  });
});
