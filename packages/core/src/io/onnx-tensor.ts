/**
 * ONNX TensorProto -> HostTensor, for every storage form a zoo export may use: raw_data (little
 * endian), the typed repeated fields (float_data, int32_data, int64_data, double_data, uint64_data),
 * fp16/bf16 bit patterns (in raw_data or the low 16 bits of int32_data) and external data files.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { dirname } from 'node:path';
import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { FileFormatError } from '../errors.js';
import { resolveInsideFolder } from './contained-path.js';
import { bfloat16ToFloat32, float16ToFloat32 } from './safetensors.js';
import type { DType, HostTensor, TypedData } from './types.js';
import { numel } from './types.js';

/** onnx-proto is CommonJS (`module.exports = $root`): only its default export exists under ESM. */
export const onnx = onnxProto.onnx;
export type ModelProto = OnnxTypes.ModelProto;
export type NodeProto = OnnxTypes.INodeProto;
export type TensorProto = OnnxTypes.ITensorProto;

/** protobufjs hands out int64 fields as numbers or as Long objects (when `long` is installed). */
type Int64Like = number | { toString(): string };

export function int64ToNumber(v: Int64Like | null | undefined): number {
  if (v === null || v === undefined) return 0;
  return typeof v === 'number' ? v : Number(v.toString());
}

function int64ToBigInt(v: Int64Like): bigint {
  return typeof v === 'number' ? BigInt(v) : BigInt(v.toString());
}

/** ONNX TensorProto.DataType codes (onnx.proto). */
export const OnnxDataType = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
  BFLOAT16: 16,
} as const;

/** Stored dtype and on-disk item size of the data types we can turn into HostTensors. */
const SUPPORTED: Record<number, { dtype: DType; itemSize: number }> = {
  [OnnxDataType.FLOAT]: { dtype: 'float32', itemSize: 4 },
  [OnnxDataType.UINT8]: { dtype: 'uint8', itemSize: 1 },
  [OnnxDataType.INT8]: { dtype: 'int8', itemSize: 1 },
  [OnnxDataType.INT16]: { dtype: 'int16', itemSize: 2 },
  [OnnxDataType.INT32]: { dtype: 'int32', itemSize: 4 },
  [OnnxDataType.INT64]: { dtype: 'int64', itemSize: 8 },
  [OnnxDataType.BOOL]: { dtype: 'bool', itemSize: 1 },
  [OnnxDataType.FLOAT16]: { dtype: 'float16', itemSize: 2 },
  [OnnxDataType.DOUBLE]: { dtype: 'float64', itemSize: 8 },
  [OnnxDataType.BFLOAT16]: { dtype: 'bfloat16', itemSize: 2 },
};

export function isSupportedDataType(dataType: number): boolean {
  return dataType in SUPPORTED;
}

/** The stored dtype of an ONNX data type code, or undefined when this reader cannot decode it. */
export function onnxDType(dataType: number): DType | undefined {
  return SUPPORTED[dataType]?.dtype;
}

export function tensorShape(t: TensorProto): number[] {
  return (t.dims ?? []).map((d) => int64ToNumber(d as Int64Like));
}

/**
 * Decode one initializer. `modelPath` anchors external data locations (relative to the model file).
 * Errors name the model file (or the external data file) and the tensor.
 */
export function decodeTensorProto(t: TensorProto, modelPath: string): HostTensor {
  const name = t.name ?? '';
  const shape = tensorShape(t);
  const dataType = t.dataType ?? 0;
  const info = SUPPORTED[dataType];
  if (!info) throw new FileFormatError(modelPath, `tensor '${name}': unsupported ONNX data type ${dataType}`);
  const n = numel(shape);

  let bytes: Uint8Array | undefined;
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    bytes = readExternal(t, name, modelPath, n * info.itemSize);
  } else if (t.rawData && t.rawData.length > 0) {
    bytes = t.rawData;
    if (bytes.length !== n * info.itemSize) {
      throw new FileFormatError(
        modelPath,
        `tensor '${name}': raw_data holds ${bytes.length} bytes but ${info.dtype}[${shape.join(',')}] needs ${n * info.itemSize}`,
      );
    }
  }
  const data = bytes ? fromBytes(dataType, bytes) : fromFields(t, dataType);
  if (data.length !== n) {
    throw new FileFormatError(modelPath, `tensor '${name}': ${data.length} values for shape [${shape.join(',')}] (${n} expected)`);
  }
  return { name, dtype: info.dtype, shape, data };
}

