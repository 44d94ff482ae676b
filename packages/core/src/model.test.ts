import { describe, expect, it } from 'vitest';
import { ParameterStore, internalShape, toCheckpoint, toInternal, type ParamSpec } from './model.js';
import { toFloat32 } from './io/types.js';
import { Rng } from './rng.js';
import { tf } from './tf.js';

describe('parameter layouts', () => {
  const cases: ParamSpec[] = [
    { name: 'lin', shape: [3, 5], layout: 'linear', init: 'zeros' },
    { name: 'patch', shape: [4, 3, 2, 2], layout: 'patch-linear', init: 'zeros' },
    { name: 'conv', shape: [4, 3, 3, 2], layout: 'conv-hwio', init: 'zeros' },
    { name: 'id', shape: [2, 3], layout: 'identity', init: 'zeros' },
  ];
  for (const spec of cases) {
    it(`${spec.layout}: round trip and the element mapping`, () => {
      const n = spec.shape.reduce((a, b) => a * b, 1);
      const data = Float32Array.from({ length: n }, (_, i) => i);
      const inner = toInternal(spec, data);
      expect(inner.length).toBe(n);
      expect(Array.from(toCheckpoint(spec, inner))).toEqual(Array.from(data));
      const t = tf.tensor(inner, internalShape(spec)).arraySync() as number[][];
      if (spec.layout === 'linear') expect(t[4][2]).toBe(2 * 5 + 4); // W[out=2,in=4] at [in=4][out=2]
      if (spec.layout === 'patch-linear') expect(t[1 * 4 + 0 * 2 + 1][3]).toBe(3 * 12 + 1 * 4 + 0 * 2 + 1); // [d=3,c=1,h=0,w=1]
      if (spec.layout === 'conv-hwio') expect((t as unknown as number[][][][])[2][1][0][3]).toBe(3 * 18 + 0 * 6 + 2 * 2 + 1); // [o=3,i=0,kh=2,kw=1]
    });
  }

  it('load reports every missing, unexpected and wrongly shaped tensor at once', () => {
    const store = new ParameterStore(
      [
        { name: 'a', shape: [2], layout: 'identity', init: 'ones' },
        { name: 'b', shape: [2, 2], layout: 'linear', init: 'zeros' },
        { name: 'tok', shape: [1, 2], layout: 'identity', init: { normal: 1 }, optional: true },
      ],
      new Rng(1),
    );
    const host = (name: string, shape: number[]) => ({ name, dtype: 'float32' as const, shape, data: new Float32Array(shape.reduce((x, y) => x * y, 1)) });
    const bad = new Map([['b', host('b', [3, 2])], ['extra', host('extra', [1])]]);
    expect(() => store.load(bad, 'w.safetensors')).toThrow(/w\.safetensors[\s\S]*missing: a[\s\S]*unexpected.*extra[\s\S]*wrong shape: b expected \[2,2\] found \[3,2\]/);
    const good = new Map([['a', host('a', [2])], ['b', { ...host('b', [2, 2]), data: Float32Array.from([1, 2, 3, 4]) }]]);
    expect(store.load(good, 'w').created).toEqual(['tok']);
    expect(Array.from(toFloat32(store.export().get('b')!))).toEqual([1, 2, 3, 4]);
    for (const v of store.variables.values()) v.dispose();
  });
});

describe('ParameterStore', () => {
  it('holds one copy of each parameter: reassigning every variable frees the initial values', async () => {
    await tf.setBackend('cpu');
    const specs: ParamSpec[] = [
      { name: 'w', shape: [4, 8], layout: 'linear', init: { normal: 0.02 } },
      { name: 'b', shape: [8], layout: 'identity', init: 'zeros' },
    ];
    const bytes = 4 * (4 * 8 + 8);
    const before = tf.memory();
    const store = new ParameterStore(specs, new Rng(0));
    expect(tf.memory().numBytes - before.numBytes).toBe(bytes);
    // What an optimizer update or a checkpoint load does to every parameter.
    for (const v of store.variables.values()) tf.tidy(() => v.assign(tf.add(v, 1)));
    expect(tf.memory().numBytes - before.numBytes).toBe(bytes);
    expect(tf.memory().numTensors - before.numTensors).toBe(specs.length);
    for (const v of store.variables.values()) v.dispose();
  });
});

describe('ParameterStore.replaceSpecs', () => {
  it('disposes parameters that leave, creates new ones from values or zeros, keeps the rest', async () => {
    await tf.setBackend('cpu');
    const a: ParamSpec = { name: 'a', shape: [2], layout: 'identity', init: 'ones' };
    const b: ParamSpec = { name: 'b', shape: [2], layout: 'identity', init: 'ones' };
    const c: ParamSpec = { name: 'c', shape: [2], layout: 'identity', init: 'zeros' };
    const d: ParamSpec = { name: 'd', shape: [2, 3], layout: 'linear', init: 'zeros', trainable: false };
    const store = new ParameterStore([a, b], new Rng(0));
    const before = tf.memory().numTensors;
    const keptVariable = store.get('a');
    store.replaceSpecs([a, c, d], (name) => (name === 'c' ? Float32Array.of(5, 6) : name === 'd' ? Float32Array.from([1, 2, 3, 4, 5, 6]) : undefined));
    expect([...store.specs.keys()]).toEqual(['a', 'c', 'd']);
    expect(store.has('b')).toBe(false);
    expect(store.get('a')).toBe(keptVariable);
    expect(Array.from(store.get('a').dataSync())).toEqual([1, 1]);
    expect(Array.from(store.get('c').dataSync())).toEqual([5, 6]);
    // 'linear' is stored [in, out]: the checkpoint's [out=2, in=3] arrives transposed.
    expect(store.get('d').shape).toEqual([3, 2]);
    expect([...store.trainable().keys()]).toEqual(['a', 'c']);
    // count() has every element (the non-trainable d's 6 too); countTrainable() as torch's m.parameters().
    expect(store.count()).toBe(10);
    expect(store.countTrainable()).toBe(4);
    expect(tf.memory().numTensors).toBe(before + 1); // b gone, c and d new
    store.replaceSpecs([a, c, d], (name) => (name === 'a' ? Float32Array.of(7, 8) : undefined));
    expect(Array.from(store.get('a').dataSync())).toEqual([7, 8]);
    expect(Array.from(store.get('c').dataSync())).toEqual([5, 6]);
    for (const v of store.variables.values()) v.dispose();
  });
});
