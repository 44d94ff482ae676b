/**
 * safetensors reader and writer (https://github.com/huggingface/safetensors):
 *   [u64 LE header length N][N bytes JSON header][data section]
 * The header maps tensor names to {dtype, shape, data_offsets:[begin,end]} relative to the data
 * section, plus an optional `__metadata__` string map.
 *
 * Reading validates everything the format promises before trusting an offset, because a truncated
 * download or a hand-edited header otherwise shows up much later as a wrong weight.
 */
import { closeSync, fstatSync, fsyncSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { FileFormatError } from '../errors.js';
import type { DType, HostTensor, TensorMap, TypedData } from './types.js';
import { numel } from './types.js';

/** safetensors dtype codes this reader understands, with their on-disk item size and our DType. */
const SAFETENSORS_DTYPES = {
  F32: { itemSize: 4, dtype: 'float32' },
  F16: { itemSize: 2, dtype: 'float16' },
  BF16: { itemSize: 2, dtype: 'bfloat16' },
  F64: { itemSize: 8, dtype: 'float64' },
  I64: { itemSize: 8, dtype: 'int64' },
  I32: { itemSize: 4, dtype: 'int32' },
  I16: { itemSize: 2, dtype: 'int16' },
  I8: { itemSize: 1, dtype: 'int8' },
  U8: { itemSize: 1, dtype: 'uint8' },
  BOOL: { itemSize: 1, dtype: 'bool' },
} as const satisfies Record<string, { itemSize: number; dtype: DType }>;

type SafetensorsDType = keyof typeof SAFETENSORS_DTYPES;

const CODE_BY_DTYPE: Record<DType, SafetensorsDType> = {
  float32: 'F32',
  float16: 'F16',
  bfloat16: 'BF16',
  float64: 'F64',
  int64: 'I64',
  int32: 'I32',
  int16: 'I16',
  int8: 'I8',
  uint8: 'U8',
  bool: 'BOOL',
};

/** A header larger than this is certainly corrupt (the reference implementation caps at 100 MB). */
const MAX_HEADER_BYTES = 100_000_000;

/** The metadata stored under `__metadata__`, if any (string values only, as the format requires). */
export type SafetensorsMetadata = Record<string, string>;

/**
 * Read and validate a .safetensors file. F16/BF16 are widened to float32; `dtype` keeps the stored type.
 * The header is read first and each tensor then by its offset (positioned reads), so files over
 * the 2 GiB a single Node buffer can hold (ViT-L, BERT-large) load, and memory holds only tensors.
 */
export function readSafetensors(path: string): TensorMap {
  return withFile(path, (fd, size) => {
    const { entries, dataStart } = readHeader(fd, size, path);
    entries.sort((a, b) => a.begin - b.begin || a.name.localeCompare(b.name));
    const out: TensorMap = new Map();
    for (const e of entries) {
      const bytes = readAt(fd, dataStart + e.begin, e.end - e.begin, path, e.name);
      out.set(e.name, { name: e.name, dtype: SAFETENSORS_DTYPES[e.code].dtype, shape: e.shape, data: decode(e.code, bytes) });
    }
    return out;
  });
}

/** The `__metadata__` map of a .safetensors file (empty when absent); reads only the header. */
export function readSafetensorsMetadata(path: string): SafetensorsMetadata {
  return withFile(path, (fd, size) => readHeader(fd, size, path).metadata);
}

function withFile<T>(path: string, fn: (fd: number, size: number) => T): T {
  let fd: number;
  let size: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new FileFormatError(path, `cannot read file (${(e as Error).message})`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new FileFormatError(path, 'cannot read file (not a regular file)');
    size = st.size;
    return fn(fd, size);
  } finally {
    closeSync(fd);
  }
}

/** Exactly `length` bytes at `position` (a short read means the file shrank under us). */
function readAt(fd: number, position: number, length: number, path: string, what: string): Uint8Array {
  const out = new Uint8Array(length);
  let got = 0;
  while (got < length) {
    let r: number;
    try {
      r = readSync(fd, out, got, length - got, position + got);
    } catch (e) {
      throw new FileFormatError(path, `cannot read ${what} (${(e as Error).message})`);
    }
    if (r === 0) throw new FileFormatError(path, `${what}: file ends at byte ${position + got} (truncated?)`);
    got += r;
  }
  return out;
}

function readHeader(fd: number, size: number, path: string): ParsedHeader {
  if (size < 8) throw new FileFormatError(path, `not a valid safetensors file: file has ${size} bytes, fewer than the 8-byte header length`);
  const lenBytes = readAt(fd, 0, 8, path, 'the header length');
  const headerLen = new DataView(lenBytes.buffer).getBigUint64(0, true);
  checkHeaderLength(headerLen, size, path);
  const json = readAt(fd, 8, Number(headerLen), path, 'the header');
  return parseHeaderJson(json, size - 8 - Number(headerLen), 8 + Number(headerLen), path);
}

function checkHeaderLength(headerLen: bigint, size: number, sourceName: string): void {
  const fail = (msg: string): never => {
    throw new FileFormatError(sourceName, `not a valid safetensors file: ${msg}`);
  };
  if (headerLen > BigInt(size - 8)) fail(`header length ${headerLen} exceeds the ${size - 8} bytes after it (truncated file?)`);
  if (headerLen > BigInt(MAX_HEADER_BYTES)) fail(`header length ${headerLen} is implausibly large`);
}

/**
 * Names that appear more than once among the top-level keys of a JSON object text (JSON.parse
 * keeps the last silently, which would load a different tensor than other readers do).
 * The text is known to be valid JSON: only strings and nesting need tracking.
 */
function duplicateTopLevelKeys(text: string): string[] {
  const seen = new Set<string>();
  const dup = new Set<string>();
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (depth === 1) {
        let k = j + 1;
        while (k < text.length && /\s/.test(text[k])) k++;
        if (text[k] === ':') {
          const key = JSON.parse(text.slice(i, j + 1)) as string;
          if (seen.has(key)) dup.add(key);
          seen.add(key);
        }
      }
      i = j;
    } else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
  }
  return [...dup];
}

