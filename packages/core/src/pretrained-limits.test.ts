import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileFormatError } from './errors.js';
import { serializeSafetensors } from './io/safetensors.js';
import type { HostTensor } from './io/types.js';
import { ParameterStore } from './model.js';
import { buildFromConfig, loadPretrained } from './pretrained.js';
import { registerAdapter, type AdapterModel, type HFConfig } from './registry.js';

/** A one-matrix adapter: [hidden_size, 4] weight, plus one bias per layer. */
registerAdapter({
  name: 'limits-toy',
  modelTypes: ['limits-toy'],
  build(config: HFConfig, options) {
    const hidden = config.hidden_size as number;
    const layers = config.num_hidden_layers as number;
    const specs = [
      { name: 'w', shape: [hidden, 4], layout: 'identity' as const, init: 'zeros' as const },
      ...Array.from({ length: layers }, (_, i) => ({ name: `b${i}`, shape: [4], layout: 'identity' as const, init: 'zeros' as const })),
    ];
    const params = new ParameterStore(specs, options!.rng!);
    return { params, config, dispose: () => params.dispose() } as unknown as AdapterModel;
  },
});

const root = mkdtempSync(join(tmpdir(), 'masksub-limits-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function folder(name: string, config: Record<string, unknown>, tensors: HostTensor[]): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'limits-toy', ...config }));
  writeFileSync(join(dir, 'model.safetensors'), serializeSafetensors(tensors));
  return dir;
}
const f32 = (name: string, shape: number[], values?: number[]): HostTensor => ({
  name,
  dtype: 'float32',
  shape,
  data: Float32Array.from(values ?? new Array(shape.reduce((a, b) => a * b, 1)).fill(0.5)),
});
const quiet = { log: () => {} };

describe('config sizes are checked against the weights before allocating', () => {
  it('loads a consistent folder', async () => {
    const dir = folder('ok', { hidden_size: 2, num_hidden_layers: 1 }, [f32('w', [2, 4]), f32('b0', [4])]);
    const { model } = await loadPretrained(dir, quiet);
    expect(model.params.count()).toBe(12);
    model.dispose();
  });
  it('hidden_size: 1e9 is refused up front, naming the key and the weights file', async () => {
    const dir = folder('huge', { hidden_size: 1e9, num_hidden_layers: 1 }, [f32('w', [2, 4]), f32('b0', [4])]);
    const err = await loadPretrained(dir, quiet).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FileFormatError);
    expect((err as Error).message).toMatch(/config\.json: the config implies 4\.00e\+9 parameters \(largest: 'w' \[1000000000,4\], from hidden_size=1000000000\) but .*model\.safetensors holds 12 values/);
  });
  it('num_hidden_layers: 1e6 is refused before the adapter builds its specs', async () => {
    const dir = folder('deep', { hidden_size: 2, num_hidden_layers: 1e6 }, [f32('w', [2, 4])]);
    await expect(loadPretrained(dir, quiet)).rejects.toThrow(/config\.json: 'num_hidden_layers' is 1000000: more than 1000 layers/);
    expect(() => buildFromConfig({ model_type: 'limits-toy', hidden_size: 2, text_config: { num_hidden_layers: 5000 } })).toThrow(/'text_config\.num_hidden_layers' is 5000/);
  });
  it('a config-only model is capped by the 4 GiB wasm heap, naming the key', () => {
    expect(() => buildFromConfig({ model_type: 'limits-toy', hidden_size: 3e8, num_hidden_layers: 1 })).toThrow(
      /config: the config implies 1\.20e\+9 parameters \(largest: 'w' \[300000000,4\], from hidden_size=300000000\), more than the 1073741824 float32 values/,
    );
  });
});

describe('weights that would load silently wrong are refused', () => {
  it('NaN/Inf weights, naming every tensor', async () => {
    const dir = folder('nan', { hidden_size: 2, num_hidden_layers: 1 }, [f32('w', [2, 4], [0, NaN, 1, 1, 1, Infinity, 1, 1]), f32('b0', [4], [1, 1, -Infinity, 1])]);
    const err = (await loadPretrained(dir, quiet).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(FileFormatError);
    expect(err.message).toContain("tensor 'w': 2 of 8 values are NaN or infinite");
    expect(err.message).toContain("tensor 'b0': 1 of 4 values are NaN or infinite");
  });
  it('an integer tensor for a float parameter (F32 bytes labelled I32)', async () => {
    const i32: HostTensor = { name: 'b0', dtype: 'int32', shape: [4], data: new Int32Array(new Float32Array([1, 2, 3, 4]).buffer) };
    const dir = folder('int', { hidden_size: 2, num_hidden_layers: 1 }, [f32('w', [2, 4]), i32]);
    await expect(loadPretrained(dir, quiet)).rejects.toThrow(/tensor 'b0': stored as int32, but the parameter is floating point/);
  });
});

describe('class counts (issue 11: num_labels 0, negative, fractional, not a number)', () => {
  for (const [key, value] of [['num_labels', 0], ['num_labels', -3], ['num_labels', 2.5], ['num_labels', '10'], ['num_classes', 0], ['id2label', {}]] as const) {
    it(`${key}: ${JSON.stringify(value)} in config.json is an error naming the key`, async () => {
      const dir = folder(`labels-${key}-${JSON.stringify(value)}`, { hidden_size: 2, num_hidden_layers: 1, [key]: value }, [f32('w', [2, 4]), f32('b0', [4])]);
      const load = loadPretrained(dir, { log: () => {} });
      await expect(load).rejects.toThrow(FileFormatError);
      await expect(loadPretrained(dir, { log: () => {} })).rejects.toThrow(new RegExp(`config\\.json: '${key}' (gives|is)`));
      expect(() => buildFromConfig(join(dir, 'config.json'))).toThrow(new RegExp(`'${key}'`));
    });
  }
});
