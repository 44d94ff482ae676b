/** Named recipes: every preset parses through the run schema, precedence recipe < file < flag, bad names. */
import '@masksub/vit';
import '@masksub/resnet';
import '@masksub/swin';
import '@masksub/clip';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { loadPretrained, OptionError } from '@masksub/core';
import { describeShared, fixturePath } from '../../core/src/testing/shared.js';
import { parseRunConfig, resolveWarmupSteps } from './config.js';
import { applyRecipe, listRecipes, mergeUnder, readRecipe, recipeNames } from './recipes.js';
import { configSource, rawConfig } from './cli/main.js';
import { parseStudy } from './study/schema.js';
import { studyCells } from './study/cells.js';

const run = { model: 'm', data: { train: 'mnist:train' } };
const tmp = mkdtempSync(join(tmpdir(), 'masksub-recipes-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The paper's Table B.1 recipes and the GLUE one. */
const EXPECTED = ['beitv2-finetune', 'deit3-400', 'deit3-800', 'ft-clip', 'glue', 'mae-finetune', 'rsb-a2', 'swin'];

describe('the shipped recipes', () => {
  it('are the eight of Table B.1 and GLUE, each with a description and a source', () => {
    expect(recipeNames()).toEqual(EXPECTED);
    for (const r of listRecipes()) {
      expect(r.description.length, r.name).toBeGreaterThan(20);
      expect(r.source, r.name).toMatch(/Table B\.1/);
      // Each names the official file it was read from, with a line where one applies.
      expect(r.source, r.name).toMatch(/\.(py|md|sh|yaml):?\d*/);
    }
  });

  it.each(EXPECTED)('%s parses through the run schema (strict: no unknown key) and sets the paper ratio', (name) => {
    const c = parseRunConfig({ recipe: name, ...run }, name);
    expect(c.recipe).toBe(name);
    expect(c.train.epochs, 'recipes state their length in epochs').toBeGreaterThan(0);
    expect(c.masksub.variant).toBe('masksub');
    expect(c.masksub.ratio).toBe(name === 'glue' ? 0.15 : 0.5);
    // Every key the file sets shows up in the resolved config with the file's value.
    const values = readRecipe(name).values;
    const resolved = c as unknown as Record<string, Record<string, unknown>>;
    for (const [section, keys] of Object.entries(values)) {
      for (const [k, v] of Object.entries(keys as Record<string, unknown>)) expect(resolved[section][k], `${name}: ${section}.${k}`).toEqual(v);
    }
  });

  it('carry the official values that set each recipe apart', () => {
    const c = (name: string) => parseRunConfig({ recipe: name, ...run }, name);
    expect(c('deit3-400')).toMatchObject({ model_config: { drop_path_rate: 0.1, drop_path_rule: 'uniform' }, optimizer: { kind: 'lamb', lr: 3e-3, weight_decay: 0.03, warmup_epochs: 5 }, train: { ema_decay: 0.99996, epochs: 400, loss: 'bce', bce_target_thresh: 0, bce_target_thresh_on: 'main' }, augment: { three_augment: true, color_jitter: 0.3, repeated_aug: 3, mixup: 0.8, cutmix: 1 } });
    expect(c('deit3-800')).toMatchObject({ model_config: { drop_path_rate: 0.2 }, optimizer: { weight_decay: 0.05 }, train: { epochs: 800 } });
    expect(c('ft-clip').train.ema_decay).toBe(0.9998);
    expect(c('rsb-a2').model_config).toEqual({ drop_path_rate: 0.05, drop_path_rule: 'linear', bn_mode: 'train' });
    expect(c('rsb-a2')).toMatchObject({ optimizer: { kind: 'lamb', lr: 5e-3, weight_decay: 0.02 }, train: { epochs: 300, loss: 'bce', bce_target_thresh_on: 'all' }, augment: { rand_augment: 'rand-m7-mstd0.5', mixup: 0.1, repeated_aug: 3, label_smoothing: 0 } });
    expect(c('rsb-a2').train.bce_target_thresh).toBeUndefined(); // timm's soft BCE targets
    // Warm-up start: timm's warmup_lr_init (DeiT 1e-6, RSB 1e-4, Swin 5e-7 x 1024 / 512); MAE, BEiT and HF from 0.
    expect(EXPECTED.map((n) => c(n).optimizer.warmup_lr)).toEqual([0, 1e-6, 1e-6, 0, 0, 0, 1e-4, 1e-6]);
    expect(c('swin')).toMatchObject({ optimizer: { blr: 2.5e-4, clip_grad: 5, warmup_epochs: 20, weight_decay: 0.05 }, augment: { random_erasing: 0.25, label_smoothing: 0.1 } });
    expect(c('mae-finetune')).toMatchObject({ optimizer: { blr: 5e-4, layer_decay: 0.65, warmup_epochs: 5 }, augment: { rand_augment: 'rand-m9-mstd0.5-inc1', random_erasing: 0.25 } });
    expect(c('beitv2-finetune')).toMatchObject({ optimizer: { lr: 5e-4, layer_decay: 0.6, warmup_epochs: 20 } });
    expect(c('ft-clip')).toMatchObject({ optimizer: { lr: 6e-4, layer_decay: 0.6 }, augment: { mixup: 0, cutmix: 0 }, data: { mean: [0.48145466, 0.4578275, 0.40821073] } });
    for (const name of EXPECTED) expect(c(name).optimizer.schedule, name).toBe(name === 'glue' ? 'linear' : 'cosine');
    expect(c('glue')).toMatchObject({ optimizer: { lr: 2e-5, weight_decay: 0, clip_grad: 1 }, train: { epochs: 3, batch_size: 32 }, masksub: { drop: 'token-masking', ratio: 0.15 } });
  });
});

describeShared('fixtures/hf-tiny', "each recipe's model_config is read by the architecture it is for", () => {
  const ARCH: Record<string, string> = { 'deit3-400': 'vit', 'deit3-800': 'vit', 'mae-finetune': 'vit', 'beitv2-finetune': 'vit', 'rsb-a2': 'resnet', swin: 'swin', 'ft-clip': 'clip' };
  it.each(Object.entries(ARCH))('%s on the hf-tiny %s', async (name, arch) => {
    const c = parseRunConfig({ recipe: name, ...run });
    expect(c.model_config, name).toBeDefined();
    // The adapter's parser validates the overrides: a key it does not read would be an error naming it.
    const { model } = await loadPretrained(fixturePath(arch), { configOverrides: c.model_config, configOverridesName: 'model_config', log: () => {} });
    const built = model.config as Record<string, unknown>;
    for (const [k, v] of Object.entries(c.model_config!)) expect(built[k], `${name}: model_config.${k}`).toEqual(v);
    model.dispose();
  });
  it('glue leaves the BERT config alone', () => {
    expect(parseRunConfig({ recipe: 'glue', ...run }).model_config).toBeUndefined();
  });
});

describe('precedence: recipe < config file < flags', () => {
  it('a bad value is reported with the flag that set it, else the file', () => {
    const file = join(tmp, 'attribution.yaml');
    writeFileSync(file, YAML.stringify({ ...run, optimizer: { weight_decay: -1 } }));
    const flagged = new Map<string, string>();
    const raw = rawConfig({ config: file, ratio: '1.5', set: ['augment={"mixup":-1}'] }, flagged);
    const source = configSource(flagged, file);
    expect(source('masksub.ratio')).toBe('--ratio 1.5');
    expect(source('augment.mixup')).toBe('--set augment={"mixup":-1}');
    expect(source('optimizer.weight_decay')).toBe(file);
    expect(() => parseRunConfig(raw, source)).toThrow(/--ratio 1\.5: 'masksub\.ratio'/);
    expect(() => parseRunConfig(raw, source)).toThrow(new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: 'optimizer\\.weight_decay'`));
  });
  it('the file overrides the recipe, a flag or --set overrides the file, the rest comes from the recipe', () => {
    const file = join(tmp, 'run.yaml');
    writeFileSync(file, YAML.stringify({ recipe: 'mae-finetune', ...run, optimizer: { weight_decay: 0.1 }, augment: { mixup: 0.5, cutmix: 0.5 } }));
    const raw = rawConfig({ config: file, batchSize: '16', set: ['augment.mixup=0.2'] });
    const c = parseRunConfig(raw, file);
    expect(c.optimizer.weight_decay).toBe(0.1); // file over recipe (0.05)
    expect(c.augment.mixup).toBe(0.2); // --set over file (0.5) over recipe (0.8)
    expect(c.augment.cutmix).toBe(0.5); // file over recipe (1.0)
    expect(c.train.batch_size).toBe(16); // flag over recipe (1024)
    expect(c.optimizer.layer_decay).toBe(0.65); // recipe over the schema default (null)
    expect(c.augment.random_erasing).toBe(0.25);
    // --recipe replaces the file's recipe; the file's own keys still win over it.
    const swin = parseRunConfig(rawConfig({ config: file, recipe: 'swin' }), file);
    expect(swin.recipe).toBe('swin');
    expect(swin.optimizer.clip_grad).toBe(5);
    expect(swin.optimizer.weight_decay).toBe(0.1);
  });

  it('choosing one of two alternative keys drops the recipe value of the other', () => {
    // --lr replaces MAE's base-lr rule instead of colliding with it (the schema refuses both).
    const lr = parseRunConfig(rawConfig({ recipe: 'mae-finetune', model: 'm', data: 'mnist:train', lr: '1e-4' }), 'flags');
    expect(lr.optimizer).toMatchObject({ lr: 1e-4, layer_decay: 0.65 });
    expect(lr.optimizer.blr).toBeUndefined();
    expect(() => parseRunConfig({ ...run, train: { steps: 1 }, optimizer: { lr: 1e-4, blr: 1e-4 } })).toThrow(/alternatives/);
    // warm-up in steps replaces the recipe's epochs; --steps replaces its epochs.
    const c = parseRunConfig({ recipe: 'mae-finetune', ...run, optimizer: { warmup_steps: 3 }, train: { steps: 2 } });
    expect(c.optimizer.warmup_epochs).toBeUndefined();
    expect(c.optimizer.warmup_steps).toBe(3);
    expect(c.train.epochs).toBeUndefined();
    // RandAugment instead of DeiT-III's ThreeAugment (the schema refuses both together).
    const d = parseRunConfig({ recipe: 'deit3-400', ...run, augment: { rand_augment: 'rand-m9-mstd0.5-inc1' } });
    expect(d.augment.three_augment).toBe(false);
    // Turning the recipe's option off is a plain override.
    expect(parseRunConfig({ recipe: 'deit3-400', ...run, augment: { three_augment: false } }).augment.three_augment).toBe(false);
  });

  it('a study can set or grid over the recipe; its own keys still win over it', () => {
    const base = join(tmp, 'study-base.yaml');
    writeFileSync(base, YAML.stringify({ ...run, train: { steps: 3 }, optimizer: { weight_decay: 0.2 } }));
    const study = parseStudy({ base, grid: { recipe: ['mae-finetune', 'deit3-400'] }, seeds: [0], results: join(tmp, 'res'), measure: { drop: 'token-removal', ratio: 0.5 } }, 'recipes-study.yaml');
    const cells = studyCells(study);
    expect(cells.map((c) => [c.setting.name, c.config.recipe, c.config.optimizer.kind, c.config.optimizer.weight_decay])).toEqual([
      ['recipe-mae-finetune', 'mae-finetune', 'adamw', 0.2],
      ['recipe-deit3-400', 'deit3-400', 'lamb', 0.2],
    ]);
  });

  it('mergeUnder merges mappings and replaces lists and scalars', () => {
    expect(mergeUnder({ a: { b: 1, c: [1, 2] }, d: 1 }, { a: { c: [3] }, e: 2 })).toEqual({ a: { b: 1, c: [3] }, d: 1, e: 2 });
    // A '__proto__' key in a config file stays a key (the schema names it), never the merged object's prototype.
    const hostile = JSON.parse('{"recipe": "glue", "model": "m", "data": {"train": "mnist:train"}, "__proto__": {"model": "other"}}') as Record<string, unknown>;
    const merged = applyRecipe(hostile);
    expect(Object.getPrototypeOf(merged)).toBe(Object.prototype);
    expect(() => parseRunConfig(hostile, 'run.yaml')).toThrow(/unknown key '__proto__'/);
  });

  it('a resolved config (as stored in a run folder) parses to itself again', () => {
    const once = parseRunConfig({ recipe: 'deit3-800', ...run, train: { steps: 5 } });
    const twice = parseRunConfig(JSON.parse(JSON.stringify(once)));
    expect(twice).toEqual(once);
  });
});

describe('bad recipes', () => {
  it('an unknown name is an OptionError on recipe that lists the known ones', () => {
    let err: unknown;
    try {
      parseRunConfig({ recipe: 'mae', ...run });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(OptionError);
    expect((err as OptionError).message).toMatch(/recipe.*unknown recipe 'mae' \(known: beitv2-finetune, deit3-400,.*swin\)/);
    expect(() => applyRecipe({ recipe: '../config' })).toThrow(/unknown recipe/);
    expect(() => applyRecipe({ recipe: 3 })).toThrow(/expected a recipe name/);
  });

  it('a recipe file without its header, or with a key that belongs to a run, is refused naming the file', () => {
    const dir = mkdtempSync(join(tmp, 'dir-'));
    writeFileSync(join(dir, 'nohead.yaml'), 'optimizer: { lr: 1 }\n');
    writeFileSync(join(dir, 'withmodel.yaml'), '# description: a recipe that names a model\n# source: nowhere\nmodel: x\n');
    writeFileSync(join(dir, 'ok.yaml'), '# description: fine\n# source: here,\n#   and there\noptimizer: { lr: 1 }\n');
    expect(() => readRecipe('nohead', dir)).toThrow(/nohead\.yaml.*# description:/);
    expect(() => readRecipe('withmodel', dir)).toThrow(/withmodel\.yaml.*'model' belongs to a run/);
    expect(readRecipe('ok', dir)).toMatchObject({ description: 'fine', source: 'here, and there', values: { optimizer: { lr: 1 } } });
  });
});

describe('warm-up in epochs', () => {
  const cfg = (optimizer: Record<string, unknown>) => parseRunConfig({ ...run, train: { steps: 100 }, optimizer });
  it('is turned into steps with the run’s steps per epoch', () => {
    expect(resolveWarmupSteps(cfg({ warmup_epochs: 5 }), 7, 100)).toBe(35);
    expect(resolveWarmupSteps(cfg({ warmup_epochs: 0.5 }), 7, 100)).toBe(4);
    expect(resolveWarmupSteps(cfg({ warmup_steps: 9 }), 7, 100)).toBe(9);
  });
  it('is cut to leave one decay step when it is as long as the run, and says so', () => {
    const notes: string[] = [];
    expect(resolveWarmupSteps(cfg({ warmup_epochs: 5 }), 4, 2, (m) => notes.push(m))).toBe(1);
    expect(notes.join()).toMatch(/warm-up of 20 steps \(5 epochs x 4 steps\) is not shorter than the run's 2 steps: warming up over 1/);
  });
  it('needs a known epoch size', () => {
    expect(() => resolveWarmupSteps(cfg({ warmup_epochs: 5 }), null, 100)).toThrow(/optimizer\.warmup_epochs/);
  });
});