interface HeaderEntry {
  name: string;
  code: SafetensorsDType;
  shape: number[];
  begin: number;
  end: number;
}

interface ParsedHeader {
  entries: HeaderEntry[];
  metadata: SafetensorsMetadata;
  dataStart: number;
}

function parseHeader(buf: Uint8Array, sourceName: string): ParsedHeader {
  if (buf.byteLength < 8) {
    throw new FileFormatError(sourceName, `not a valid safetensors file: file has ${buf.byteLength} bytes, fewer than the 8-byte header length`);
  }
  const headerLen = new DataView(buf.buffer, buf.byteOffset, buf.byteLength).getBigUint64(0, true);
  checkHeaderLength(headerLen, buf.byteLength, sourceName);
  const dataStart = 8 + Number(headerLen);
  return parseHeaderJson(buf.subarray(8, dataStart), buf.byteLength - dataStart, dataStart, sourceName);
}

function parseHeaderJson(json: Uint8Array, dataLen: number, dataStart: number, sourceName: string): ParsedHeader {
  const fail = (msg: string): never => {
    throw new FileFormatError(sourceName, `not a valid safetensors file: ${msg}`);
  };
  let header: unknown;
  let text = '';
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(json);
    header = JSON.parse(text);
  } catch (e) {
    fail(`header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('header is not a JSON object');
  const duplicates = duplicateTopLevelKeys(text);
  if (duplicates.length > 0) fail(`tensor name(s) ${duplicates.map((d) => `'${d}'`).join(', ')} appear more than once in the header`);

  const metadata: SafetensorsMetadata = {};
  const entries: HeaderEntry[] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail('__metadata__ is not an object');
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`__metadata__.${k} is not a string`);
        metadata[k] = v as string;
      }
      continue;
    }
    const bad = (msg: string): never => fail(`tensor '${name}': ${msg}`);
    if (typeof raw !== 'object' || raw === null) bad('entry is not an object');
    const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
    if (typeof dtype !== 'string' || !(dtype in SAFETENSORS_DTYPES)) {
      bad(`unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(SAFETENSORS_DTYPES).join(', ')})`);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      bad(`shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1]
    ) {
      bad(`data_offsets ${JSON.stringify(offsets)} is not [begin, end] with 0 <= begin <= end`);
    }
    const code = dtype as SafetensorsDType;
    const [begin, end] = offsets as [number, number];
    if (end > dataLen) bad(`data_offsets [${begin}, ${end}] reach past the ${dataLen}-byte data section (truncated file?)`);
    const expected = numel(shape as number[]) * SAFETENSORS_DTYPES[code].itemSize;
    if (end - begin !== expected) {
      bad(`holds ${end - begin} bytes but ${code}[${(shape as number[]).join(',')}] needs ${expected}`);
    }
    entries.push({ name, code, shape: [...(shape as number[])], begin, end });
  }

  // Overlap check on the sorted intervals; empty tensors occupy nothing and cannot overlap.
  const byOffset = entries.filter((e) => e.end > e.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < byOffset.length; i++) {
    const prev = byOffset[i - 1];
    const cur = byOffset[i];
    if (cur.begin < prev.end) {
      fail(`tensors '${prev.name}' [${prev.begin}, ${prev.end}) and '${cur.name}' [${cur.begin}, ${cur.end}) overlap`);
    }
  }
  return { entries, metadata, dataStart };
}

