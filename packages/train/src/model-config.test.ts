/**
 * model_config: config.json keys overridden from the run config before the model is built,
 * validated by the adapter's own parser (unknown keys and bad values name model_config.<key>),
 * for config.json-only models and pretrained folders; the saved folder shows the values.
 */
import '@masksub/vit';
import '@masksub/resnet';
import '@masksub/clip';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildFromConfig, loadPretrained, OptionError } from '@masksub/core';
import { describeShared, fixturePath } from '../../core/src/testing/shared.js';
import { parseRunConfig } from './config.js';
import { trainRun } from './trainer.js';

const tmp = mkdtempSync(join(tmpdir(), 'masksub-model-config-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const vit = { model_type: 'vit', image_size: 28, patch_size: 7, num_channels: 1, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 32, num_labels: 10 };
const resnet = { model_type: 'resnet', embedding_size: 8, hidden_sizes: [8, 16], depths: [1, 1], layer_type: 'basic', num_labels: 5 };
const named = (f: () => unknown): OptionError => {
  try {
    f();
  } catch (e) {
    if (e instanceof OptionError) return e;
    throw e;
  }
  throw new Error('no error');
};
const opts = (values: Record<string, unknown>) => ({ configOverrides: values, configOverridesName: 'model_config' });

describe('model_config overrides (config.json-only models)', () => {
  it('reach the built model and its config', () => {
    const { model } = buildFromConfig(vit, 0, opts({ drop_path_rate: 0.1, drop_path_rule: 'uniform', hidden_dropout_prob: 0.2 }));
    expect(model.config).toMatchObject({ drop_path_rate: 0.1, drop_path_rule: 'uniform', hidden_dropout_prob: 0.2, hidden_size: 16 });
    const r = buildFromConfig(resnet, 0, opts({ bn_mode: 'eval', drop_path_rate: 0.05 }));
    expect((r.model as unknown as { bnMode: string }).bnMode).toBe('eval');
    expect(r.model.config).toMatchObject({ bn_mode: 'eval', drop_path_rate: 0.05 });
  });
  it('name an unknown key and a refused value as model_config.<key>', () => {
    const typo = named(() => buildFromConfig(vit, 0, opts({ drop_path_rat: 0.1 })));
    expect(typo.option).toBe('model_config.drop_path_rat');
    expect(typo.message).toMatch(/vit model's config has no key 'drop_path_rat'/);
    // A key of another architecture: ResNet has no hidden dropout.
    expect(named(() => buildFromConfig(resnet, 0, opts({ hidden_dropout_prob: 0.1 }))).option).toBe('model_config.hidden_dropout_prob');
    const bad = named(() => buildFromConfig(resnet, 0, opts({ bn_mode: 'frozen' })));
    expect(bad.option).toBe('model_config.bn_mode');
    expect(bad.message).toMatch(/"frozen" is refused.*'bn_mode' must be 'eval' or 'train'/);
    expect(named(() => buildFromConfig(vit, 0, opts({ drop_path_rule: 'cosine' }))).option).toBe('model_config.drop_path_rule');
    // Copies of the config (spread, JSON) are not reads: the check sees only what the parser looks up.
    expect(named(() => buildFromConfig(resnet, 0, opts({ not_a_key: 1 }))).option).toBe('model_config.not_a_key');
  });
});

describeShared('fixtures/hf-tiny/vit', 'model_config overrides (pretrained folders)', () => {
  // CLIP's towers read attention_dropout, not HF's unused 'dropout': the check tells them apart.
  it('apply to a pretrained folder, nested keys included (CLIP vision_config)', async () => {
    const quiet = { log: () => undefined };
    const loaded = await loadPretrained(fixturePath('vit'), { ...quiet, ...opts({ drop_path_rate: 0.2 }) });
    expect(loaded.model.config.drop_path_rate).toBe(0.2);
    await expect(loadPretrained(fixturePath('vit'), { ...quiet, ...opts({ drop_path: 0.2 }) })).rejects.toThrow(/option 'model_config\.drop_path'/);
    const clip = await loadPretrained(fixturePath('clip'), { ...quiet, ...opts({ vision_config: { attention_dropout: 0.1 } }) });
    expect((clip.model.config.vision_config as Record<string, unknown>).attention_dropout).toBe(0.1);
    expect((clip.model.config.vision_config as Record<string, unknown>).hidden_size).toBeDefined();
    await expect(loadPretrained(fixturePath('clip'), { ...quiet, ...opts({ vision_config: { dropout: 0.1 } }) })).rejects.toThrow(/model_config\.vision_config\.dropout/);
  });
});

describe('model_config in a run', () => {
  it("shows the overridden values in the saved folder's config.json, and refuses a bad key before training", async () => {
    writeFileSync(join(tmp, 'vit.json'), JSON.stringify(vit));
    const base = {
      model: join(tmp, 'vit.json'),
      data: { train: 'mnist:train', train_limit: 16, mean: [0.13], std: [0.31] },
      train: { batch_size: 8, steps: 1 },
      run: { dir: join(tmp, 'run'), quiet: true, backend: 'cpu' as const },
    };
    const quiet = { log: () => undefined, stream: { write: () => true } as unknown as NodeJS.WritableStream };
    const r = await trainRun(parseRunConfig({ ...base, model_config: { drop_path_rate: 0.1, drop_path_rule: 'uniform' } }), quiet);
    const saved = JSON.parse(readFileSync(join(r.modelDir, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(saved).toMatchObject({ drop_path_rate: 0.1, drop_path_rule: 'uniform', hidden_size: 16 });
    await expect(trainRun(parseRunConfig({ ...base, model_config: { drop_path_rate: -1 } , run: { ...base.run, dir: join(tmp, 'bad') } }), quiet)).rejects.toThrow(/option 'model_config\.drop_path_rate'/);
  });
});