/** Little-endian bytes -> typed array; copied so that offsets need not be aligned. */
function fromBytes(dataType: number, bytes: Uint8Array): TypedData {
  const ab = new Uint8Array(bytes).buffer;
  switch (dataType) {
    case OnnxDataType.FLOAT:
      return new Float32Array(ab);
    case OnnxDataType.UINT8:
    case OnnxDataType.BOOL:
      return new Uint8Array(ab);
    case OnnxDataType.INT8:
      return new Int8Array(ab);
    case OnnxDataType.INT16:
      return new Int16Array(ab);
    case OnnxDataType.INT32:
      return new Int32Array(ab);
    case OnnxDataType.INT64:
      return new BigInt64Array(ab);
    case OnnxDataType.DOUBLE:
      return new Float64Array(ab);
    case OnnxDataType.FLOAT16:
      return float16ToFloat32(new Uint16Array(ab));
    case OnnxDataType.BFLOAT16:
      return bfloat16ToFloat32(new Uint16Array(ab));
    default:
      throw new Error(`unreachable data type ${dataType}`);
  }
}

/** The typed repeated fields, as onnx.proto assigns them to data types. */
function fromFields(t: TensorProto, dataType: number): TypedData {
  const i32 = t.int32Data ?? [];
  switch (dataType) {
    case OnnxDataType.FLOAT:
      return Float32Array.from(t.floatData ?? []);
    case OnnxDataType.DOUBLE:
      return Float64Array.from(t.doubleData ?? []);
    case OnnxDataType.INT64:
      return BigInt64Array.from((t.int64Data ?? []) as Int64Like[], int64ToBigInt);
    case OnnxDataType.INT32:
      return Int32Array.from(i32);
    case OnnxDataType.INT16:
      return Int16Array.from(i32);
    case OnnxDataType.INT8:
      return Int8Array.from(i32);
    case OnnxDataType.UINT8:
    case OnnxDataType.BOOL:
      return Uint8Array.from(i32);
    // fp16/bf16 travel as their bit patterns in the low 16 bits of int32_data.
    case OnnxDataType.FLOAT16:
      return float16ToFloat32(Uint16Array.from(i32, (v) => v & 0xffff));
    case OnnxDataType.BFLOAT16:
      return bfloat16ToFloat32(Uint16Array.from(i32, (v) => v & 0xffff));
    default:
      throw new Error(`unreachable data type ${dataType}`);
  }
}

/** external_data: {location, offset?, length?} with location relative to the model file's folder. */
function readExternal(t: TensorProto, name: string, modelPath: string, expectedBytes: number): Uint8Array {
  const kv = new Map((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
  const location = kv.get('location');
  if (!location) throw new FileFormatError(modelPath, `tensor '${name}': external data without a 'location'`);
  // Inside the model file's folder, as the ONNX checker requires; symlinks are followed first.
  const file = resolveInsideFolder(dirname(modelPath), location, modelPath, `tensor '${name}': external data`);
  const offset = Number(kv.get('offset') ?? '0');
  const length = kv.has('length') ? Number(kv.get('length')) : expectedBytes;
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw new FileFormatError(file, `tensor '${name}': bad external data offset/length (${kv.get('offset')}, ${kv.get('length')})`);
  }
  if (length !== expectedBytes) {
    throw new FileFormatError(file, `tensor '${name}': external data length ${length} but the tensor needs ${expectedBytes} bytes`);
  }
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw new FileFormatError(file, `tensor '${name}': cannot open external data file (${(e as Error).message})`);
  }
  try {
    const size = fstatSync(fd).size;
    if (offset + length > size) {
      throw new FileFormatError(file, `tensor '${name}': external data [${offset}, ${offset + length}) reaches past the ${size}-byte file (truncated?)`);
    }
    const out = new Uint8Array(length);
    let got = 0;
    while (got < length) {
      const r = readSync(fd, out, got, length - got, offset + got);
      if (r === 0) break;
      got += r;
    }
    return out;
  } finally {
    closeSync(fd);
  }
}