/** Parse safetensors bytes; `sourceName` names the file in errors. */
export function parseSafetensors(buf: Uint8Array, sourceName: string): TensorMap {
  const { entries, dataStart } = parseHeader(buf, sourceName);
  // File order = data order, which is what the writer of the file intended as "file order".
  entries.sort((a, b) => a.begin - b.begin || a.name.localeCompare(b.name));
  const out: TensorMap = new Map();
  for (const e of entries) {
    const bytes = buf.subarray(dataStart + e.begin, dataStart + e.end);
    out.set(e.name, {
      name: e.name,
      dtype: SAFETENSORS_DTYPES[e.code].dtype,
      shape: e.shape,
      data: decode(e.code, bytes),
    });
  }
  return out;
}

/** Copy into a fresh, aligned typed array (file offsets need not be aligned) and widen halves. */
function decode(code: SafetensorsDType, bytes: Uint8Array): TypedData {
  const copy = new Uint8Array(bytes); // aligned copy, detached from the file buffer
  const ab = copy.buffer;
  switch (code) {
    case 'F32':
      return new Float32Array(ab);
    case 'F64':
      return new Float64Array(ab);
    case 'I64':
      return new BigInt64Array(ab);
    case 'I32':
      return new Int32Array(ab);
    case 'I16':
      return new Int16Array(ab);
    case 'I8':
      return new Int8Array(ab);
    case 'U8':
    case 'BOOL':
      return copy;
    case 'F16':
      return float16ToFloat32(new Uint16Array(ab));
    case 'BF16':
      return bfloat16ToFloat32(new Uint16Array(ab));
  }
}

/** IEEE half -> float32, including subnormals, infinities and NaN. */
export function float16ToFloat32(h: Uint16Array): Float32Array {
  const out = new Float32Array(h.length);
  for (let i = 0; i < h.length; i++) {
    const v = h[i];
    const sign = v & 0x8000 ? -1 : 1;
    const exp = (v >> 10) & 0x1f;
    const frac = v & 0x3ff;
    if (exp === 0) out[i] = sign * frac * 2 ** -24;
    else if (exp === 0x1f) out[i] = frac ? NaN : sign * Infinity;
    else out[i] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return out;
}

/** bfloat16 is the upper half of a float32: shift it back into place. */
export function bfloat16ToFloat32(h: Uint16Array): Float32Array {
  const bits = new Uint32Array(h.length);
  for (let i = 0; i < h.length; i++) bits[i] = h[i] << 16;
  return new Float32Array(bits.buffer);
}

/** float32 -> IEEE half, round to nearest even (used when writing a tensor whose dtype is float16). */
export function float32ToFloat16(f: Float32Array): Uint16Array {
  const out = new Uint16Array(f.length);
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  for (let i = 0; i < f.length; i++) {
    f32[0] = f[i];
    const x = u32[0];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    const e = exp - 127 + 15;
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00;
      continue;
    }
    if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      mant |= 0x800000;
      const shift = 14 - e;
      let half = mant >>> shift;
      const rem = mant & ((1 << shift) - 1);
      const mid = 1 << (shift - 1);
      if (rem > mid || (rem === mid && half & 1)) half++;
      out[i] = sign | half;
      continue;
    }
    let half = (e << 10) | (mant >>> 13);
    const rem = mant & 0x1fff;
    // A carry out of the mantissa rolls into the exponent, which is the correct rounding (up to inf).
    if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
    out[i] = sign | half;
  }
  return out;
}

