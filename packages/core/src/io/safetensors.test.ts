import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileFormatError } from '../errors.js';
import { describeShared, fixturePath } from '../testing/shared.js';
import {
  float16ToFloat32,
  float32ToBfloat16,
  float32ToFloat16,
  parseSafetensors,
  readSafetensors,
  readSafetensorsMetadata,
  serializeSafetensors,
  writeSafetensors,
} from './safetensors.js';
import type { HostTensor } from './types.js';

const dir = mkdtempSync(join(tmpdir(), 'masksub-st-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Build a file by hand from a header object and a data section, to forge corrupt files. */
function forge(header: unknown, data: Uint8Array, lenOverride?: bigint): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, lenOverride ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

const sample: HostTensor[] = [
  { name: 'b.weight', dtype: 'float32', shape: [2, 3], data: Float32Array.from([1, -2, 3.5, 4, 5, 6e-3]) },
  { name: 'a.half', dtype: 'float16', shape: [4], data: Float32Array.from([1, -0.5, 65504, 6.103515625e-5]) },
  { name: 'a.bf', dtype: 'bfloat16', shape: [2], data: Float32Array.from([1.5, -3]) },
  { name: 'c.idx', dtype: 'int64', shape: [3], data: BigInt64Array.from([0n, -7n, 1n << 40n]) },
  { name: 'd.i32', dtype: 'int32', shape: [1, 2], data: Int32Array.from([-1, 2 ** 30]) },
  { name: 'e.mask', dtype: 'bool', shape: [3], data: Uint8Array.from([1, 0, 1]) },
  { name: 'f.f64', dtype: 'float64', shape: [1], data: Float64Array.from([Math.PI]) },
  { name: 'g.i8', dtype: 'int8', shape: [2], data: Int8Array.from([-128, 127]) },
  { name: 'h.i16', dtype: 'int16', shape: [2], data: Int16Array.from([-300, 300]) },
  { name: 'i.u8', dtype: 'uint8', shape: [2], data: Uint8Array.from([0, 255]) },
  { name: 'j.scalar', dtype: 'float32', shape: [], data: Float32Array.from([42]) },
  { name: 'k.empty', dtype: 'float32', shape: [0, 3], data: new Float32Array(0) },
];

describe('safetensors round trip', () => {
  it('writes and reads back every dtype with values, shapes and stored dtypes', () => {
    const path = join(dir, 'rt.safetensors');
    writeSafetensors(path, sample);
    const back = readSafetensors(path);
    expect(back.size).toBe(sample.length);
    for (const t of sample) {
      const r = back.get(t.name);
      expect(r, t.name).toBeDefined();
      expect(r!.dtype).toBe(t.dtype);
      expect(r!.shape).toEqual(t.shape);
      if (t.dtype === 'float16' || t.dtype === 'bfloat16') expect(r!.data).toBeInstanceOf(Float32Array);
      expect(Array.from(r!.data as ArrayLike<number | bigint>)).toEqual(Array.from(t.data as ArrayLike<number | bigint>));
    }
    expect(readSafetensorsMetadata(path)).toEqual({ format: 'pt' });
  });

  it('pads the header with spaces to a multiple of 8 and sorts tensors by name in the data', () => {
    const bytes = serializeSafetensors(sample, { format: 'pt', note: 'x' });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const headerText = new TextDecoder().decode(bytes.subarray(8, 8 + n));
    expect(headerText.endsWith(' ') || headerText.endsWith('}')).toBe(true);
    const header = JSON.parse(headerText) as Record<string, { data_offsets: [number, number] }>;
    expect(header.__metadata__).toEqual({ format: 'pt', note: 'x' });
    const names = Object.keys(header).filter((k) => k !== '__metadata__');
    const byOffset = [...names].sort((a, b) => header[a].data_offsets[0] - header[b].data_offsets[0] || a.localeCompare(b));
    expect(byOffset.filter((k) => header[k].data_offsets[1] > header[k].data_offsets[0])).toEqual(
      [...names].sort().filter((k) => header[k].data_offsets[1] > header[k].data_offsets[0]),
    );
  });

  it('writes atomically: replaces an existing file and leaves no temp files', () => {
    const path = join(dir, 'atomic.safetensors');
    writeFileSync(path, 'old contents');
    writeSafetensors(path, new Map([['b.weight', sample[0]]]));
    expect(readSafetensors(path).get('b.weight')!.shape).toEqual([2, 3]);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('rejects duplicate names and the reserved __metadata__ name', () => {
    expect(() => serializeSafetensors([sample[0], sample[0]])).toThrow(/'b.weight' appears twice/);
    expect(() => serializeSafetensors([{ ...sample[0], name: '__metadata__' }])).toThrow(/reserved/);
  });

  it('converts halves exactly where representable and rounds to nearest even', () => {
    const vals = Float32Array.from([0, -0, 1, 2.5, 65504, 1e6, -1e6, 5.960464477539063e-8, 1e-9, 1 + 2 ** -11, 1 + 3 * 2 ** -11]);
    const back = float16ToFloat32(float32ToFloat16(vals));
    expect(Array.from(back)).toEqual([0, -0, 1, 2.5, 65504, Infinity, -Infinity, 5.960464477539063e-8, 0, 1, 1 + 2 ** -9]);
    expect(Number.isNaN(float16ToFloat32(float32ToFloat16(Float32Array.from([NaN])))[0])).toBe(true);
    // bf16: 1 + 2^-8 is exactly half way between 1 and 1 + 2^-7 -> rounds to even (1)
    const bf = float32ToBfloat16(Float32Array.from([1 + 2 ** -8, 1 + 3 * 2 ** -8]));
    expect(Array.from(bf)).toEqual([0x3f80, 0x3f82]);
  });
});

describe('safetensors corrupt files', () => {
  const ok = { t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
  const data8 = new Uint8Array(8);
  const parse = (bytes: Uint8Array) => () => parseSafetensors(bytes, 'bad.safetensors');

  it('accepts the well-formed forged file (control)', () => {
    expect(parseSafetensors(forge(ok, data8), 'ok').get('t')!.shape).toEqual([2]);
  });
  it('file shorter than 8 bytes', () => {
    expect(parse(new Uint8Array(5))).toThrow(/bad\.safetensors: .*fewer than the 8-byte/);
  });
  it('header length beyond the file', () => {
    expect(parse(forge(ok, data8, 10_000n))).toThrow(FileFormatError);
    expect(parse(forge(ok, data8, 10_000n))).toThrow(/header length 10000 exceeds/);
  });
  it('header that is not JSON', () => {
    const bytes = forge(ok, data8);
    bytes[8] = 0x7a; // '{' -> 'z'
    expect(parse(bytes)).toThrow(/bad\.safetensors: .*not valid UTF-8 JSON/);
  });
  it('unknown dtype names the tensor', () => {
    expect(parse(forge({ w: { dtype: 'F8_E4M3', shape: [8], data_offsets: [0, 8] } }, data8))).toThrow(/tensor 'w': unknown dtype "F8_E4M3"/);
  });
  it('byte length not matching numel * itemsize', () => {
    expect(parse(forge({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, data8))).toThrow(/tensor 'w': holds 8 bytes but F32\[3\] needs 12/);
  });
  it('offsets beyond the data section (truncated data)', () => {
    expect(parse(forge({ w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, data8))).toThrow(/tensor 'w': .*reach past the 8-byte data section/);
  });
  it('overlapping tensors', () => {
    const h = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } };
    expect(parse(forge(h, data8))).toThrow(/'a' .* and 'b' .* overlap/);
  });
  it('bad shape and bad offsets', () => {
    expect(parse(forge({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 8] } }, data8))).toThrow(/tensor 'w': shape/);
    expect(parse(forge({ w: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, data8))).toThrow(/tensor 'w': data_offsets/);
  });
  it('truncated real file on disk names the path', () => {
    const path = join(dir, 'trunc.safetensors');
    const full = serializeSafetensors(sample);
    writeFileSync(path, full.subarray(0, full.length - 3));
    expect(() => readSafetensors(path)).toThrow(new RegExp(`${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: .*reach past`));
  });
  it('missing file', () => {
    expect(() => readSafetensors(join(dir, 'nope.safetensors'))).toThrow(/nope\.safetensors: cannot read file/);
  });
});

describeShared('fixtures/hf-tiny/vit', 'safetensors on a real hub checkpoint', () => {
  it('reads the vit fixture and re-serialises it byte-stably', () => {
    const path = fixturePath('vit', 'model.safetensors');
    const m = readSafetensors(path);
    const q = m.get('vit.encoder.layer.0.attention.attention.query.weight');
    expect(q).toBeDefined();
    expect(q!.dtype).toBe('float32');
    expect(q!.shape.length).toBe(2);
    const out = join(dir, 'vit.safetensors');
    writeSafetensors(out, m);
    const back = readSafetensors(out);
    expect([...back.keys()].sort()).toEqual([...m.keys()].sort());
    for (const [k, t] of m) expect(Array.from(back.get(k)!.data as Float32Array)).toEqual(Array.from(t.data as Float32Array));
    expect(readFileSync(out).length).toBeGreaterThan(0);
  });
});

describe('writeSafetensors streams (files over 2 GiB)', () => {
  const big = (name: string, n: number, dtype: 'float32' | 'float16' | 'int64' = 'float32') => ({
    name,
    dtype,
    shape: [n],
    data: dtype === 'int64' ? BigInt64Array.from({ length: n }, (_, i) => BigInt(i * 3 - 7)) : Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 100),
  });
  const tensors = [big('b.weight', 1000), big('a.half', 301, 'float16'), big('c.count', 33, 'int64')];

  it('with a 256-byte buffer limit, serializeSafetensors refuses and writeSafetensors still writes the same bytes', () => {
    const dir = mkdtempSync(join(tmpdir(), 'masksub-stream-'));
    try {
      expect(() => serializeSafetensors(tensors, { format: 'pt' }, 'm.safetensors', 256)).toThrow(/m\.safetensors: \d+ bytes are more than one 256-byte buffer holds; write the file with writeSafetensors/);
      const path = join(dir, 'm.safetensors');
      // every write at most 256 bytes: the 4000-byte tensor goes out in 16 slices
      writeSafetensors(path, tensors, { format: 'pt' }, { chunkBytes: 256 });
      expect(new Uint8Array(readFileSync(path))).toEqual(serializeSafetensors(tensors));
      const back = readSafetensors(path);
      expect(Array.from(back.get('b.weight')!.data as Float32Array)).toEqual(Array.from(tensors[0].data as Float32Array));
      expect(Array.from(back.get('c.count')!.data as BigInt64Array)).toEqual(Array.from(tensors[2].data as BigInt64Array));
      expect(readdirSync(dir)).toEqual(['m.safetensors']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names the tensor whose values do not fill its shape before writing anything', () => {
    const dir = mkdtempSync(join(tmpdir(), 'masksub-stream-'));
    try {
      const bad = [{ name: 'short', dtype: 'float32' as const, shape: [4], data: new Float32Array(3) }];
      expect(() => writeSafetensors(join(dir, 'x.safetensors'), bad)).toThrow(/x\.safetensors: tensor 'short': 3 values do not fill shape \[4\]/);
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
