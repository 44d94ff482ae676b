/**
 * timm hub folders and DeiT-III (zoo-layouts fixtures): dispatch on `architecture`, parity with the
 * PyTorch references (logits, loss halves, every gradient under timm names) on cpu and wasm, the
 * official DeiT `.pth` layout, save -> load round trips, and the errors for bad folders.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPretrained, readSafetensors, saveModel, tf, toFloat32, withMaskSub, type DropMask, type HFConfig, type TensorMap } from '@masksub/core';
import { describeShared, sharedPath } from '../../core/src/testing/shared.js';
import { disposeStep, expectGradientsMatch, expectStepMatches, maxAbsDiff, quiet, recipeKeys, referenceKeptPatches, referenceTensor, useBackend } from '../../core/src/testing/parity.js';
import { TimmViTModel, parseTimmViTConfig } from './index.js';

const zoo = (rel = '') => sharedPath(join('fixtures/zoo-layouts', rel));

describe('parseTimmViTConfig', () => {
  it('takes sizes from the architecture name where model_args has none', () => {
    const c = parseTimmViTConfig({ architecture: 'deit3_base_patch16_384', num_classes: 1000, pretrained_cfg: {} });
    expect([c.embedDim, c.depth, c.numHeads, c.patchSize, c.imgSize[0], c.mlpHidden]).toEqual([768, 12, 12, 16, 384, 3072]);
    expect(c.layerScale && c.noEmbedClass).toBe(true);
    const v = parseTimmViTConfig({ architecture: 'vit_small_patch32_224', num_classes: 10, model_args: { depth: 3 } });
    expect([v.embedDim, v.depth, v.numHeads, v.patchSize, v.layerScale, v.noEmbedClass]).toEqual([384, 3, 6, 32, false, false]);
  });

  it('refuses what it cannot build, naming it', () => {
    expect(() => parseTimmViTConfig({ architecture: 'vit_weird_patch16_224', model_args: {} })).toThrow(/model_args\.embed_dim .* 'vit_weird_patch16_224'/);
    expect(() => parseTimmViTConfig({ architecture: 'vit_base_patch16_224', model_args: { global_pool: 'max' } })).toThrow(/global_pool/);
    expect(() => parseTimmViTConfig({ architecture: 'deit_base_distilled_patch16_224', model_args: {} })).toThrow(/distilled/);
  });
});

for (const backend of ['cpu', 'wasm'] as const) {
  for (const folder of ['timm-vit', 'deit3'] as const) {
    describeShared(`fixtures/zoo-layouts/${folder}`, `${folder} parity with PyTorch on ${backend}`, () => {
      let model: TimmViTModel;
      let ref: TensorMap;
      let pixels: tf.Tensor4D;
      let labels: tf.Tensor1D;
      let keep: DropMask;

      beforeAll(async () => {
        await useBackend(backend);
        const loaded = await loadPretrained(zoo(folder), quiet);
        expect(loaded.model).toBeInstanceOf(TimmViTModel);
        expect(loaded.created).toEqual(['mask_token']);
        model = loaded.model as TimmViTModel;
        ref = readSafetensors(zoo(`${folder}/reference.safetensors`));
        pixels = referenceTensor<tf.Rank.R4>(ref, 'input.pixel_values');
        labels = referenceTensor<tf.Rank.R1>(ref, 'input.labels', 'int32');
        keep = referenceKeptPatches(ref);
      });
      afterAll(() => {
        model?.dispose();
        pixels?.dispose();
        labels?.dispose();
      });

      for (const kind of ['ce', 'bce'] as const) {
        it(`${kind}: logits, loss halves and every gradient (timm names)`, () => {
          const r = withMaskSub(model, { loss: kind }).computeGradients({ inputs: { pixel_values: pixels }, targets: { labels } }, 0, keep);
          const keys = recipeKeys(kind);
          expectStepMatches(r, ref, keys);
          const { names } = expectGradientsMatch(model, ref, keys.gradPrefix, r.grads, { relTol: 1e-3 });
          expect(names.length).toBe(folder === 'deit3' ? 36 : 32);
          if (folder === 'deit3') expect(names).toContain('blocks.1.ls2.gamma');
          disposeStep(r);
        });
      }
    });
  }
}

describeShared('fixtures/zoo-layouts/deit3', 'DeiT-III release layouts', () => {
  let tmp: string;
  beforeAll(async () => {
    await useBackend('cpu');
    tmp = mkdtempSync(join(tmpdir(), 'masksub-deit3-'));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it("the official checkpoint.pth ({'model'}, gamma_1/gamma_2) loads to the same weights as the timm safetensors", async () => {
    const timm = await loadPretrained(zoo('deit3'), quiet);
    const official = await loadPretrained(zoo('deit3'), { ...quiet, weights: 'checkpoint.pth' });
    expect(official.format).toBe('pth');
    const a = timm.model.params.export();
    const b = official.model.params.export();
    expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
    for (const [name, t] of a) expect(b.get(name)?.data, name).toEqual(t.data);
    timm.model.dispose();
    official.model.dispose();
  });

  it('save -> load keeps the timm layout and every value', async () => {
    const first = await loadPretrained(zoo('deit3'), quiet);
    const out = join(tmp, 'saved');
    saveModel(first.model, out);
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as HFConfig;
    expect(config.architecture).toBe('deit3_small_patch16_224');
    expect(config.model_type).toBeUndefined();
    const saved = readSafetensors(join(out, 'model.safetensors'));
    const original = readSafetensors(zoo('deit3/model.safetensors'));
    for (const [name, t] of original) expect(toFloat32(saved.get(name)!), name).toEqual(toFloat32(t));
    const again = await loadPretrained(out, quiet);
    const x = tf.randomNormal([2, 3, 32, 32], 0, 1, 'float32', 3);
    const y1 = first.model.forward({ pixel_values: x });
    const y2 = again.model.forward({ pixel_values: x });
    expect(maxAbsDiff(y1.dataSync(), y2.dataSync())).toBe(0);
    tf.dispose([x, y1, y2]);
    first.model.dispose();
    again.model.dispose();
  });

  it('a DeiT-III state dict without LayerScale is refused, naming the missing tensors', async () => {
    const dir = join(tmp, 'no-ls');
    cpSync(zoo('deit3'), dir, { recursive: true });
    const st = readSafetensors(join(dir, 'model.safetensors'));
    const { writeSafetensors } = await import('@masksub/core');
    rmSync(join(dir, 'model.safetensors'));
    rmSync(join(dir, 'checkpoint.pth'));
    writeSafetensors(join(dir, 'model.safetensors'), new Map([...st].filter(([n]) => !/\.ls[12]\.gamma$/.test(n))));
    await expect(loadPretrained(dir, quiet)).rejects.toThrow(/missing: blocks\.0\.ls1\.gamma[\s\S]*missing: blocks\.1\.ls2\.gamma/);
  });

  it('an unknown timm architecture is an error naming it and what is served', async () => {
    const dir = join(tmp, 'unknown');
    cpSync(zoo('deit3'), dir, { recursive: true });
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as HFConfig;
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, architecture: 'convnext_tiny' }));
    await expect(loadPretrained(dir, quiet)).rejects.toThrow(/timm architecture 'convnext_tiny'.*Served: .*vit_\* \(vit\)/);
  });
});
