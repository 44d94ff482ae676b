import { closeSync, mkdtempSync, openSync, rmSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileFormatError } from '../errors.js';
import { readSafetensors, readSafetensorsMetadata } from './safetensors.js';

const dir = mkdtempSync(join(tmpdir(), 'masksub-st-hostile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function headerBytes(headerText: string): Uint8Array {
  const json = new TextEncoder().encode(headerText);
  const out = new Uint8Array(8 + json.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

describe('safetensors: hostile headers', () => {
  it('a tensor name twice in the header is refused (JSON.parse would keep the last silently)', () => {
    const p = join(dir, 'dup.safetensors');
    const text = '{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}, "w" :{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"x\\"y":{"dtype":"U8","shape":[0],"data_offsets":[8,8]}}';
    writeFileSync(p, Buffer.concat([headerBytes(text), Buffer.alloc(8)]));
    expect(() => readSafetensors(p)).toThrow(FileFormatError);
    expect(() => readSafetensors(p)).toThrow(/dup\.safetensors: not a valid safetensors file: tensor name\(s\) 'w' appear more than once/);
  });
  it('nested keys of the same name are not duplicates', () => {
    const p = join(dir, 'nested.safetensors');
    const text = '{"__metadata__":{"dtype":"x"},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}';
    writeFileSync(p, Buffer.concat([headerBytes(text), Buffer.from(new Float32Array([2]).buffer)]));
    expect(readSafetensors(p).get('w')!.data).toEqual(new Float32Array([2]));
    expect(readSafetensorsMetadata(p)).toEqual({ dtype: 'x' });
  });
  it('a folder is a clear error', () => {
    expect(() => readSafetensors(dir)).toThrow(/cannot read file/);
  });
});

describe('safetensors over 2 GiB (sparse file)', () => {
  it('reads the header, then each tensor at its offset, without reading the whole file', () => {
    const p = join(dir, 'big.safetensors');
    const offset = 2 ** 31 + 4096; // past what one Node buffer (readFileSync) can hold
    const text = JSON.stringify({
      __metadata__: { format: 'pt' },
      small: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      far: { dtype: 'F32', shape: [2, 2], data_offsets: [offset, offset + 16] },
    });
    const head = headerBytes(text);
    const fd = openSync(p, 'w');
    try {
      writeSync(fd, head, 0, head.length, 0);
      writeSync(fd, new Uint8Array(new Float32Array([1, 2]).buffer), 0, 8, head.length);
      writeSync(fd, new Uint8Array(new Float32Array([3, 4, 5, 6]).buffer), 0, 16, head.length + offset);
    } finally {
      closeSync(fd);
    }
    truncateSync(p, head.length + offset + 16); // sparse: the gap uses no disk
    const before = process.memoryUsage().rss;
    const t = readSafetensors(p);
    expect(Array.from(t.get('small')!.data as Float32Array)).toEqual([1, 2]);
    expect(Array.from(t.get('far')!.data as Float32Array)).toEqual([3, 4, 5, 6]);
    expect(t.get('far')!.shape).toEqual([2, 2]);
    expect(process.memoryUsage().rss - before).toBeLessThan(256 * 2 ** 20);
  });
});
