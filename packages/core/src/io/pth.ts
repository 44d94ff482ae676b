/**
 * PyTorch `.pth` / `.bin` checkpoints (`torch.save`), read without trusting them: the zip format
 * (`<prefix>/data.pkl` + raw storages `<prefix>/data/<key>`, PyTorch >= 1.6) and the legacy
 * stream format (several pickles, then the storages inline). The pickle runs in the restricted
 * VM of ./pickle.ts with only the globals a state dict needs — the same set
 * `torch.load(weights_only=True)` permits — so a checkpoint cannot run code. Tensors are rebuilt
 * from (storage, offset, size, stride): views and non-contiguous tensors are gathered into
 * contiguous row-major data. The state dict is found inside the release layouts people publish
 * ({'model': ...}, {'state_dict': ...}, a DataParallel `module.` prefix).
 */
import { readFileSync } from 'node:fs';
import { inflateRawSync } from 'node:zlib';
import { FileFormatError } from '../errors.js';
import { PyDict, PyGlobal, PyTuple, unpickle, type PyValue } from './pickle.js';
import { bfloat16ToFloat32, float16ToFloat32 } from './safetensors.js';
import type { DType, HostTensor, TensorMap, TypedData } from './types.js';
import { numel } from './types.js';

export { ForbiddenGlobalError } from './pickle.js';

/** Storage classes by the name torch pickles (`torch.FloatStorage`), with stored dtype and element size. */
const STORAGE_TYPES: Readonly<Record<string, { dtype: DType | 'float16-raw' | 'bfloat16-raw'; bytes: number }>> = {
  FloatStorage: { dtype: 'float32', bytes: 4 },
  DoubleStorage: { dtype: 'float64', bytes: 8 },
  HalfStorage: { dtype: 'float16-raw', bytes: 2 },
  BFloat16Storage: { dtype: 'bfloat16-raw', bytes: 2 },
  LongStorage: { dtype: 'int64', bytes: 8 },
  IntStorage: { dtype: 'int32', bytes: 4 },
  ShortStorage: { dtype: 'int16', bytes: 2 },
  CharStorage: { dtype: 'int8', bytes: 1 },
  ByteStorage: { dtype: 'uint8', bytes: 1 },
  BoolStorage: { dtype: 'bool', bytes: 1 },
  UntypedStorage: { dtype: 'uint8', bytes: 1 },
};

/** A storage named by a persistent id; its bytes are fetched when a tensor is materialised. */
interface StorageRef {
  readonly kind: 'storage';
  readonly type: string;
  readonly key: string;
  /** Element offset into the root storage (legacy views), else 0. */
  readonly elementOffset: number;
  readonly numel: number;
}

/** A tensor as the pickle describes it: materialised once every storage is available. */
interface TensorRef {
  readonly kind: 'tensor';
  readonly storage: StorageRef;
  readonly offset: number;
  readonly size: number[];
  readonly stride: number[];
}

export interface PthReadResult {
  tensors: TensorMap;
  /** Where the state dict was found, e.g. ['model'] for the DeiT release layout; [] when top level. */
  path: string[];
  /** A prefix removed from every name (`module.` of DataParallel, `_orig_mod.` of torch.compile). */
  strippedPrefix?: string;
  /** Top-level keys beside the state dict that were not read (e.g. 'epoch', 'optimizer'). */
  skipped: string[];
  format: 'zip' | 'legacy';
}

/** Read a `.pth` / `.bin` file: the tensors of its state dict under their names. */
export function readPth(path: string): PthReadResult {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    throw new FileFormatError(path, `cannot read (${(e as Error).message})`);
  }
  return parsePth(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), path);
}

/** Parse checkpoint bytes (see readPth); `file` names the source in errors. */
export function parsePth(data: Uint8Array, file = '<pth>'): PthReadResult {
  const isZip = data.length >= 4 && data[0] === 0x50 && data[1] === 0x4b && data[2] === 0x03 && data[3] === 0x04;
  const { value, storages, format } = isZip ? loadZip(data, file) : loadLegacy(data, file);
  const found = findStateDict(value, file);
  const tensors: TensorMap = new Map();
  const cache = new Map<string, TypedData>();
  for (const [name, ref] of found.entries) {
    tensors.set(name, materialise(name, ref, storages, cache, file));
  }
  return { tensors, path: found.path, strippedPrefix: found.strippedPrefix, skipped: found.skipped, format };
}

