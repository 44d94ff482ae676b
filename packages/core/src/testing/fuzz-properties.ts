/**
 * The fast-check properties of core's checkpoint parsers (issue 11 case 15), defined once: the
 * suite runs them with fixed seeds and a few hundred runs (io/parsers.fuzz.test.ts,
 * io/onnx-external.fuzz.test.ts), scripts/fuzz-soak.ts with any seed and run count. Each input
 * must end in a MaskSubError or a self-consistent result, never another exception.
 * Plain `Error`s (no vitest) so the soak script runs them outside the test runner.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { MaskSubError } from '../errors.js';
import { parseOnnxWeights } from '../io/onnx.js';
import { onnx, type TensorProto } from '../io/onnx-tensor.js';
import { parsePth } from '../io/pth.js';
import { serializePth } from '../io/pth-write.js';
import { parseSafetensors, serializeSafetensors } from '../io/safetensors.js';
import type { TensorMap } from '../io/types.js';
import { numel } from '../io/types.js';

/** Memory a fuzz property may add to the process (checked by the suite and the soak). */
export const FUZZ_RSS_BUDGET = 512 * 2 ** 20;

export interface FuzzRun {
  seed: number;
  numRuns: number;
}

/** One named property: `run` asserts it with fast-check (throws with the counterexample on failure). */
export interface FuzzProperty {
  name: string;
  /** The suite's seed and run count. */
  defaults: FuzzRun;
  run(options: FuzzRun): void | Promise<void>;
}

/** Run `parse`; a MaskSubError is fine, a result must be self-consistent, anything else fails. */
export function acceptsOrRefuses(parse: () => TensorMap): TensorMap | undefined {
  let out: TensorMap;
  try {
    out = parse();
  } catch (e) {
    if (e instanceof MaskSubError) return undefined;
    throw e;
  }
  for (const t of out.values()) {
    if (t.data.length !== numel(t.shape)) throw new Error(`tensor '${t.name}': ${t.data.length} values for shape [${t.shape}]`);
  }
  return out;
}

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

const validSafetensors = serializeSafetensors([
  { name: 'a', dtype: 'float32', shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
  { name: 'b', dtype: 'float16', shape: [2], data: new Float32Array([1, -2]) },
  { name: 'c', dtype: 'int64', shape: [1], data: new BigInt64Array([7n]) },
]);

function onnxModel(initializer: TensorProto[]): Uint8Array {
  return onnx.ModelProto.encode(
    onnx.ModelProto.create({
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }],
      graph: { name: 'g', initializer, node: [{ opType: 'Gemm', name: '/fc/Gemm', input: ['x', 'fc.weight', 'fc.bias'], output: ['y'] }] },
    }),
  ).finish();
}

const validOnnx = onnxModel([
  { name: 'fc.weight', dataType: 1, dims: [2, 2], floatData: [1, 2, 3, 4] },
  { name: 'fc.bias', dataType: 1, dims: [2], rawData: new Uint8Array(new Float32Array([1, 2]).buffer) },
  { name: 'q_quantized', dataType: 2, dims: [2], rawData: new Uint8Array([1, 2]) },
  { name: 'q_scale', dataType: 1, dims: [], floatData: [0.5] },
]);

const validPth = serializePth(
  new Map([
    ['w', { name: 'w', dtype: 'float32', shape: [2, 3], data: new Float32Array([0, 1, 2, 3, 4, 5]) }],
    ['n', { name: 'n', dtype: 'int64', shape: [], data: new BigInt64Array([3n]) }],
  ]),
  { wrapIn: 'model' },
);

/** Header JSON texts a hostile writer might produce: wrong types, huge numbers, duplicate keys. */
const headerJson = fc.oneof(
  fc.json(),
  fc
    .dictionary(
      fc.string({ maxLength: 6 }),
      fc.record({
        dtype: fc.constantFrom('F32', 'F16', 'BF16', 'I64', 'U8', 'BOOL', 'X'),
        shape: fc.array(fc.oneof(fc.nat(8), fc.constant(2 ** 40), fc.constant(-1)), { maxLength: 3 }),
        data_offsets: fc.array(fc.oneof(fc.nat(64), fc.constant(2 ** 53)), { maxLength: 3 }),
      }),
    )
    .map((o) => JSON.stringify(o)),
);

