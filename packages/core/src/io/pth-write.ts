/**
 * A minimal `torch.save` for state dicts: PyTorch's zip format (`archive/data.pkl`,
 * `archive/data/<key>` raw little-endian storages, `archive/version`, `archive/byteorder`),
 * entries stored uncompressed and their data aligned to 64 bytes as torch writes them. The
 * pickle (protocol 2) uses only what `torch.load(weights_only=True)` allows:
 * `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` and storages by persistent id.
 * One storage per tensor, contiguous. float32 and int64 tensors (parameters, BN's
 * `num_batches_tracked`); anything else is converted to float32 by the caller.
 */
import { crc32 } from 'node:zlib';
import { FileFormatError } from '../errors.js';
import { writeFileAtomic } from './safetensors.js';
import type { TensorMap } from './types.js';
import { numel } from './types.js';

export interface PthWriteOptions {
  /**
   * Nest the state dict under this key of a top-level dict, as releases do (`{'model': sd}` of
   * the official DeiT code), or a path of keys; omitted: the state dict is the top-level object
   * (torchvision).
   */
  wrapIn?: string | readonly string[];
}

/** Pickle opcodes used (protocol 2). */
const OP = {
  PROTO: 0x80,
  GLOBAL: 0x63, // c
  EMPTY_TUPLE: 0x29, // )
  EMPTY_DICT: 0x7d, // }
  MARK: 0x28, // (
  TUPLE: 0x74, // t
  REDUCE: 0x52, // R
  SETITEM: 0x73, // s
  SETITEMS: 0x75, // u
  BINPERSID: 0x51, // Q
  BINUNICODE: 0x58, // X
  BININT: 0x4a, // J
  LONG1: 0x8a,
  NEWFALSE: 0x89,
  STOP: 0x2e, // .
} as const;

class PickleWriter {
  private readonly chunks: number[] = [];

  op(code: number): this {
    this.chunks.push(code);
    return this;
  }

  global(module: string, name: string): this {
    this.op(OP.GLOBAL);
    for (const c of Buffer.from(`${module}\n${name}\n`, 'utf8')) this.chunks.push(c);
    return this;
  }

  str(s: string): this {
    const bytes = Buffer.from(s, 'utf8');
    this.op(OP.BINUNICODE).u32(bytes.length);
    for (const c of bytes) this.chunks.push(c);
    return this;
  }

  int(n: number): this {
    if (!Number.isSafeInteger(n)) throw new RangeError(`pickle int ${n} is not a safe integer`);
    if (n >= -0x80000000 && n <= 0x7fffffff) {
      this.op(OP.BININT);
      const b = Buffer.alloc(4);
      b.writeInt32LE(n);
      for (const c of b) this.chunks.push(c);
      return this;
    }
    // LONG1: little-endian two's complement, 8 bytes suffice for any safe integer
    const b = Buffer.alloc(8);
    b.writeBigInt64LE(BigInt(n));
    this.op(OP.LONG1);
    this.chunks.push(8);
    for (const c of b) this.chunks.push(c);
    return this;
  }

  tuple(items: readonly number[]): this {
    this.op(OP.MARK);
    for (const i of items) this.int(i);
    return this.op(OP.TUPLE);
  }

  private u32(n: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    for (const c of b) this.chunks.push(c);
    return this;
  }

  bytes(): Uint8Array {
    return Uint8Array.from(this.chunks);
  }
}

const STORAGE_OF: Readonly<Record<string, { type: string; bytes: number }>> = {
  float32: { type: 'FloatStorage', bytes: 4 },
  int64: { type: 'LongStorage', bytes: 8 },
};

