import { describe, expect, it } from 'vitest';
import { FileFormatError } from '../errors.js';
import { parseOnnxWeights } from './onnx.js';
import { onnx, type TensorProto } from './onnx-tensor.js';

const U8 = onnx.TensorProto.DataType.UINT8;
const FLOAT = onnx.TensorProto.DataType.FLOAT;

function model(initializer: TensorProto[]): Uint8Array {
  const m = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'g',
      initializer,
      node: [{ opType: 'MatMulInteger', name: '/fc/MatMul_quant', input: ['x', 'fc.weight_quantized', 'x_zp', 'fc.weight_zero_point'], output: ['y'] }],
    },
  });
  return onnx.ModelProto.encode(m).finish();
}

const values: TensorProto = { name: 'fc.weight_quantized', dataType: U8, dims: [2, 2], rawData: new Uint8Array([1, 2, 3, 4]) };
const zero: TensorProto = { name: 'fc.weight_zero_point', dataType: U8, dims: [], rawData: new Uint8Array([2]) };

describe('quantized ONNX weights: missing or non-finite scales', () => {
  it('a quantized weight whose scale is missing is reported as such (not as an unexpected zero point)', () => {
    const parse = () => parseOnnxWeights(model([values, zero]), 'q.onnx');
    expect(parse).toThrow(FileFormatError);
    expect(parse).toThrow(/q\.onnx: tensor 'fc\.weight_quantized': quantized weight without its scale 'fc\.weight_scale'/);
  });
  it('a NaN or infinite scale is refused, naming the scale', () => {
    for (const bad of [NaN, Infinity]) {
      const scale: TensorProto = { name: 'fc.weight_scale', dataType: FLOAT, dims: [], floatData: [bad] };
      expect(() => parseOnnxWeights(model([values, scale, zero]), 'q.onnx')).toThrow(/tensor 'fc\.weight_scale': quantization scale 0 is (NaN|Infinity)/);
    }
  });
  it('a finite scale dequantizes', () => {
    const scale: TensorProto = { name: 'fc.weight_scale', dataType: FLOAT, dims: [], floatData: [0.5] };
    const { tensors } = parseOnnxWeights(model([values, scale, zero]), 'q.onnx');
    const w = [...tensors.values()].find((t) => t.name.startsWith('fc'))!;
    expect(Array.from(w.data as Float32Array).sort()).toEqual([-0.5, 0, 0.5, 1]);
  });
});