// ---------------------------------------------------------------- the allowed globals

function int(v: PyValue, what: string, file: string): number {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v;
  throw new FileFormatError(file, `${what} must be a non-negative integer, got ${typeof v === 'bigint' ? v.toString() : JSON.stringify(v)}`);
}

function intTuple(v: PyValue, what: string, file: string): number[] {
  const items = v instanceof PyTuple ? v.items : Array.isArray(v) ? v : undefined;
  if (!items) throw new FileFormatError(file, `${what} must be a tuple of integers`);
  if (items.length > 32) throw new FileFormatError(file, `${what} has ${items.length} dimensions`);
  return items.map((x, i) => int(x, `${what}[${i}]`, file));
}

function isStorage(v: PyValue): v is StorageRef & PyValue {
  return typeof v === 'object' && v !== null && 'kind' in v && v.kind === 'storage';
}

function isTensor(v: PyValue): v is TensorRef & PyValue {
  return typeof v === 'object' && v !== null && 'kind' in v && v.kind === 'tensor';
}

function rebuildTensor(args: PyValue[], file: string): PyValue {
  const [storage, offset, size, stride] = args;
  if (storage === undefined || !isStorage(storage)) throw new FileFormatError(file, '_rebuild_tensor_v2: the first argument is not a storage');
  const t: TensorRef = {
    kind: 'tensor',
    storage,
    offset: int(offset ?? null, 'storage offset', file),
    size: intTuple(size ?? null, 'tensor size', file),
    stride: intTuple(stride ?? null, 'tensor stride', file),
  };
  if (t.size.length !== t.stride.length) throw new FileFormatError(file, `tensor size [${t.size}] and stride [${t.stride}] differ in rank`);
  return t as TensorRef & PyValue;
}

/** The weights_only set for state dicts: everything else is refused by name. */
function torchGlobals(file: string): (module: string, name: string) => PyGlobal | undefined {
  return (module, name) => {
    const g = (fn?: (args: PyValue[]) => PyValue) => new PyGlobal(module, name, fn);
    if (module === 'collections' && name === 'OrderedDict') {
      return g((args) => {
        const d = new PyDict(true);
        const init = args[0];
        if (Array.isArray(init)) {
          for (const pair of init) {
            const items = pair instanceof PyTuple ? pair.items : Array.isArray(pair) ? pair : undefined;
            if (!items || items.length !== 2) throw new FileFormatError(file, 'OrderedDict: items must be pairs');
            d.entries.set(String(items[0]), items[1] as PyValue);
          }
        }
        return d;
      });
    }
    if (module === 'torch._utils') {
      if (name === '_rebuild_tensor_v2' || name === '_rebuild_tensor') return g((args) => rebuildTensor(args, file));
      if (name === '_rebuild_parameter' || name === '_rebuild_parameter_with_state') {
        return g((args) => {
          if (args[0] === undefined || !isTensor(args[0])) throw new FileFormatError(file, `${name}: the first argument is not a tensor`);
          return args[0];
        });
      }
    }
    if (module === 'torch._tensor' && name === '_rebuild_from_type_v2') {
      // (func, new_type, args, state): a Parameter / Tensor subclass around an allowed rebuild.
      return g((args) => {
        const [fn, , inner] = args;
        if (!(fn instanceof PyGlobal) || !fn.call || !(inner instanceof PyTuple)) throw new FileFormatError(file, '_rebuild_from_type_v2: malformed arguments');
        return fn.call(inner.items);
      });
    }
    if (module === 'torch' && (name === 'Tensor' || name === 'nn.parameter.Parameter')) return g();
    if (module === 'torch.nn.parameter' && name === 'Parameter') return g();
    if (module === 'torch' && name in STORAGE_TYPES) return g();
    if (module === 'torch.storage' && name === 'UntypedStorage') return g();
    if (module === '_codecs' && name === 'encode') {
      // protocol 2 pickles `bytes` as _codecs.encode(text, 'latin1')
      return g((args) => {
        if (typeof args[0] !== 'string') throw new FileFormatError(file, '_codecs.encode: expected a string');
        return Uint8Array.from(args[0], (ch) => ch.charCodeAt(0) & 0xff);
      });
    }
    return undefined;
  };
}