/** The bytes of a `torch.save(state_dict)` (or `torch.save({wrapIn: state_dict})`) zip checkpoint. */
export function serializePth(tensors: TensorMap, options: PthWriteOptions = {}, file = '<pth>'): Uint8Array {
  const p = new PickleWriter().op(OP.PROTO).op(2);
  const wrap = options.wrapIn === undefined ? [] : typeof options.wrapIn === 'string' ? [options.wrapIn] : options.wrapIn;
  for (const key of wrap) p.op(OP.EMPTY_DICT).str(key);
  p.global('collections', 'OrderedDict').op(OP.EMPTY_TUPLE).op(OP.REDUCE).op(OP.MARK);
  const records: { name: string; data: Uint8Array }[] = [];
  let key = 0;
  for (const [name, t] of tensors) {
    const storage = STORAGE_OF[t.dtype];
    if (!storage) throw new FileFormatError(file, `tensor '${name}': ${t.dtype} cannot be written to a .pth by masksub (float32 and int64 only)`);
    const n = numel(t.shape);
    if (t.data.length !== n) throw new FileFormatError(file, `tensor '${name}': ${t.data.length} values for shape [${t.shape}]`);
    const stride = t.shape.map((_, i) => t.shape.slice(i + 1).reduce((a, b) => a * b, 1));
    p.str(name);
    p.global('torch._utils', '_rebuild_tensor_v2').op(OP.MARK);
    // persistent id ('storage', torch.<Type>Storage, key, location, numel)
    p.op(OP.MARK).str('storage').global('torch', storage.type).str(String(key)).str('cpu').int(n).op(OP.TUPLE).op(OP.BINPERSID);
    p.int(0).tuple(t.shape).tuple(stride).op(OP.NEWFALSE);
    p.global('collections', 'OrderedDict').op(OP.EMPTY_TUPLE).op(OP.REDUCE); // backward hooks
    p.op(OP.TUPLE).op(OP.REDUCE);
    const src = t.data as ArrayLike<number> & { buffer: ArrayBufferLike; byteOffset: number; byteLength: number };
    const bytes = new Uint8Array(src.buffer, src.byteOffset, src.byteLength).slice();
    if (bytes.byteLength !== n * storage.bytes) throw new FileFormatError(file, `tensor '${name}': data is not ${t.dtype}`);
    records.push({ name: `archive/data/${key}`, data: bytes });
    key++;
  }
  p.op(OP.SETITEMS);
  for (let i = 0; i < wrap.length; i++) p.op(OP.SETITEM);
  p.op(OP.STOP);
  const entries = [
    { name: 'archive/data.pkl', data: p.bytes() },
    { name: 'archive/byteorder', data: Buffer.from('little') },
    ...records,
    { name: 'archive/version', data: Buffer.from('3\n') },
  ];
  return zipStored(entries, file);
}

/** Write a `.pth` checkpoint atomically (see serializePth). */
export function writePth(path: string, tensors: TensorMap, options: PthWriteOptions = {}): void {
  writeFileAtomic(path, serializePth(tensors, options, path));
}

const ALIGN = 64;

/** A zip of stored (uncompressed) entries, each entry's data aligned to 64 bytes through the local header's extra field. */
function zipStored(entries: readonly { name: string; data: Uint8Array }[], file: string): Uint8Array {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name, 'utf8');
    if (e.data.byteLength > 0xfffffffe || offset > 0xfffffffe) throw new FileFormatError(file, 'a .pth over 4 GiB needs ZIP64, which masksub does not write; save as safetensors');
    const crc = crc32(e.data);
    const headerEnd = offset + 30 + name.length;
    // extra field 'FB' (as torch's writer) padding the data start to a multiple of 64
    const pad = (ALIGN - ((headerEnd + 4) % ALIGN)) % ALIGN;
    const extra = Buffer.alloc(4 + pad, 'Z');
    extra.writeUInt16LE(0x4246, 0);
    extra.writeUInt16LE(pad, 2);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4); // version needed
    local.writeUInt16LE(0, 6); // flags
    local.writeUInt16LE(0, 8); // stored
    local.writeUInt32LE(0, 10); // time, date
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(e.data.byteLength, 18);
    local.writeUInt32LE(e.data.byteLength, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(extra.length, 28);
    parts.push(local, name, extra, e.data);
    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE(20, 4); // made by
    cd.writeUInt16LE(20, 6); // needed
    cd.writeUInt16LE(0, 8);
    cd.writeUInt16LE(0, 10);
    cd.writeUInt32LE(0, 12);
    cd.writeUInt32LE(crc, 16);
    cd.writeUInt32LE(e.data.byteLength, 20);
    cd.writeUInt32LE(e.data.byteLength, 24);
    cd.writeUInt16LE(name.length, 28);
    cd.writeUInt16LE(0, 30); // extra
    cd.writeUInt16LE(0, 32); // comment
    cd.writeUInt16LE(0, 34); // disk
    cd.writeUInt16LE(0, 36); // internal attributes
    cd.writeUInt32LE(0, 38); // external attributes
    cd.writeUInt32LE(offset, 42);
    central.push(cd, name);
    offset += local.length + name.length + extra.length + e.data.byteLength;
  }
  if (entries.length > 0xffff) throw new FileFormatError(file, `${entries.length} entries need ZIP64, which masksub does not write; save as safetensors`);
  const cdSize = central.reduce((a, b) => a + b.byteLength, 0);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cdSize, 12);
  end.writeUInt32LE(offset, 16);
  const all = [...parts, ...central, end];
  const out = new Uint8Array(all.reduce((a, b) => a + b.byteLength, 0));
  let at = 0;
  for (const b of all) {
    out.set(b, at);
    at += b.byteLength;
  }
  return out;
}