/** float32 -> bfloat16, round to nearest even (NaN kept quiet). */
export function float32ToBfloat16(f: Float32Array): Uint16Array {
  const u32 = new Uint32Array(f.buffer, f.byteOffset, f.length);
  const out = new Uint16Array(f.length);
  for (let i = 0; i < f.length; i++) {
    const x = u32[i];
    if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) {
      out[i] = (x >>> 16) | 0x40;
      continue;
    }
    out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** The bytes a tensor occupies on disk in its stored dtype (fp16/bf16 narrowed back from float32). */
function encode(t: HostTensor, file: string): Uint8Array {
  const n = numel(t.shape);
  if (t.data.length !== n) {
    throw new FileFormatError(file, `tensor '${t.name}': ${t.data.length} values do not fill shape [${t.shape.join(',')}]`);
  }
  const asBytes = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const d = t.data;
  switch (t.dtype) {
    case 'float16':
      return asBytes(d instanceof Uint16Array ? d : float32ToFloat16(toF32(d)));
    case 'bfloat16':
      return asBytes(d instanceof Uint16Array ? d : float32ToBfloat16(toF32(d)));
    case 'float32':
      return asBytes(d instanceof Float32Array ? d : toF32(d));
    case 'float64':
      return asBytes(d instanceof Float64Array ? d : Float64Array.from(numbers(d)));
    case 'int64':
      return asBytes(d instanceof BigInt64Array ? d : BigInt64Array.from(numbers(d), (v) => BigInt(Math.trunc(v))));
    case 'int32':
      return asBytes(d instanceof Int32Array ? d : Int32Array.from(numbers(d)));
    case 'int16':
      return asBytes(d instanceof Int16Array ? d : Int16Array.from(numbers(d)));
    case 'int8':
      return asBytes(d instanceof Int8Array ? d : Int8Array.from(numbers(d)));
    case 'uint8':
      return asBytes(d instanceof Uint8Array ? d : Uint8Array.from(numbers(d)));
    case 'bool':
      return Uint8Array.from(numbers(d), (v) => (v ? 1 : 0));
  }
}

function numbers(d: TypedData): number[] {
  return d instanceof BigInt64Array ? Array.from(d, Number) : Array.from(d as ArrayLike<number>);
}

function toF32(d: TypedData): Float32Array {
  return d instanceof Float32Array ? d : Float32Array.from(numbers(d));
}

/**
 * The header of a safetensors file for `tensors` (sorted by name, each tensor's bytes encoded):
 * 8-byte length + JSON padded with spaces to 8 bytes, so the data section starts aligned.
 */
function safetensorsParts(tensors: TensorMap | HostTensor[], metadata: SafetensorsMetadata, sourceName: string): { header: Uint8Array; sorted: HostTensor[]; dataBytes: number } {
  const list = Array.isArray(tensors) ? tensors : [...tensors.values()];
  const seen = new Set<string>();
  for (const t of list) {
    if (t.name === '__metadata__') throw new FileFormatError(sourceName, `'__metadata__' is reserved and cannot name a tensor`);
    if (seen.has(t.name)) throw new FileFormatError(sourceName, `tensor '${t.name}' appears twice`);
    seen.add(t.name);
  }
  const sorted = [...list].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of sorted) {
    const n = numel(t.shape);
    if (t.data.length !== n) throw new FileFormatError(sourceName, `tensor '${t.name}': ${t.data.length} values do not fill shape [${t.shape.join(',')}]`);
    const end = offset + n * SAFETENSORS_DTYPES[CODE_BY_DTYPE[t.dtype]].itemSize;
    header[t.name] = { dtype: CODE_BY_DTYPE[t.dtype], shape: t.shape, data_offsets: [offset, end] };
    offset = end;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const head = new Uint8Array(8 + padded);
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(json, 8);
  head.fill(0x20, 8 + json.byteLength);
  return { header: head, sorted, dataBytes: offset };
}

/** Largest file serializeSafetensors builds in memory (one buffer); writeSafetensors streams any size. */
export const MAX_SAFETENSORS_BUFFER_BYTES = 2 ** 31 - 1;

/**
 * The bytes of a safetensors file, in one buffer (checkpoints hash it). Files above
 * `maxBytes` (default 2 GiB) are refused: writeSafetensors streams them instead.
 */
export function serializeSafetensors(
  tensors: TensorMap | HostTensor[],
  metadata: SafetensorsMetadata = { format: 'pt' },
  sourceName = '<memory>',
  maxBytes = MAX_SAFETENSORS_BUFFER_BYTES,
): Uint8Array {
  const { header, sorted, dataBytes } = safetensorsParts(tensors, metadata, sourceName);
  const total = header.byteLength + dataBytes;
  if (total > maxBytes) throw new FileFormatError(sourceName, `${total} bytes are more than one ${maxBytes}-byte buffer holds; write the file with writeSafetensors, which streams it tensor by tensor`);
  const out = new Uint8Array(total);
  out.set(header, 0);
  let pos = header.byteLength;
  for (const t of sorted) {
    const b = encode(t, sourceName);
    out.set(b, pos);
    pos += b.byteLength;
  }
  return out;
}

export interface WriteSafetensorsOptions {
  /**
   * Largest single write (bytes); a bigger tensor is written in slices of this size. The file
   * itself is never held in memory whole, so files over 2 GiB are written. Default 64 MiB.
   */
  chunkBytes?: number;
}

/**
 * Write a .safetensors file atomically, streaming: the header, then each tensor's bytes, into a
 * temp file in the same folder (same filesystem, so the rename is atomic), fsync, then rename
 * over the target. A crash leaves the old file or the new one, never a torn file.
 */
export function writeSafetensors(
  path: string,
  tensors: TensorMap | HostTensor[],
  metadata: SafetensorsMetadata = { format: 'pt' },
  options: WriteSafetensorsOptions = {},
): void {
  writeFileAtomicWith(path, (write) => streamSafetensors(tensors, metadata, path, write, options));
}

/**
 * The bytes of a safetensors file handed to `write` piece by piece (the header, then each
 * tensor's bytes in slices of at most `chunkBytes`), never as one buffer: for writers that hash
 * or place the file themselves (checkpoints). Returns the file's size in bytes.
 */
export function streamSafetensors(
  tensors: TensorMap | HostTensor[],
  metadata: SafetensorsMetadata,
  sourceName: string,
  write: (bytes: Uint8Array) => void,
  options: WriteSafetensorsOptions = {},
): number {
  const chunk = options.chunkBytes ?? 64 * 2 ** 20;
  if (!(Number.isInteger(chunk) && chunk > 0)) throw new RangeError(`chunkBytes must be a positive integer, got ${chunk}`);
  const { header, sorted, dataBytes } = safetensorsParts(tensors, metadata, sourceName);
  write(header);
  for (const t of sorted) {
    const b = encode(t, sourceName);
    for (let at = 0; at < b.byteLength; at += chunk) write(b.subarray(at, Math.min(b.byteLength, at + chunk)));
  }
  return header.byteLength + dataBytes;
}

/** Atomic replace of `path` with `bytes` (temp file + fsync + rename). */
export function writeFileAtomic(path: string, bytes: Uint8Array): void {
  writeFileAtomicWith(path, (write) => write(bytes));
}

/** Atomic replace of `path` with what `produce` writes, piece by piece (temp file + fsync + rename). */
export function writeFileAtomicWith(path: string, produce: (write: (bytes: Uint8Array) => void) => void): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'w');
    const handle = fd;
    produce((bytes) => {
      let written = 0;
      while (written < bytes.byteLength) written += writeSync(handle, bytes, written, bytes.byteLength - written);
    });
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      // the temp file may not exist; nothing to clean up
    }
    throw new FileFormatError(path, `cannot write file (${(e as Error).message})`);
  }
  // fsync the folder so the rename itself survives a crash (not supported on every platform).
  try {
    const dfd = openSync(dirname(path), 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    // directories cannot be fsynced on some platforms (e.g. Windows); the rename is still atomic
  }
}