/** Persistent id ('storage', storage_type, key, location, numel[, view_metadata]) -> a storage reference. */
function storageLoader(file: string, known: Map<string, StorageRef>): (pid: PyValue) => PyValue {
  return (pid) => {
    const items = pid instanceof PyTuple ? pid.items : undefined;
    if (!items || items[0] !== 'storage' || items.length < 5) throw new FileFormatError(file, 'persistent id is not a storage reference');
    const [, type, key, , count, view] = items;
    if (!(type instanceof PyGlobal) || !(type.name in STORAGE_TYPES)) throw new FileFormatError(file, 'storage reference without a storage type');
    if (typeof key !== 'string' || !/^[\w.-]{1,64}$/.test(key)) throw new FileFormatError(file, `storage key ${JSON.stringify(key)} is not a plain name`);
    const n = int(count ?? null, `storage '${key}' size`, file);
    const prior = known.get(key);
    if (prior && (prior.type !== type.name || prior.numel !== n)) throw new FileFormatError(file, `storage '${key}' is declared twice with different types or sizes`);
    const root: StorageRef = prior ?? { kind: 'storage', type: type.name, key, elementOffset: 0, numel: n };
    known.set(key, root);
    if (view instanceof PyTuple) {
      // legacy storage view: (view_key, offset, view_size) inside the root storage
      const [, off, size] = view.items;
      const o = int(off ?? null, 'storage view offset', file);
      const s = int(size ?? null, 'storage view size', file);
      if (o + s > n) throw new FileFormatError(file, `storage view [${o}, ${o + s}) exceeds storage '${key}' of ${n} elements`);
      return { ...root, elementOffset: o, numel: s } as StorageRef & PyValue;
    }
    return root as StorageRef & PyValue;
  };
}

// ---------------------------------------------------------------- the zip container

interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  localOffset: number;
}

