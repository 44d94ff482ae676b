/**
 * The `.pth` writer (serializePth) read back by the project's reader, and the legacy
 * (`_use_new_zipfile_serialization=False`) stream format built byte for byte as torch 1.13
 * writes it (magic, protocol, sys_info, the state dict pickle, the storage key list, then each
 * storage as an int64 element count and its raw bytes).
 */
import { describe, expect, it } from 'vitest';
import { FileFormatError } from '../errors.js';
import { parsePth } from './pth.js';
import { serializePth } from './pth-write.js';
import type { HostTensor, TensorMap } from './types.js';

const f32 = (name: string, shape: number[], values: number[]): HostTensor => ({ name, dtype: 'float32', shape, data: Float32Array.from(values) });
const values = (t: HostTensor | undefined) => Array.from(t?.data as ArrayLike<number | bigint>);

describe('serializePth', () => {
  const tensors: TensorMap = new Map([
    ['blocks.0.gamma_1', f32('blocks.0.gamma_1', [4], [1e-6, -2, 3.5, 0])],
    ['head.weight', f32('head.weight', [2, 3], [1, 2, 3, 4, 5, 6])],
    ['scalar', f32('scalar', [], [7.25])],
    ['bn1.num_batches_tracked', { name: 'bn1.num_batches_tracked', dtype: 'int64', shape: [], data: new BigInt64Array([12345678901n]) }],
  ]);

  it('writes a zip checkpoint the reader gives back tensor for tensor (bare state dict)', () => {
    const r = parsePth(serializePth(tensors));
    expect(r.format).toBe('zip');
    expect(r.path).toEqual([]);
    expect([...r.tensors.keys()]).toEqual([...tensors.keys()]);
    for (const [name, t] of tensors) {
      const back = r.tensors.get(name);
      expect([back?.dtype, back?.shape]).toEqual([t.dtype, t.shape]);
      expect(values(back)).toEqual(values(t));
    }
  });

  it("nests the state dict under 'model' (the official DeiT layout) or 'state_dict'", () => {
    expect(parsePth(serializePth(tensors, { wrapIn: 'model' })).path).toEqual(['model']);
    const nested = parsePth(serializePth(tensors, { wrapIn: ['state_dict'] }));
    expect(nested.path).toEqual(['state_dict']);
    expect(values(nested.tensors.get('head.weight'))).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('aligns every entry to 64 bytes and names a dtype it cannot write', () => {
    const bytes = serializePth(tensors);
    // local headers: data starts at header + 30 + name + extra; torch aligns it to 64
    let pos = 0;
    let entries = 0;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    while (view.getUint32(pos, true) === 0x04034b50) {
      const start = pos + 30 + view.getUint16(pos + 26, true) + view.getUint16(pos + 28, true);
      expect(start % 64).toBe(0);
      pos = start + view.getUint32(pos + 18, true);
      entries++;
    }
    expect(entries).toBe(tensors.size + 3); // data.pkl, byteorder, version
    const bad: TensorMap = new Map([['x', { name: 'x', dtype: 'bool', shape: [1], data: new Uint8Array([1]) }]]);
    expect(() => serializePth(bad, {}, 'out.pth')).toThrow(FileFormatError);
    expect(() => serializePth(bad, {}, 'out.pth')).toThrow(/tensor 'x': bool/);
  });
});

// ------------------------------------------------------------ legacy stream, as torch 1.13 writes it

const enc = new TextEncoder();
const u32 = (n: number) => [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >>> 24) & 0xff];
const str = (s: string) => [0x58, ...u32(enc.encode(s).length), ...enc.encode(s)];
const glob = (m: string, n: string) => [0x63, ...enc.encode(`${m}\n${n}\n`)];
const int1 = (n: number) => [0x4b, n];
const PROTO = [0x80, 2];
const STOP = [0x2e];

/** torch.save(sd, f, _use_new_zipfile_serialization=False) for small float32 tensors. */
function legacyBytes(entries: [name: string, shape: number[], data: number[]][]): Uint8Array {
  // magic 0x1950a86a20f9469cfc6c as LONG1, protocol 1001 as BININT2, sys_info
  const magic = [...PROTO, 0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, ...STOP];
  const proto = [...PROTO, 0x4d, 0xe9, 0x03, ...STOP];
  const sysInfo = [
    ...PROTO, 0x7d, 0x28,
    ...str('protocol_version'), 0x4d, 0xe9, 0x03,
    ...str('little_endian'), 0x88,
    ...str('type_sizes'), 0x7d, 0x28, ...str('short'), ...int1(2), ...str('int'), ...int1(4), ...str('long'), ...int1(4), 0x75,
    0x75, ...STOP,
  ];
  const main = [...PROTO, ...glob('collections', 'OrderedDict'), 0x29, 0x52, 0x28];
  entries.forEach(([name, shape, data], i) => {
    const stride = shape.map((_, d) => shape.slice(d + 1).reduce((a, b) => a * b, 1));
    main.push(...str(name), ...glob('torch._utils', '_rebuild_tensor_v2'), 0x28);
    main.push(0x28, ...str('storage'), ...glob('torch', 'FloatStorage'), ...str(`9400${i}`), ...str('cpu'), ...int1(data.length), 0x4e, 0x74, 0x51);
    main.push(...int1(0), 0x28, ...shape.flatMap(int1), 0x74, 0x28, ...stride.flatMap(int1), 0x74, 0x89);
    main.push(...glob('collections', 'OrderedDict'), 0x29, 0x52, 0x74, 0x52);
  });
  main.push(0x75, ...STOP);
  const keys = [...PROTO, 0x5d, 0x28, ...entries.flatMap((_, i) => str(`9400${i}`)), 0x65, ...STOP];
  const blobs = entries.flatMap(([, , data]) => {
    const count = new Uint8Array(new BigInt64Array([BigInt(data.length)]).buffer);
    return [...count, ...new Uint8Array(Float32Array.from(data).buffer)];
  });
  return Uint8Array.from([...magic, ...proto, ...sysInfo, ...main, ...keys, ...blobs]);
}

describe('legacy (non-zip) .pth', () => {
  it('reads the state dict of the pre-1.6 stream format', () => {
    const r = parsePth(legacyBytes([['conv.weight', [2, 3], [0, 1, 2, 3, 4, 5.5]], ['fc.bias', [2], [-1, 1e-7]]]), 'legacy.pth');
    expect(r.format).toBe('legacy');
    expect([...r.tensors.keys()]).toEqual(['conv.weight', 'fc.bias']);
    expect(r.tensors.get('conv.weight')?.shape).toEqual([2, 3]);
    expect(values(r.tensors.get('conv.weight'))).toEqual([0, 1, 2, 3, 4, 5.5]);
    expect(values(r.tensors.get('fc.bias'))).toEqual([-1, Math.fround(1e-7)]);
  });

  it('names the storage of a truncated legacy file', () => {
    const bytes = legacyBytes([['w', [4], [1, 2, 3, 4]]]);
    expect(() => parsePth(bytes.subarray(0, bytes.length - 5), 'cut.pth')).toThrow(/cut\.pth.*legacy storage '94000'/s);
  });
});
