/**
 * timm `swin_*` hub folders: a timm folder is generated at test time from hf-tiny/swin (HF names
 * renamed to timm's >= 0.9 names, q/k/v fused, PatchMerging moved to the start of the next
 * stage, a timm hub config.json) — the rename test-fixtures/check_timm_swin.py checks against
 * the HF reference with timm's arithmetic in PyTorch. Loaded through the timm dispatch, the model
 * must reproduce the HF reference: logits, loss halves and every gradient, on cpu and wasm.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  FileFormatError,
  internalShape,
  loadPretrained,
  readSafetensors,
  tf,
  toFloat32,
  toInternal,
  withMaskSub,
  writeSafetensors,
  type DropMask,
  type HFConfig,
  type HostTensor,
  type TensorMap,
} from '@masksub/core';
import { describeShared, fixturePath } from '../../core/src/testing/shared.js';
import { disposeStep, expectGradientsMatch, expectStepMatches, quiet, recipeKeys, referenceEntry, referenceMaskedTokens, referenceTensor, useBackend } from '../../core/src/testing/parity.js';
import { SwinModel, parseSwinConfig, timmSwinAliases, timmSwinToHfConfig } from './index.js';

/** HF Swin checkpoint -> timm >= 0.9 names (the inverse of the adapter's mapping, written out independently). */
function hfSwinToTimm(hf: TensorMap, depths: readonly number[]): TensorMap {
  const out: TensorMap = new Map();
  const put = (name: string, t: HostTensor) => out.set(name, { ...t, name });
  const take = (name: string): HostTensor => {
    const t = hf.get(name);
    if (!t) throw new Error(`fixture lacks ${name}`);
    return t;
  };
  for (const k of ['weight', 'bias']) {
    put(`patch_embed.proj.${k}`, take(`swin.embeddings.patch_embeddings.projection.${k}`));
    put(`patch_embed.norm.${k}`, take(`swin.embeddings.norm.${k}`));
    put(`norm.${k}`, take(`swin.layernorm.${k}`));
    put(`head.fc.${k}`, take(`classifier.${k}`));
  }
  depths.forEach((depth, s) => {
    for (let b = 0; b < depth; b++) {
      const h = `swin.encoder.layers.${s}.blocks.${b}`;
      const t = `layers.${s}.blocks.${b}`;
      for (const k of ['weight', 'bias']) {
        put(`${t}.norm1.${k}`, take(`${h}.layernorm_before.${k}`));
        put(`${t}.norm2.${k}`, take(`${h}.layernorm_after.${k}`));
        put(`${t}.attn.proj.${k}`, take(`${h}.attention.output.dense.${k}`));
        put(`${t}.mlp.fc1.${k}`, take(`${h}.intermediate.dense.${k}`));
        put(`${t}.mlp.fc2.${k}`, take(`${h}.output.dense.${k}`));
        // timm: qkv output rows = [query; key; value]
        const parts = ['query', 'key', 'value'].map((p) => toFloat32(take(`${h}.attention.self.${p}.${k}`)));
        const fused = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
        parts.forEach((p, j) => fused.set(p, j * p.length));
        const q = take(`${h}.attention.self.query.${k}`);
        put(`${t}.attn.qkv.${k}`, { name: '', dtype: 'float32', shape: [3 * (q.shape[0] as number), ...q.shape.slice(1)], data: fused });
      }
      put(`${t}.attn.relative_position_bias_table`, take(`${h}.attention.self.relative_position_bias_table`));
    }
    if (s < depths.length - 1) {
      for (const k of ['norm.weight', 'norm.bias', 'reduction.weight']) put(`layers.${s + 1}.downsample.${k}`, take(`swin.encoder.layers.${s}.downsample.${k}`));
    }
  });
  return out;
}

/** A timm hub folder of hf-tiny/swin in `dir`. */
function writeTimmSwinFolder(dir: string, extra: { attnMask?: boolean } = {}): HFConfig {
  const hfConfig = JSON.parse(readFileSync(fixturePath('swin', 'config.json'), 'utf8')) as HFConfig;
  const depths = hfConfig.depths as number[];
  const tensors = hfSwinToTimm(readSafetensors(fixturePath('swin', 'model.safetensors')), depths);
  if (extra.attnMask) tensors.set('layers.0.blocks.1.attn_mask', { name: 'layers.0.blocks.1.attn_mask', dtype: 'float32', shape: [16, 16, 16], data: new Float32Array(16 ** 3) });
  const config: HFConfig = {
    architecture: 'swin_tiny_patch4_window7_224',
    num_classes: 10,
    global_pool: 'avg',
    model_args: { img_size: 32, patch_size: 2, window_size: 4, embed_dim: 16, depths, num_heads: hfConfig.num_heads, mlp_ratio: 4, qkv_bias: true, drop_path_rate: 0 },
    pretrained_cfg: { input_size: [3, 32, 32], interpolation: 'bicubic', crop_pct: 0.9, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], num_classes: 10 },
  };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  writeSafetensors(join(dir, 'model.safetensors'), tensors);
  return config;
}