function readZipDirectory(data: Uint8Array, file: string): Map<string, ZipEntry> {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const bad = (msg: string): never => {
    throw new FileFormatError(file, `not a valid zip archive: ${msg}`);
  };
  let eocd = -1;
  for (let i = data.length - 22; i >= Math.max(0, data.length - 22 - 0xffff); i--) {
    if (view.getUint32(i, true) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) bad('no end-of-central-directory record (truncated?)');
  let count = view.getUint16(eocd + 10, true);
  let cdSize = view.getUint32(eocd + 12, true);
  let cdOffset = view.getUint32(eocd + 16, true);
  if (count === 0xffff || cdOffset === 0xffffffff || cdSize === 0xffffffff) {
    // ZIP64: the locator sits right before the EOCD record
    const loc = eocd - 20;
    if (loc < 0 || view.getUint32(loc, true) !== 0x07064b50) bad('ZIP64 locator missing');
    const rec = safeNumber(view.getBigUint64(loc + 8, true));
    if (rec < 0 || rec + 56 > data.length || view.getUint32(rec, true) !== 0x06064b50) bad('ZIP64 end record missing');
    count = safeNumber(view.getBigUint64(rec + 32, true));
    cdSize = safeNumber(view.getBigUint64(rec + 40, true));
    cdOffset = safeNumber(view.getBigUint64(rec + 48, true));
  }
  if (cdOffset < 0 || cdSize < 0 || cdOffset + cdSize > data.length) bad('central directory outside the file');
  const entries = new Map<string, ZipEntry>();
  let p = cdOffset;
  const utf8 = new TextDecoder();
  for (let i = 0; i < count; i++) {
    if (p + 46 > data.length || view.getUint32(p, true) !== 0x02014b50) bad(`central directory entry ${i} is damaged`);
    const method = view.getUint16(p + 10, true);
    let compressedSize = view.getUint32(p + 20, true);
    let size = view.getUint32(p + 24, true);
    const nameLen = view.getUint16(p + 28, true);
    const extraLen = view.getUint16(p + 30, true);
    const commentLen = view.getUint16(p + 32, true);
    let localOffset = view.getUint32(p + 42, true);
    if (p + 46 + nameLen + extraLen > data.length) bad(`central directory entry ${i} is truncated`);
    const name = utf8.decode(data.subarray(p + 46, p + 46 + nameLen));
    // ZIP64 extended information: the 0xffffffff fields, in order
    let e = p + 46 + nameLen;
    const extraEnd = e + extraLen;
    while (e + 4 <= extraEnd) {
      const id = view.getUint16(e, true);
      const len = view.getUint16(e + 2, true);
      if (id === 0x0001) {
        let q = e + 4;
        const next = (): number => {
          if (q + 8 > e + 4 + len) bad(`ZIP64 field of '${name}' is short`);
          const v = safeNumber(view.getBigUint64(q, true));
          q += 8;
          return v;
        };
        if (size === 0xffffffff) size = next();
        if (compressedSize === 0xffffffff) compressedSize = next();
        if (localOffset === 0xffffffff) localOffset = next();
      }
      e += 4 + len;
    }
    entries.set(name, { name, method, compressedSize, size, localOffset });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

function safeNumber(v: bigint): number {
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? -1 : Number(v);
}

function zipEntryData(data: Uint8Array, entry: ZipEntry, file: string): Uint8Array {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const at = entry.localOffset;
  if (at < 0 || at + 30 > data.length || view.getUint32(at, true) !== 0x04034b50) throw new FileFormatError(file, `zip entry '${entry.name}': local header missing`);
  const start = at + 30 + view.getUint16(at + 26, true) + view.getUint16(at + 28, true);
  if (entry.compressedSize < 0 || start + entry.compressedSize > data.length) throw new FileFormatError(file, `zip entry '${entry.name}' runs past the end of the file`);
  const raw = data.subarray(start, start + entry.compressedSize);
  if (entry.method === 0) {
    if (entry.size !== entry.compressedSize) throw new FileFormatError(file, `zip entry '${entry.name}': stored sizes disagree`);
    return raw;
  }
  if (entry.method === 8) {
    try {
      const out = inflateRawSync(raw, { maxOutputLength: Math.max(1, entry.size) });
      if (out.length !== entry.size) throw new Error(`inflated to ${out.length} bytes, expected ${entry.size}`);
      return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    } catch (e) {
      throw new FileFormatError(file, `zip entry '${entry.name}' does not inflate (${(e as Error).message})`);
    }
  }
  throw new FileFormatError(file, `zip entry '${entry.name}' uses compression method ${entry.method} (only stored and deflate are read)`);
}

type StorageBytes = (ref: StorageRef) => Uint8Array;

function loadZip(data: Uint8Array, file: string): { value: PyValue; storages: StorageBytes; format: 'zip' } {
  const entries = readZipDirectory(data, file);
  const pkl = [...entries.keys()].filter((n) => n === 'data.pkl' || /^[^/]+\/data\.pkl$/.test(n));
  if (pkl.length !== 1) {
    throw new FileFormatError(file, pkl.length ? 'several data.pkl records' : 'zip archive without <name>/data.pkl: not a PyTorch checkpoint');
  }
  const prefix = (pkl[0] as string).slice(0, -'data.pkl'.length);
  const order = entries.get(`${prefix}byteorder`);
  const bigEndian = order !== undefined && new TextDecoder().decode(zipEntryData(data, order, file)).trim() === 'big';
  const known = new Map<string, StorageRef>();
  const pickle = zipEntryData(data, entries.get(pkl[0] as string) as ZipEntry, file);
  const { value } = unpickle(pickle, file, { resolveGlobal: torchGlobals(file), persistentLoad: storageLoader(file, known) });
  const storages: StorageBytes = (ref) => {
    const entry = entries.get(`${prefix}data/${ref.key}`);
    if (!entry) throw new FileFormatError(file, `storage '${ref.key}' is missing from the archive (${prefix}data/${ref.key})`);
    const bytes = zipEntryData(data, entry, file);
    const elem = (STORAGE_TYPES[ref.type] as { bytes: number }).bytes;
    const rootNumel = (known.get(ref.key) as StorageRef).numel;
    if (bytes.length < rootNumel * elem) throw new FileFormatError(file, `storage '${ref.key}' holds ${bytes.length} bytes, its ${rootNumel} ${ref.type} elements need ${rootNumel * elem}`);
    return bigEndian ? swapBytes(bytes, elem) : bytes;
  };
  return { value, storages, format: 'zip' };
}

function swapBytes(bytes: Uint8Array, elem: number): Uint8Array {
  if (elem === 1) return bytes;
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i + elem <= bytes.length; i += elem) for (let j = 0; j < elem; j++) out[i + j] = bytes[i + elem - 1 - j] as number;
  return out;
}

// ---------------------------------------------------------------- the legacy stream format

/** `torch.save(..., _use_new_zipfile_serialization=False)`: magic, protocol, sys_info, the object, the storage keys, then each storage as int64 count + bytes. */
function loadLegacy(data: Uint8Array, file: string): { value: PyValue; storages: StorageBytes; format: 'legacy' } {
  if (data.length < 2 || data[0] !== 0x80) throw new FileFormatError(file, 'neither a zip archive nor a legacy PyTorch pickle stream: not a .pth/.bin checkpoint');
  const noGlobals = { resolveGlobal: () => undefined };
  const magic = unpickle(data, file, noGlobals);
  if (magic.value !== 0x1950a86a20f9469cfc6cn) throw new FileFormatError(file, 'a pickle, but not a PyTorch checkpoint (wrong magic number)');
  const proto = unpickle(data, file, noGlobals, magic.end);
  if (proto.value !== 1001) throw new FileFormatError(file, `unsupported legacy protocol version ${String(proto.value)}`);
  const sysInfo = unpickle(data, file, noGlobals, proto.end);
  if (sysInfo.value instanceof PyDict && sysInfo.value.entries.get('little_endian') === false) throw new FileFormatError(file, 'big-endian legacy checkpoints are not supported');
  const known = new Map<string, StorageRef>();
  const main = unpickle(data, file, { resolveGlobal: torchGlobals(file), persistentLoad: storageLoader(file, known) }, sysInfo.end);
  const keysPickle = unpickle(data, file, noGlobals, main.end);
  if (!Array.isArray(keysPickle.value) || !keysPickle.value.every((k) => typeof k === 'string')) throw new FileFormatError(file, 'legacy storage key list is malformed');
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const blobs = new Map<string, Uint8Array>();
  let pos = keysPickle.end;
  for (const key of keysPickle.value as string[]) {
    const ref = known.get(key);
    if (!ref) throw new FileFormatError(file, `legacy storage '${key}' is listed but never used`);
    if (pos + 8 > data.length) throw new FileFormatError(file, `legacy storage '${key}' is truncated`);
    const count = safeNumber(view.getBigInt64(pos, true));
    const elem = (STORAGE_TYPES[ref.type] as { bytes: number }).bytes;
    pos += 8;
    if (count !== ref.numel || pos + count * elem > data.length) throw new FileFormatError(file, `legacy storage '${key}': ${count} elements stored, ${ref.numel} declared, or truncated`);
    blobs.set(key, data.subarray(pos, pos + count * elem));
    pos += count * elem;
  }
  const storages: StorageBytes = (ref) => {
    const b = blobs.get(ref.key);
    if (!b) throw new FileFormatError(file, `storage '${ref.key}' has no data in the file`);
    return b;
  };
  return { value: main.value, storages, format: 'legacy' };
}

// ---------------------------------------------------------------- tensors

function typedView(bytes: Uint8Array, dtype: string, count: number): TypedData {
  // copy: storages are not aligned inside the archive
  const buf = bytes.slice(0, count * bytesOf(dtype)).buffer;
  switch (dtype) {
    case 'float32':
      return new Float32Array(buf);
    case 'float64':
      return new Float64Array(buf);
    case 'float16-raw':
      return float16ToFloat32(new Uint16Array(buf));
    case 'bfloat16-raw':
      return bfloat16ToFloat32(new Uint16Array(buf));
    case 'int64':
      return new BigInt64Array(buf);
    case 'int32':
      return new Int32Array(buf);
    case 'int16':
      return new Int16Array(buf);
    case 'int8':
      return new Int8Array(buf);
    default:
      return new Uint8Array(buf);
  }
}

function bytesOf(dtype: string): number {
  return Object.values(STORAGE_TYPES).find((s) => s.dtype === dtype)?.bytes ?? 1;
}

function materialise(name: string, ref: TensorRef, storages: StorageBytes, cache: Map<string, TypedData>, file: string): HostTensor {
  const type = STORAGE_TYPES[ref.storage.type] as { dtype: string; bytes: number };
  const dtype: DType = type.dtype === 'float16-raw' ? 'float16' : type.dtype === 'bfloat16-raw' ? 'bfloat16' : (type.dtype as DType);
  const count = numel(ref.size);
  // Highest element index the view touches; it must lie inside its storage.
  let last = ref.offset;
  for (let i = 0; i < ref.size.length; i++) last += ((ref.size[i] as number) - 1) * (ref.stride[i] as number);
  if (count > 0 && last >= ref.storage.numel) {
    throw new FileFormatError(file, `tensor '${name}': size [${ref.size}] stride [${ref.stride}] offset ${ref.offset} reaches element ${last} of a storage with ${ref.storage.numel}`);
  }
  const rootKey = ref.storage.key;
  let all = cache.get(rootKey);
  if (!all) {
    const bytes = storages(ref.storage);
    const rootCount = Math.floor(bytes.length / type.bytes);
    all = typedView(bytes, type.dtype, rootCount);
    cache.set(rootKey, all);
  }
  const base = ref.storage.elementOffset + ref.offset;
  const ctor = all.constructor as new (n: number) => TypedData;
  const out = new ctor(count);
  const contiguous = ref.stride.every((s, i) => (ref.size[i] as number) === 1 || s === numel(ref.size.slice(i + 1)));
  if (contiguous) {
    (out as Float32Array).set((all as Float32Array).subarray(base, base + count));
  } else if (count > 0) {
    const rank = ref.size.length;
    const idx = new Array<number>(rank).fill(0);
    let src = base;
    for (let o = 0; o < count; o++) {
      (out as Float32Array)[o] = (all as Float32Array)[src] as number;
      for (let d = rank - 1; d >= 0; d--) {
        idx[d] = (idx[d] as number) + 1;
        src += ref.stride[d] as number;
        if ((idx[d] as number) < (ref.size[d] as number)) break;
        src -= (ref.size[d] as number) * (ref.stride[d] as number);
        idx[d] = 0;
      }
    }
  }
  return { name, dtype, shape: [...ref.size], data: out };
}

// ---------------------------------------------------------------- where the state dict is

/** Keys releases nest the weights under, in order of preference (the EMA copy comes last). */
export const STATE_DICT_KEYS: readonly string[] = ['state_dict', 'model', 'module', 'model_state_dict', 'net', 'network', 'model_ema', 'state_dict_ema'];

/** Prefixes wrappers add to every name: DataParallel / DDP, torch.compile. */
const WRAPPER_PREFIXES: readonly string[] = ['module.', '_orig_mod.'];

function tensorEntries(d: PyDict): [string, TensorRef][] {
  const out: [string, TensorRef][] = [];
  for (const [k, v] of d.entries) if (typeof k === 'string' && isTensor(v)) out.push([k, v]);
  return out;
}

function findStateDict(value: PyValue, file: string): { entries: Map<string, TensorRef>; path: string[]; strippedPrefix?: string; skipped: string[] } {
  let dict: PyDict | undefined;
  const path: string[] = [];
  let skipped: string[] = [];
  if (value instanceof PyDict) {
    const direct = tensorEntries(value);
    if (direct.length > 0) {
      dict = value;
      skipped = [...value.entries.keys()].filter((k) => !isTensor(value.entries.get(k) as PyValue)).map(String);
    } else {
      const nested = STATE_DICT_KEYS.find((k) => {
        const v = value.entries.get(k);
        return v instanceof PyDict && tensorEntries(v).length > 0;
      });
      if (nested !== undefined) {
        dict = value.entries.get(nested) as PyDict;
        path.push(nested);
        skipped = [...value.entries.keys()].filter((k) => k !== nested).map(String);
      }
    }
  }
  if (!dict) {
    const keys = value instanceof PyDict ? [...value.entries.keys()].map(String) : [];
    throw new FileFormatError(
      file,
      `no state dict found: expected a dict of tensors, or one under ${STATE_DICT_KEYS.map((k) => `'${k}'`).join(', ')}${keys.length ? `; top-level keys: ${keys.join(', ')}` : ''}`,
    );
  }
  let entries = tensorEntries(dict);
  let strippedPrefix: string | undefined;
  for (const prefix of WRAPPER_PREFIXES) {
    if (entries.every(([k]) => k.startsWith(prefix))) {
      entries = entries.map(([k, v]) => [k.slice(prefix.length), v]);
      strippedPrefix = (strippedPrefix ?? '') + prefix;
    }
  }
  const map = new Map<string, TensorRef>();
  for (const [k, v] of entries) {
    if (map.has(k)) throw new FileFormatError(file, `tensor '${k}' appears twice after removing '${strippedPrefix}'`);
    map.set(k, v);
  }
  return { entries: map, path, strippedPrefix, skipped };
}

