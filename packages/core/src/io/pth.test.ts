import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MaskSubError } from '../errors.js';
import { describeShared, sharedPath } from '../testing/shared.js';
import { ForbiddenGlobalError } from './pickle.js';
import { parsePth, readPth } from './pth.js';
import { locateWeights } from './hf-folder.js';
import { formatInspectReport, inspectCheckpoint } from './inspect.js';
import { readSafetensors } from './safetensors.js';

// ------------------------------------------------------------ a tiny pickle + zip writer for tests

const enc = new TextEncoder();
type Op = number[] | Uint8Array;
const P = {
  proto: [0x80, 2],
  stop: [0x2e],
  mark: [0x28],
  emptyDict: [0x7d],
  emptyTuple: [0x29],
  tuple: [0x74],
  setitems: [0x75],
  setitem: [0x73],
  reduce: [0x52],
  binpersid: [0x51],
  newfalse: [0x89],
  int1: (n: number) => [0x4b, n],
  str: (s: string) => {
    const b = enc.encode(s);
    return [0x58, b.length & 0xff, (b.length >> 8) & 0xff, 0, 0, ...b];
  },
  global: (m: string, n: string) => [0x63, ...enc.encode(`${m}\n${n}\n`)],
};
const cat = (ops: Op[]): Uint8Array => Uint8Array.from(ops.flatMap((o) => [...o]));
const tup = (...items: Op[]): Op[] => [P.mark, ...items, P.tuple];

