import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BACKEND_NAMES, LOSS_KINDS, MASK_DROP_KINDS, VARIANTS } from '@masksub/core';
import { parseRunConfig, readConfigFile, runConfigSchema, setPath } from './config.js';

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
