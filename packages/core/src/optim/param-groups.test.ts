import { describe, expect, it } from 'vitest';
import { OptionError } from '../errors.js';
import { blockIndex, layerDecayScale, layeredParamGroups, resolveParamHypers, stageOffsets, timmNoWeightDecay } from './param-groups.js';

describe('timmNoWeightDecay (timm param_groups_weight_decay)', () => {
  it.each([
    ['vit.encoder.layer.0.layernorm_before.weight', [768], true],
    ['vit.encoder.layer.0.attention.attention.query.bias', [768], true],
    ['logit_scale', [], true],
    ['vit.encoder.layer.0.attention.attention.query.weight', [768, 768], false],
    // Tokens and tables are the model's to list (no names in core).
    ['vit.embeddings.cls_token', [1, 1, 768], false],
  ])('%s %j -> %s', (name, shape, expected) => {
    expect(timmNoWeightDecay(name, shape)).toBe(expected);
  });
});

describe('layeredParamGroups / resolveParamHypers', () => {
  const groups = layeredParamGroups({
    numLayers: 3,
    embedding: (n) => n.startsWith('stem.'),
    block: (n) => blockIndex(/^blocks\.(\d+)\./, n),
    noWeightDecay: (n) => n === 'stem.pos',
  });
  const params = new Map([
    ['stem.pos', { shape: [1, 4, 2] }],
    ['stem.proj.weight', { shape: [2, 3] }],
    ['blocks.0.fc.weight', { shape: [2, 2] }],
    ['blocks.2.fc.bias', { shape: [2] }],
    ['head.weight', { shape: [5, 2] }],
  ]);

  it('layers: embeddings 0, block i -> i + 1, the rest numLayers + 1; scale decay^(numLayers + 1 - layer)', () => {
    expect(['stem.pos', 'blocks.0.fc.weight', 'blocks.2.fc.bias', 'head.weight'].map((n) => groups.layerOf(n))).toEqual([0, 1, 3, 4]);
    const h = resolveParamHypers(params, 0.1, { groups, layerDecay: 0.5 });
    expect(h.get('stem.pos')).toEqual({ weightDecay: 0, lrScale: 0.0625 });
    expect(h.get('stem.proj.weight')).toEqual({ weightDecay: 0.1, lrScale: 0.0625 });
    expect(h.get('blocks.0.fc.weight')).toEqual({ weightDecay: 0.1, lrScale: 0.125 });
    expect(h.get('blocks.2.fc.bias')).toEqual({ weightDecay: 0, lrScale: 0.5 });
    expect(h.get('head.weight')).toEqual({ weightDecay: 0.1, lrScale: 1 });
    expect(layerDecayScale(0, 12, 0.65)).toBeCloseTo(0.65 ** 13, 12);
  });
  it('refuses layer decay without groups, a bad factor, and a block beyond the depth', () => {
    expect(() => resolveParamHypers(params, 0.1, { layerDecay: 0.5 })).toThrow(/paramGroups/);
    expect(() => resolveParamHypers(params, 0.1, { groups, layerDecay: 1.5 })).toThrow(OptionError);
    expect(() => resolveParamHypers(new Map([['blocks.3.fc.weight', { shape: [2, 2] }]]), 0.1, { groups, layerDecay: 0.5 })).toThrow(/block 3 of a 3-block model/);
    // No groups, no layer decay: timm's generic rule, every scale 1.
    const plain = resolveParamHypers(params, 0.1);
    expect(plain.get('stem.pos')).toEqual({ weightDecay: 0.1, lrScale: 1 });
    expect(plain.get('blocks.2.fc.bias')).toEqual({ weightDecay: 0, lrScale: 1 });
  });
  it('stage offsets count blocks over stages', () => {
    expect(stageOffsets([2, 2, 6, 2])).toEqual([0, 2, 4, 10]);
  });
});