/** `_rebuild_tensor_v2(storage(key, type, numel), offset, size, stride, False, OrderedDict())`. */
function tensorOps(key: string, type: string, count: number, offset: number, size: number[], stride: number[]): Op[] {
  return [
    P.global('torch._utils', '_rebuild_tensor_v2'),
    P.mark,
    ...tup(P.str('storage'), P.global('torch', type), P.str(key), P.str('cpu'), P.int1(count)),
    P.binpersid,
    P.int1(offset),
    ...tup(...size.map(P.int1)),
    ...tup(...stride.map(P.int1)),
    P.newfalse,
    P.global('collections', 'OrderedDict'),
    P.emptyTuple,
    P.reduce,
    P.tuple,
    P.reduce,
  ];
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();
function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) c = (CRC_TABLE[(c ^ x) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A stored (uncompressed) zip, as torch.save writes. */
function zip(files: Record<string, Uint8Array>): Uint8Array {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const [name, data] of Object.entries(files)) {
    const n = enc.encode(name);
    const local = new DataView(new ArrayBuffer(30));
    local.setUint32(0, 0x04034b50, true);
    local.setUint32(14, crc32(data), true);
    local.setUint32(18, data.length, true);
    local.setUint32(22, data.length, true);
    local.setUint16(26, n.length, true);
    const c = new DataView(new ArrayBuffer(46));
    c.setUint32(0, 0x02014b50, true);
    c.setUint32(16, crc32(data), true);
    c.setUint32(20, data.length, true);
    c.setUint32(24, data.length, true);
    c.setUint16(28, n.length, true);
    c.setUint32(42, offset, true);
    parts.push(new Uint8Array(local.buffer), n, data);
    central.push(new Uint8Array(c.buffer), n);
    offset += 30 + n.length + data.length;
  }
  const cdSize = central.reduce((a, b) => a + b.length, 0);
  const eocd = new DataView(new ArrayBuffer(22));
  eocd.setUint32(0, 0x06054b50, true);
  eocd.setUint16(8, Object.keys(files).length, true);
  eocd.setUint16(10, Object.keys(files).length, true);
  eocd.setUint32(12, cdSize, true);
  eocd.setUint32(16, offset, true);
  const all = [...parts, ...central, new Uint8Array(eocd.buffer)];
  const out = new Uint8Array(all.reduce((a, b) => a + b.length, 0));
  let p = 0;
  for (const a of all) {
    out.set(a, p);
    p += a.length;
  }
  return out;
}

function checkpoint(pickle: Uint8Array, storages: Record<string, Uint8Array> = {}): Uint8Array {
  const files: Record<string, Uint8Array> = { 'archive/data.pkl': pickle };
  for (const [k, v] of Object.entries(storages)) files[`archive/data/${k}`] = v;
  return zip(files);
}

const f32 = (...v: number[]) => new Uint8Array(new Float32Array(v).buffer);

describe('readPth: hand-built checkpoints', () => {
  it('gathers a transposed (non-contiguous) view and an offset view of one shared storage', () => {
    // storage 0 = [0..5]; 'a' = storage viewed as [3,2] contiguous, 'b' = its transpose [2,3]
    // (stride [1,2]), 'c' = elements 4..5 through a storage offset.
    const pickle = cat([
      P.proto,
      P.global('collections', 'OrderedDict'),
      P.emptyTuple,
      P.reduce,
      P.mark,
      P.str('a'),
      ...tensorOps('0', 'FloatStorage', 6, 0, [3, 2], [2, 1]),
      P.str('b'),
      ...tensorOps('0', 'FloatStorage', 6, 0, [2, 3], [1, 2]),
      P.str('c'),
      ...tensorOps('0', 'FloatStorage', 6, 4, [2], [1]),
      P.setitems,
      P.stop,
    ]);
    const r = parsePth(checkpoint(pickle, { '0': f32(0, 1, 2, 3, 4, 5) }), 'views.pth');
    expect(r.format).toBe('zip');
    expect([...(r.tensors.get('a')?.data ?? [])]).toEqual([0, 1, 2, 3, 4, 5]);
    expect(r.tensors.get('b')?.shape).toEqual([2, 3]);
    expect([...(r.tensors.get('b')?.data ?? [])]).toEqual([0, 2, 4, 1, 3, 5]);
    expect([...(r.tensors.get('c')?.data ?? [])]).toEqual([4, 5]);
  });

  it("finds the state dict under 'model' and strips a DataParallel 'module.' prefix", () => {
    const pickle = cat([
      P.proto,
      P.emptyDict,
      P.mark,
      P.str('model'),
      P.emptyDict,
      P.mark,
      P.str('module.w'),
      ...tensorOps('0', 'LongStorage', 1, 0, [], []),
      P.setitems,
      P.str('epoch'),
      P.int1(7),
      P.setitems,
      P.stop,
    ]);
    const r = parsePth(checkpoint(pickle, { '0': new Uint8Array(new BigInt64Array([42n]).buffer) }), 'nested.pth');
    expect(r.path).toEqual(['model']);
    expect(r.strippedPrefix).toBe('module.');
    expect(r.skipped).toEqual(['epoch']);
    const w = r.tensors.get('w');
    expect(w?.dtype).toBe('int64');
    expect(w?.shape).toEqual([]);
    expect(w?.data[0]).toBe(42n);
  });

  it('refuses os.system, naming it, before calling anything', () => {
    const pickle = cat([P.proto, P.global('os', 'system'), ...tup(P.str('echo pwned')), P.reduce, P.stop]);
    const run = () => parsePth(checkpoint(pickle), 'evil.pth');
    expect(run).toThrow(ForbiddenGlobalError);
    expect(run).toThrow(/'os\.system'/);
    expect(run).toThrow(/evil\.pth/);
  });

  it('refuses builtins.eval through STACK_GLOBAL and other modules of torch', () => {
    const stackGlobal = cat([P.proto, P.str('builtins'), P.str('eval'), [0x93], ...tup(P.str('1')), P.reduce, P.stop]);
    expect(() => parsePth(checkpoint(stackGlobal), 'e.pth')).toThrow(/'builtins\.eval'/);
    const torchLoad = cat([P.proto, P.global('torch', 'load'), P.stop]);
    expect(() => parsePth(checkpoint(torchLoad), 't.pth')).toThrow(/'torch\.load'/);
    expect(() => parsePth(checkpoint(cat([P.proto, [0x69], enc.encode('os\nsystem\n'), P.stop])), 'i.pth')).toThrow(/INST/);
  });

  it('refuses a view that reaches past its storage', () => {
    const pickle = cat([P.proto, P.emptyDict, P.str('w'), ...tensorOps('0', 'FloatStorage', 4, 2, [2, 2], [2, 1]), P.setitem, P.stop]);
    expect(() => parsePth(checkpoint(pickle, { '0': f32(1, 2, 3, 4) }), 'oob.pth')).toThrow(/tensor 'w'.*reaches element 5/);
  });

  it('reports a missing storage record and a file that is not a checkpoint', () => {
    const pickle = cat([P.proto, P.emptyDict, P.str('w'), ...tensorOps('9', 'FloatStorage', 1, 0, [1], [1]), P.setitem, P.stop]);
    expect(() => parsePth(checkpoint(pickle), 'gone.pth')).toThrow(/storage '9' is missing/);
    expect(() => parsePth(enc.encode('hello'), 'x.pth')).toThrow(/not a \.pth\/\.bin checkpoint/);
    expect(() => parsePth(zip({ 'a.txt': enc.encode('x') }), 'z.pth')).toThrow(/data\.pkl/);
  });

  it('fuzz: arbitrary and mutated bytes give a MaskSubError or a result, never a crash', () => {
    const good = checkpoint(
      cat([P.proto, P.emptyDict, P.mark, P.str('w'), ...tensorOps('0', 'FloatStorage', 6, 0, [2, 3], [1, 2]), P.setitems, P.stop]),
      { '0': f32(0, 1, 2, 3, 4, 5) },
    );
    const check = (bytes: Uint8Array) => {
      try {
        const r = parsePth(bytes, 'fuzz.pth');
        for (const t of r.tensors.values()) expect(t.data.length).toBe(t.shape.reduce((a, b) => a * b, 1));
      } catch (e) {
        if (!(e instanceof MaskSubError)) throw e;
      }
    };
    fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), (b) => check(b)), { seed: 14, numRuns: 300 });
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(good.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), (edits) => {
        const b = good.slice();
        for (const [i, v] of edits) b[i] = v;
        check(b);
      }),
      { seed: 14, numRuns: 400 },
    );
    // truncations of the archive
    fc.assert(fc.property(fc.nat(good.length), (n) => check(good.slice(0, n))), { seed: 14, numRuns: 200 });
  });
});

