import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BACKEND_NAMES, LOSS_KINDS, MASK_DROP_KINDS, VARIANTS } from '@masksub/core';
import { parseRunConfig, readConfigFile, runConfigSchema, setPath } from './config.js';
import { effectiveBatchSize, resolveLearningRate } from './trainer.js';

const base = { model: 'm', data: { train: 'mnist:train' }, train: { steps: 10 } };

describe('run config', () => {
  it('fills defaults (AdamW) and leaves the ratio, lr and loss weights to the library and task rules', () => {
    const c = parseRunConfig(base);
    expect(c.masksub).toMatchObject({ variant: 'masksub' });
    // Unset: the drop kind's paper ratio (defaultRatio) and the task's lr (DEFAULT_LR) apply.
    expect(c.masksub.ratio).toBeUndefined();
    expect(c.optimizer.lr).toBeUndefined();
    // A YAML default here would override withMaskSub's rule (main weight 1 for 'none').
    expect(c.masksub.main_weight).toBeUndefined();
    expect(c.masksub.sub_weight).toBeUndefined();
    expect(c.optimizer.kind).toBe('adamw');
    expect(c.train.batch_size).toBe(64);
  });
  it("reads its enums from core's lists", () => {
    const shape = runConfigSchema.shape;
    expect(shape.masksub.unwrap().shape.variant.unwrap().options).toEqual([...VARIANTS]);
    expect(shape.masksub.unwrap().shape.drop.unwrap().options).toEqual([...MASK_DROP_KINDS]);
    expect(shape.train.unwrap().shape.loss.unwrap().options).toEqual([...LOSS_KINDS]);
    expect(shape.run.unwrap().shape.backend.unwrap().options).toEqual([...BACKEND_NAMES]);
    expect(parseRunConfig({ ...base, masksub: { variant: 'masking', drop: 'zero-fill' } }).masksub.variant).toBe('masking');
  });
  it('names an unknown key with its full path', () => {
    expect(() => parseRunConfig({ ...base, optimizer: { lr: 0.1, wieght_decay: 0.1 } }, 'run.yaml')).toThrow(/run\.yaml: unknown key 'optimizer\.wieght_decay'/);
    expect(() => parseRunConfig({ ...base, extra: 1 }, 'run.yaml')).toThrow(/unknown key 'extra'/);
  });
  it('names a missing required key', () => {
    expect(() => parseRunConfig({ data: { train: 'x' }, train: { steps: 1 } }, 'flags')).toThrow(/flags: 'model' is required/);
  });
  it('names, per key, where the bad value came from, and keeps a lone issue on its line', () => {
    const source = (key: string) => (key.startsWith('masksub') ? '--ratio 1.5' : 'run.yaml');
    let message = '';
    try {
      parseRunConfig({ ...base, masksub: { ratio: 1.5 } }, source);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toBe("option 'masksub.ratio': --ratio 1.5: 'masksub.ratio': Too big: expected number to be <1");
    // Two issues: one line each, each with its own source.
    expect(() => parseRunConfig({ ...base, masksub: { ratio: 1.5 }, train: { steps: 1, batch_size: 0 } }, source)).toThrow(
      /: ?\n(?=[\s\S]*--ratio 1\.5: 'masksub\.ratio')(?=[\s\S]*run\.yaml: 'train\.batch_size')/,
    );
    expect(() => parseRunConfig({ ...base, optimizer: { lr: 0.1, blr: 1e-3 } }, (key) => `source of ${key}`)).toThrow(/source of optimizer\.blr: optimizer\.lr and optimizer\.blr/);
  });
  it('names a bad value', () => {
    expect(() => parseRunConfig({ ...base, masksub: { ratio: 1 } }, 'run.yaml')).toThrow(/'masksub\.ratio'/);
    expect(() => parseRunConfig({ ...base, masksub: { variant: 'masked' } }, 'run.yaml')).toThrow(/'masksub\.variant'/);
    expect(() => parseRunConfig({ ...base, train: { batch_size: 0, steps: 1 } }, 'run.yaml')).toThrow(/'train\.batch_size'/);
    expect(() => parseRunConfig({ model: 'm', data: { train: 'x' } })).toThrow(/train\.steps or train\.epochs/);
    expect(() => parseRunConfig({ ...base, masksub: { ramp: 'linear' } })).toThrow(/ratio_end/);
  });
  it('reads YAML and applies flag overrides by dotted key', () => {
    const dir = mkdtempSync(join(tmpdir(), 'masksub-cfg-'));
    const file = join(dir, 'run.yaml');
    writeFileSync(file, 'model: m\ndata:\n  train: mnist:train\ntrain:\n  steps: 5\n');
    const raw = readConfigFile(file);
    setPath(raw, 'optimizer.lr', 0.5);
    setPath(raw, 'train.steps', 7);
    const c = parseRunConfig(raw, file);
    expect(c.optimizer.lr).toBe(0.5);
    expect(c.train.steps).toBe(7);
    writeFileSync(file, 'model: [unclosed');
    expect(() => readConfigFile(file)).toThrow(/run\.yaml: not valid YAML/);
    expect(() => readConfigFile(join(dir, 'missing.yaml'))).toThrow(/missing\.yaml: cannot read/);
  });
});

describe('recipe keys of issue 10 (accumulation, EMA, BCE threshold, base lr, model config)', () => {
  it('defaults: one micro-batch per update, no EMA, soft BCE targets, no base lr', () => {
    const c = parseRunConfig(base);
    expect(c.train.accum_steps).toBe(1);
    expect(c.train.ema_decay).toBeUndefined();
    expect(c.train.bce_target_thresh).toBeUndefined();
    expect(c.train.bce_target_thresh_on).toBe('all');
    expect(c.optimizer.blr).toBeUndefined();
    expect(c.model_config).toBeUndefined();
    // Section defaults live in the section schemas (prefault): an empty section and a missing one agree.
    expect(parseRunConfig({ ...base, optimizer: {} }).optimizer).toEqual(c.optimizer);
    expect(parseRunConfig({ ...base, run: {} }).run).toEqual(c.run);
    expect(parseRunConfig({ ...base, augment: {} }).augment).toEqual(c.augment);
  });
  it('optimizer.blr scales with the effective batch (MAE: blr * batch_size * accum_steps / 256) and excludes optimizer.lr', () => {
    const c = parseRunConfig({ ...base, optimizer: { blr: 1e-3 }, train: { steps: 1, batch_size: 32 } });
    expect(resolveLearningRate(c)).toBeCloseTo((1e-3 * 32) / 256, 12);
    expect(effectiveBatchSize(c)).toBe(32);
    expect(() => parseRunConfig({ ...base, optimizer: { lr: 0.1, blr: 1e-3 } }, 'run.yaml')).toThrow(/optimizer\.lr and optimizer\.blr/);
    expect(resolveLearningRate(parseRunConfig({ ...base, optimizer: { lr: 0.1 } }))).toBe(0.1);
  });
  it('validates the new keys by name', () => {
    expect(() => parseRunConfig({ ...base, train: { steps: 1, accum_steps: 0 } })).toThrow(/'train\.accum_steps'/);
    expect(() => parseRunConfig({ ...base, train: { steps: 1, accum_steps: 1.5 } })).toThrow(/'train\.accum_steps'/);
    expect(() => parseRunConfig({ ...base, train: { steps: 1, ema_decay: 1 } })).toThrow(/'train\.ema_decay'/);
    expect(() => parseRunConfig({ ...base, train: { steps: 1, bce_target_thresh: -0.1 } })).toThrow(/'train\.bce_target_thresh'/);
    expect(() => parseRunConfig({ ...base, train: { steps: 1, bce_target_thresh_on: 'sub' } })).toThrow(/'train\.bce_target_thresh_on'/);
    expect(() => parseRunConfig({ ...base, optimizer: { blr: 0 } })).toThrow(/'optimizer\.blr'/);
    expect(() => parseRunConfig({ ...base, model_config: [1] })).toThrow(/'model_config'/);
    expect(parseRunConfig({ ...base, train: { steps: 1, bce_target_thresh: 0, bce_target_thresh_on: 'main' } }).train.bce_target_thresh).toBe(0);
  });
});

describe('run config num_labels (issue 11)', () => {
  for (const value of [0, -1, 2.5, 'ten']) {
    it(`num_labels: ${JSON.stringify(value)} is an OptionError naming the key`, () => {
      expect(() => parseRunConfig({ ...base, num_labels: value }, 'run.yaml')).toThrow(/option 'num_labels'[\s\S]*run\.yaml: 'num_labels'/);
    });
  }
});