function withHeader(text: string, body: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + json.length + body.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(body, 8 + json.length);
  return out;
}

const SECRET = Float32Array.from([1337.25, -4242.5, 9001.125, 31337.5]);
const INSIDE = Float32Array.from([0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5]);

/**
 * A model folder for the external-data property: `weights.bin` (inside), a directory `sub/`,
 * `link-out` (symlink to a file outside), `link-in` (symlink to weights.bin), and beside the
 * folder `secret.bin` whose values must never be read.
 */
export function externalDataFolder(): { dir: string; model: string; cleanup: () => void } {
  const root = mkdtempSync(join(tmpdir(), 'masksub-extfuzz-'));
  const dir = join(root, 'model');
  mkdirSync(join(dir, 'sub'), { recursive: true });
  writeFileSync(join(root, 'secret.bin'), new Uint8Array(SECRET.buffer));
  writeFileSync(join(dir, 'weights.bin'), new Uint8Array(INSIDE.buffer));
  writeFileSync(join(dir, 'sub', 'inner.bin'), new Uint8Array(INSIDE.buffer));
  symlinkSync(join(root, 'secret.bin'), join(dir, 'link-out'));
  symlinkSync(join(dir, 'weights.bin'), join(dir, 'link-in'));
  return { dir, model: join(dir, 'model.onnx'), cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

/** Locations a hostile or careless exporter might write; random strings and mutations of them. */
const locationArb = fc.oneof(
  fc.constantFrom('weights.bin', 'link-in', 'sub/inner.bin', 'sub/../weights.bin', './weights.bin'),
  fc.constantFrom('../secret.bin', '../../secret.bin', 'sub/../../secret.bin', 'link-out', '/etc/passwd', '', 'sub', '.', '..', 'missing.bin', 'weights.bin\0', 'C:\\secret.bin', '..\\secret.bin'),
  fc.string({ maxLength: 12 }),
  fc.tuple(fc.constantFrom('weights.bin', '../secret.bin', 'link-out'), fc.string({ maxLength: 4 })).map(([a, b]) => a + b),
);
const numberText = fc.oneof(
  fc.nat(40).map(String),
  fc.constantFrom('-4', '1e3', '0x10', 'NaN', 'Infinity', '9007199254740993', ' 8', '', 'abc', '4.5'),
  fc.string({ maxLength: 6 }),
);

/** Every value of `t` that equals the secret file's contents means a read outside the folder. */
function readTheSecret(tensors: TensorMap): boolean {
  for (const t of tensors.values()) {
    const d = t.data as ArrayLike<number>;
    for (let i = 0; i < d.length; i++) if (SECRET.includes(d[i] as number)) return true;
  }
  return false;
}

export const CORE_FUZZ_PROPERTIES: readonly FuzzProperty[] = [
  {
    name: 'safetensors: arbitrary bytes',
    defaults: { seed: 11, numRuns: 300 },
    run: (o) => fc.assert(fc.property(fc.uint8Array({ maxLength: 256 }), (b) => void acceptsOrRefuses(() => parseSafetensors(b, 'fuzz.safetensors'))), o),
  },
  {
    name: 'safetensors: hostile headers',
    defaults: { seed: 11, numRuns: 300 },
    run: (o) =>
      fc.assert(
        fc.property(headerJson, fc.uint8Array({ maxLength: 64 }), (h, body) => void acceptsOrRefuses(() => parseSafetensors(withHeader(h, body), 'fuzz.safetensors'))),
        o,
      ),
  },
  {
    name: 'safetensors: mutated valid file',
    defaults: { seed: 11, numRuns: 400 },
    run: (o) => fc.assert(fc.property(mutations(validSafetensors), (b) => void acceptsOrRefuses(() => parseSafetensors(b, 'fuzz.safetensors'))), o),
  },
  {
    name: 'ONNX protobuf: arbitrary bytes',
    defaults: { seed: 12, numRuns: 300 },
    run: (o) => fc.assert(fc.property(fc.uint8Array({ maxLength: 256 }), (b) => void acceptsOrRefuses(() => parseOnnxWeights(b, 'fuzz.onnx').tensors)), o),
  },
  {
    name: 'ONNX protobuf: mutated valid model',
    defaults: { seed: 12, numRuns: 400 },
    run: (o) => fc.assert(fc.property(mutations(validOnnx), (b) => void acceptsOrRefuses(() => parseOnnxWeights(b, 'fuzz.onnx').tensors)), o),
  },
  {
    name: 'ONNX external data: location, offset, length (traversal, symlinks, folders)',
    defaults: { seed: 13, numRuns: 300 },
    run: (o) => {
      const folder = externalDataFolder();
      try {
        fc.assert(
          fc.property(locationArb, fc.option(numberText, { nil: undefined }), fc.option(numberText, { nil: undefined }), fc.constantFrom(1, 2, 4), (location, offset, length, count) => {
            const externalData = [{ key: 'location', value: location }];
            if (offset !== undefined) externalData.push({ key: 'offset', value: offset });
            if (length !== undefined) externalData.push({ key: 'length', value: length });
            const bytes = onnxModel([{ name: 'fc.weight', dataType: 1, dims: [count], dataLocation: 1, externalData }]);
            const out = acceptsOrRefuses(() => parseOnnxWeights(bytes, folder.model).tensors);
            if (out && readTheSecret(out)) throw new Error(`location ${JSON.stringify(location)} read a file outside the model folder`);
            if (out) {
              // accepted: the bytes are weights.bin's (or its copy's) at that offset, bit for bit
              const w = out.get('fc.weight');
              const at = Number(offset ?? '0');
              const expected = new Uint8Array(INSIDE.buffer).slice(at, at + 4 * count);
              const got = w ? new Uint8Array((w.data as Float32Array).buffer, (w.data as Float32Array).byteOffset, 4 * count) : new Uint8Array(0);
              if (expected.length !== 4 * count || !got.every((v, i) => v === expected[i])) throw new Error(`location ${JSON.stringify(location)} offset ${offset}: bytes not from the folder's file`);
            }
          }),
          o,
        );
      } finally {
        folder.cleanup();
      }
    },
  },
  {
    name: 'ONNX external data: mutated model naming a file inside',
    defaults: { seed: 13, numRuns: 200 },
    run: (o) => {
      const folder = externalDataFolder();
      try {
        const good = onnxModel([{ name: 'fc.weight', dataType: 1, dims: [4], dataLocation: 1, externalData: [{ key: 'location', value: 'weights.bin' }, { key: 'offset', value: '8' }, { key: 'length', value: '16' }] }]);
        fc.assert(
          fc.property(mutations(good), (b) => {
            const out = acceptsOrRefuses(() => parseOnnxWeights(b, folder.model).tensors);
            if (out && readTheSecret(out)) throw new Error('a mutated model read a file outside the model folder');
          }),
          o,
        );
      } finally {
        folder.cleanup();
      }
    },
  },
  {
    name: '.pth: arbitrary bytes',
    defaults: { seed: 14, numRuns: 300 },
    run: (o) => fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), (b) => void acceptsOrRefuses(() => parsePth(b, 'fuzz.pth').tensors)), o),
  },
  {
    name: '.pth: mutated valid checkpoint',
    defaults: { seed: 14, numRuns: 400 },
    run: (o) => fc.assert(fc.property(mutations(validPth), (b) => void acceptsOrRefuses(() => parsePth(b, 'fuzz.pth').tensors)), o),
  },
];
