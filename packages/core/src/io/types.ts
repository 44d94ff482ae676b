/** Formats in, tensors out: what every checkpoint reader returns, independent of models. */
export type DType = 'float32' | 'float16' | 'bfloat16' | 'float64' | 'int8' | 'uint8' | 'int16' | 'int32' | 'int64' | 'bool';

export type TypedData = Float32Array | Int32Array | Uint8Array | Int8Array | BigInt64Array | Float64Array | Int16Array | Uint16Array;

/** One tensor as stored: name, the stored dtype, shape and its values (fp16/bf16 widened to fp32). */
export interface HostTensor {
  name: string;
  dtype: DType;
  shape: number[];
  data: TypedData;
}

/** Named tensors in file order. */
export type TensorMap = Map<string, HostTensor>;

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** The tensor's values as float32 (int64 through Number, bool as 0/1). */
export function toFloat32(t: HostTensor): Float32Array {
  if (t.data instanceof Float32Array) return t.data;
  const out = new Float32Array(t.data.length);
  if (t.data instanceof BigInt64Array) {
    for (let i = 0; i < out.length; i++) out[i] = Number(t.data[i]);
  } else {
    for (let i = 0; i < out.length; i++) out[i] = t.data[i] as number;
  }
  return out;
}
