import 'reflect-metadata';
import { describe, expect, it } from 'vitest';
import { container } from 'tsyringe';
import { adapterFor, listAdapters, registerAdapter, type ArchitectureAdapter } from './registry.js';

const fake = (name: string, modelTypes: string[]): ArchitectureAdapter => ({
  name,
  modelTypes,
  build: () => {
    throw new Error('not built in this test');
  },
});

describe('adapter registry (tsyringe)', () => {
  it('dispatches model_type to the registered adapter, once per name', () => {
    const c = container.createChildContainer();
    registerAdapter(fake('vit', ['vit', 'deit']), c);
    registerAdapter(fake('vit', ['vit']), c); // same name again: ignored
    registerAdapter(fake('bert', ['bert']), c);
    expect(listAdapters(c).map((a) => a.name)).toEqual(['vit', 'bert']);
    expect(adapterFor('deit', 'x/config.json', c).name).toBe('vit');
    expect(adapterFor('bert', 'x/config.json', c).name).toBe('bert');
  });

  it('an unknown or missing model_type names the file and lists what is registered', () => {
    const c = container.createChildContainer();
    expect(() => adapterFor('vit', 'a/config.json', c)).toThrow(/a\/config\.json: no adapter for model_type 'vit'\. Registered: none/);
    registerAdapter(fake('vit', ['vit', 'deit']), c);
    expect(() => adapterFor('convnext', 'a/config.json', c)).toThrow(/'convnext'.*vit \(vit\), deit \(vit\)/);
    expect(() => adapterFor(undefined, 'a/config.json', c)).toThrow(/'\(missing\)'/);
  });
});
