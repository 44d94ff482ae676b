/**
 * MAE's fine-tuning head on the timm ViT (issue 10 item 9): mean of the patch tokens (the kept
 * ones in the sub pass), `fc_norm`, head; no final `norm`. Parity with a PyTorch reference
 * (test-fixtures/mae-pooled, made by its make_reference.py) on cpu and wasm, from the config
 * (model_args.global_pool 'avg') and from a checkpoint that only says so through its names.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPretrained, readSafetensors, tf, verifyModel, withMaskSub, writeSafetensors, type DropMask, type HFConfig, type HostTensor, type TensorMap } from '@masksub/core';
import { disposeStep, expectGradientsMatch, expectStepMatches, quiet, recipeKeys, referenceKeptPatches, referenceTensor, useBackend } from '../../core/src/testing/parity.js';
import { TimmViTModel, parseTimmViTConfig, timmViTConfigForWeights, timmViTParamSpecs } from './index.js';

const fixture = join(dirname(fileURLToPath(import.meta.url)), '../test-fixtures/mae-pooled');
const config = JSON.parse(readFileSync(join(fixture, 'config.json'), 'utf8')) as HFConfig;

/** The weights make_reference.py builds: tensor t (sorted names), element j -> 0.3 sin(0.37 j + 1.1 t + 0.5); norm weights 1 + 0.1 sin(...). */
function formulaWeights(): TensorMap {
  const specs = timmViTParamSpecs(parseTimmViTConfig(config)).filter((s) => s.name !== 'mask_token');
  const out: TensorMap = new Map();
  [...specs].sort((a, b) => (a.name < b.name ? -1 : 1)).forEach((spec, t) => {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const normWeight = /(norm1|norm2|fc_norm)\.weight$/.test(spec.name);
    const data = Float32Array.from({ length: n }, (_, j) => {
      const v = Math.sin(0.37 * j + 1.1 * t + 0.5);
      return normWeight ? 1 + 0.1 * v : 0.3 * v;
    });
    out.set(spec.name, { name: spec.name, dtype: 'float32', shape: [...spec.shape], data } satisfies HostTensor);
  });
  return out;
}

describe('MAE pooled head: config', () => {
  it("global_pool 'avg' uses fc_norm (timm: fc_norm null -> used with avg) and has no final norm", () => {
    const c = parseTimmViTConfig(config);
    expect([c.globalPool, c.fcNorm]).toEqual(['avg', true]);
    const names = timmViTParamSpecs(c).map((s) => s.name);
    expect(names).toContain('fc_norm.weight');
    expect(names).not.toContain('norm.weight');
    const avgNoFcNorm = parseTimmViTConfig({ ...config, model_args: { ...(config.model_args as object), fc_norm: false } });
    expect([avgNoFcNorm.globalPool, avgNoFcNorm.fcNorm]).toEqual(['avg', false]);
    expect(() => parseTimmViTConfig({ ...config, model_args: { ...(config.model_args as object), global_pool: 'max' } })).toThrow(/model_args\.global_pool "max"/);
  });

  it('a checkpoint with fc_norm.* and no norm.* sets the pooled head where the config is silent', () => {
    const { global_pool: _g, model_args, ...rest } = config;
    const { global_pool: _p, fc_norm: _f, ...args } = model_args as Record<string, unknown>;
    const silent = { ...rest, model_args: args };
    const names = new Set(formulaWeights().keys());
    expect(parseTimmViTConfig(timmViTConfigForWeights(silent, names)).globalPool).toBe('avg');
    expect(timmViTConfigForWeights(silent, new Set(['norm.weight', 'fc_norm.weight']))).toBe(silent);
    expect(timmViTConfigForWeights(config, names)).toBe(config);
  });
});

for (const backend of ['cpu', 'wasm'] as const) {
  describe(`MAE pooled head: parity with PyTorch on ${backend}`, () => {
    let model: TimmViTModel;
    let ref: TensorMap;
    let pixels: tf.Tensor4D;
    let labels: tf.Tensor1D;
    let keep: DropMask;

    beforeAll(async () => {
      await useBackend(backend);
      model = new TimmViTModel(config);
      model.params.load(formulaWeights(), 'formula', () => false, () => false);
      ref = readSafetensors(join(fixture, 'reference.safetensors'));
      pixels = referenceTensor<tf.Rank.R4>(ref, 'input.pixel_values');
      labels = referenceTensor<tf.Rank.R1>(ref, 'input.labels', 'int32');
      keep = referenceKeptPatches(ref);
    });
    afterAll(() => {
      model?.dispose();
      pixels?.dispose();
      labels?.dispose();
    });

    it('ce: logits (main, and sub over the kept tokens), loss halves and every gradient', () => {
      const r = withMaskSub(model, { loss: 'ce' }).computeGradients({ inputs: { pixel_values: pixels }, targets: { labels } }, 0, keep);
      expectStepMatches(r, ref, recipeKeys('ce'));
      const { names } = expectGradientsMatch(model, ref, 'ce.grad.', r.grads, { relTol: 1e-3 });
      expect(names).toContain('fc_norm.weight');
      expect(names.length).toBe(20);
      disposeStep(r);
    });
  });
}

describe('MAE pooled head: a folder whose config does not say it', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'masksub-mae-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('loads from the names in the file, saves the pooled config, and verifies against the reference', async () => {
    await useBackend('cpu');
    const { global_pool: _g, model_args, ...rest } = config;
    const { global_pool: _p, fc_norm: _f, ...args } = model_args as Record<string, unknown>;
    writeFileSync(join(tmp, 'config.json'), JSON.stringify({ ...rest, model_args: args }));
    writeSafetensors(join(tmp, 'model.safetensors'), formulaWeights());
    const loaded = await loadPretrained(tmp, quiet);
    expect((loaded.model as TimmViTModel).cfg.globalPool).toBe('avg');
    expect(loaded.config.global_pool).toBe('avg');
    const report = verifyModel(loaded.model, join(fixture, 'reference.safetensors'));
    expect(report.ok, JSON.stringify(report.rows)).toBe(true);
    loaded.model.dispose();
  });
});
