/**
 * Property tests of the checkpoint parsers (issue 11 case 15): arbitrary bytes and mutations of a
 * valid file end in a MaskSubError or a valid result — never another exception, a hang or
 * unbounded memory. Fixed seeds and bounded runs keep them to about a second; scripts/fuzz-soak.ts
 * runs the same properties for longer.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MaskSubError } from '../errors.js';
import { parseOnnxWeights } from './onnx.js';
import { onnx } from './onnx-tensor.js';
import { parseSafetensors, serializeSafetensors } from './safetensors.js';
import type { TensorMap } from './types.js';
import { numel } from './types.js';

export const FUZZ_RSS_BUDGET = 512 * 2 ** 20;

/** Run `parse`; a MaskSubError is fine, a result must be self-consistent, anything else fails. */
export function acceptsOrRefuses(parse: () => TensorMap): void {
  let out: TensorMap;
  try {
    out = parse();
  } catch (e) {
    if (e instanceof MaskSubError) return;
    throw e;
  }
  for (const t of out.values()) expect(t.data.length).toBe(numel(t.shape));
}

const validSafetensors = serializeSafetensors([
  { name: 'a', dtype: 'float32', shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
  { name: 'b', dtype: 'float16', shape: [2], data: new Float32Array([1, -2]) },
  { name: 'c', dtype: 'int64', shape: [1], data: new BigInt64Array([7n]) },
]);

const validOnnx = onnx.ModelProto.encode(
  onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'g',
      initializer: [
        { name: 'fc.weight', dataType: 1, dims: [2, 2], floatData: [1, 2, 3, 4] },
        { name: 'fc.bias', dataType: 1, dims: [2], rawData: new Uint8Array(new Float32Array([1, 2]).buffer) },
        { name: 'q_quantized', dataType: 2, dims: [2], rawData: new Uint8Array([1, 2]) },
        { name: 'q_scale', dataType: 1, dims: [], floatData: [0.5] },
      ],
      node: [{ opType: 'Gemm', name: '/fc/Gemm', input: ['x', 'fc.weight', 'fc.bias'], output: ['y'] }],
    },
  }),
).finish();

/** Byte edits, truncation and insertion of a valid file. */
export function mutations(good: Uint8Array): fc.Arbitrary<Uint8Array> {
  const edit = fc.array(fc.tuple(fc.nat(good.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }).map((edits) => {
    const b = good.slice();
    for (const [i, v] of edits) b[i] = v;
    return b;
  });
  const cut = fc.nat(good.length).map((n) => good.slice(0, n));
  const insert = fc.tuple(fc.nat(good.length), fc.uint8Array({ minLength: 1, maxLength: 16 })).map(([i, ins]) => {
    const b = new Uint8Array(good.length + ins.length);
    b.set(good.subarray(0, i));
    b.set(ins, i);
    b.set(good.subarray(i), i + ins.length);
    return b;
  });
  return fc.oneof(edit, cut, insert);
}

/** Header JSON texts a hostile writer might produce: wrong types, huge numbers, duplicate keys. */
const headerJson = fc.oneof(
  fc.json(),
  fc.dictionary(
    fc.string({ maxLength: 6 }),
    fc.record({
      dtype: fc.constantFrom('F32', 'F16', 'BF16', 'I64', 'U8', 'BOOL', 'X'),
      shape: fc.array(fc.oneof(fc.nat(8), fc.constant(2 ** 40), fc.constant(-1)), { maxLength: 3 }),
      data_offsets: fc.array(fc.oneof(fc.nat(64), fc.constant(2 ** 53)), { maxLength: 3 }),
    }),
  ).map((o) => JSON.stringify(o)),
);

function withHeader(text: string, body: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + json.length + body.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(body, 8 + json.length);
  return out;
}

describe('fuzz: safetensors', () => {
  it('arbitrary bytes, hostile headers and mutated valid files: a MaskSubError or a valid result', () => {
    const rss = process.memoryUsage().rss;
    fc.assert(fc.property(fc.uint8Array({ maxLength: 256 }), (b) => acceptsOrRefuses(() => parseSafetensors(b, 'fuzz.safetensors'))), { seed: 11, numRuns: 300 });
    fc.assert(
      fc.property(headerJson, fc.uint8Array({ maxLength: 64 }), (h, body) => acceptsOrRefuses(() => parseSafetensors(withHeader(h, body), 'fuzz.safetensors'))),
      { seed: 11, numRuns: 300 },
    );
    fc.assert(fc.property(mutations(validSafetensors), (b) => acceptsOrRefuses(() => parseSafetensors(b, 'fuzz.safetensors'))), { seed: 11, numRuns: 400 });
    expect(process.memoryUsage().rss - rss).toBeLessThan(FUZZ_RSS_BUDGET);
  });
});

describe('fuzz: ONNX protobuf', () => {
  it('arbitrary bytes and mutated valid models: a MaskSubError or a valid result', () => {
    const rss = process.memoryUsage().rss;
    const parse = (b: Uint8Array) => () => parseOnnxWeights(b, 'fuzz.onnx').tensors;
    fc.assert(fc.property(fc.uint8Array({ maxLength: 256 }), (b) => acceptsOrRefuses(parse(b))), { seed: 12, numRuns: 300 });
    fc.assert(fc.property(mutations(validOnnx), (b) => acceptsOrRefuses(parse(b))), { seed: 12, numRuns: 400 });
    expect(process.memoryUsage().rss - rss).toBeLessThan(FUZZ_RSS_BUDGET);
  });
});