describeShared('fixtures/zoo-layouts', 'readPth: zoo-layouts fixtures', () => {
  const dir = sharedPath('fixtures/zoo-layouts');

  it('deit3/checkpoint.pth (official {model, epoch}) holds the safetensors copy under official names', () => {
    const r = readPth(join(dir, 'deit3/checkpoint.pth'));
    expect(r.path).toEqual(['model']);
    expect(r.skipped).toEqual(['epoch']);
    const st = readSafetensors(join(dir, 'deit3/model.safetensors'));
    const official = (name: string) => name.replace(/\.ls1\.gamma$/, '.gamma_1').replace(/\.ls2\.gamma$/, '.gamma_2');
    expect(r.tensors.size).toBe(st.size);
    for (const [name, t] of st) {
      const p = r.tensors.get(official(name));
      expect(p, name).toBeDefined();
      expect(p?.shape, name).toEqual(t.shape);
      expect(p?.data, name).toEqual(t.data);
    }
  });

  it('resnet-torchvision/pytorch_model.pth: a bare state dict with int64 num_batches_tracked', () => {
    const r = readPth(join(dir, 'resnet-torchvision/pytorch_model.pth'));
    expect(r.path).toEqual([]);
    const nbt = r.tensors.get('bn1.num_batches_tracked');
    expect(nbt?.dtype).toBe('int64');
    expect(nbt?.shape).toEqual([]);
    expect(r.tensors.get('conv1.weight')?.shape).toEqual([16, 3, 7, 7]);
    expect(r.tensors.get('fc.weight')?.dtype).toBe('float32');
  });

  it('folders: a lone .pth is found as the weights; inspect shows a nested state dict', () => {
    const resnet = locateWeights(join(dir, 'resnet-torchvision'));
    expect(resnet.format).toBe('pth');
    expect(resnet.weightsPath.endsWith('pytorch_model.pth')).toBe(true);
    const report = inspectCheckpoint(join(dir, 'deit3/checkpoint.pth'));
    expect(report.format).toBe('pth');
    expect(report.tensors.map((t) => t.name)).toContain('blocks.0.gamma_1');
    const text = formatInspectReport(report);
    expect(text).toMatch(/nested-state-dict\] state dict found under 'model'; not read: epoch/);
  });
});