describe('timm Swin config and names', () => {
  it('sizes from the architecture name where model_args has none', () => {
    const hf = timmSwinToHfConfig({ architecture: 'swin_base_patch4_window12_384', num_classes: 1000, pretrained_cfg: {} });
    expect([hf.embed_dim, hf.depths, hf.num_heads, hf.window_size, hf.image_size, hf.patch_size]).toEqual([128, [2, 2, 18, 2], [4, 8, 16, 32], 12, 384, 4]);
    expect(() => timmSwinToHfConfig({ architecture: 'swin_weird_patch4_window7_224', model_args: {} })).toThrow(/model_args\.embed_dim is missing/);
    expect(() => timmSwinToHfConfig({ architecture: 'swin_tiny_patch4_window7_224', model_args: { strict_img_size: false } })).toThrow(/model_args\.strict_img_size/);
  });

  it('PatchMerging of HF stage s is timm stage s + 1; the head is head.fc', () => {
    const aliases = timmSwinAliases(parseSwinConfig(timmSwinToHfConfig({ architecture: 'swin_tiny_patch4_window7_224', model_args: {} })));
    expect(aliases['layers.1.downsample.reduction.weight']).toBe('swin.encoder.layers.0.downsample.reduction.weight');
    expect(aliases['layers.3.downsample.norm.bias']).toBe('swin.encoder.layers.2.downsample.norm.bias');
    expect(aliases['layers.0.downsample.norm.bias']).toBeUndefined();
    expect(aliases['head.fc.weight']).toBe('classifier.weight');
  });
});

for (const backend of ['cpu', 'wasm'] as const) {
  describeShared('fixtures/hf-tiny/swin', `timm Swin folder parity with the HF reference on ${backend}`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'masksub-timm-swin-'));
    let model: SwinModel;
    let ref: TensorMap;
    let pixels: tf.Tensor4D;
    let labels: tf.Tensor1D;
    let mask: DropMask;

    beforeAll(async () => {
      await useBackend(backend);
      writeTimmSwinFolder(dir, { attnMask: true });
      const loaded = await loadPretrained(dir, quiet);
      expect(loaded.adapter.name).toBe('swin');
      expect(loaded.created).toEqual(['swin.embeddings.mask_token']);
      model = loaded.model as SwinModel;
      ref = readSafetensors(fixturePath('swin', 'reference.safetensors'));
      const token = referenceEntry(ref, 'param.swin.embeddings.mask_token');
      const spec = model.params.specs.get('swin.embeddings.mask_token')!;
      const value = tf.tensor(toInternal(spec, toFloat32(token)), internalShape(spec));
      model.params.get('swin.embeddings.mask_token').assign(value);
      value.dispose();
      pixels = referenceTensor<tf.Rank.R4>(ref, 'input.pixel_values');
      labels = referenceTensor<tf.Rank.R1>(ref, 'input.labels', 'int32');
      mask = referenceMaskedTokens(ref);
    });
    afterAll(() => {
      model?.dispose();
      pixels?.dispose();
      labels?.dispose();
      rmSync(dir, { recursive: true, force: true });
    });

    it('ce: logits, loss halves and every gradient match the HF reference', () => {
      const r = withMaskSub(model, { loss: 'ce' }).computeGradients({ inputs: { pixel_values: pixels }, targets: { labels } }, 0, mask);
      expectStepMatches(r, ref, recipeKeys('ce'));
      const { names } = expectGradientsMatch(model, ref, 'ce.grad.', r.grads, { relTol: 1e-3 });
      expect(names.length).toBe(model.params.specs.size);
      disposeStep(r);
    });
  });
}

describeShared('fixtures/hf-tiny/swin', 'timm Swin folders: errors', () => {
  it('a qkv of the wrong shape names the tensor', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'masksub-timm-swin-bad-'));
    try {
      writeTimmSwinFolder(dir);
      const st = readSafetensors(join(dir, 'model.safetensors'));
      st.set('layers.1.blocks.0.attn.qkv.bias', { name: 'layers.1.blocks.0.attn.qkv.bias', dtype: 'float32', shape: [95], data: new Float32Array(95) });
      writeSafetensors(join(dir, 'model.safetensors'), st);
      await expect(loadPretrained(dir, quiet)).rejects.toThrow(FileFormatError);
      await expect(loadPretrained(dir, quiet)).rejects.toThrow(/tensor 'layers\.1\.blocks\.0\.attn\.qkv\.bias': shape \[95\], expected \[96\]/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
