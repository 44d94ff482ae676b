import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileFormatError } from '../errors.js';
import { describeShared, fixturePath, sharedPath } from '../testing/shared.js';
import { parseOnnxWeights, readOnnxWeights } from './onnx.js';
import type { TensorProto } from './onnx-tensor.js';
import { decodeTensorProto, onnx } from './onnx-tensor.js';
import { readSafetensors } from './safetensors.js';
import type { HostTensor, TensorMap } from './types.js';
import { toFloat32 } from './types.js';

const dir = mkdtempSync(join(tmpdir(), 'masksub-onnx-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function maxAbsDiff(a: HostTensor, b: HostTensor): number {
  const x = toFloat32(a);
  const y = toFloat32(b);
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m;
}

// ------------------------------------------------------------------ synthetic models

type NodeSpec = { op: string; name: string; inputs: string[]; outputs?: string[]; ints?: Record<string, number[]>; int?: Record<string, number> };

function node(s: NodeSpec) {
  const attribute = [
    ...Object.entries(s.ints ?? {}).map(([name, ints]) => ({ name, ints, type: onnx.AttributeProto.AttributeType.INTS })),
    ...Object.entries(s.int ?? {}).map(([name, i]) => ({ name, i, type: onnx.AttributeProto.AttributeType.INT })),
  ];
  return { opType: s.op, name: s.name, input: s.inputs, output: s.outputs ?? [`${s.name}_output_0`], attribute };
}

function modelBytes(initializer: TensorProto[], nodes: NodeSpec[]): Uint8Array {
  const m = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: { name: 'g', initializer, node: nodes.map(node) },
  });
  return onnx.ModelProto.encode(m).finish();
}

const f16 = (v: number): number => {
  // exact halves only (test values are chosen representable)
  if (v === 0) return 0;
  const sign = v < 0 ? 0x8000 : 0;
  const a = Math.abs(v);
  const e = Math.floor(Math.log2(a));
  return sign | ((e + 15) << 10) | Math.round((a / 2 ** e - 1) * 1024);
};

describe('ONNX storage forms (synthetic models)', () => {
  const FLOAT = onnx.TensorProto.DataType.FLOAT;
  const ext = new Float32Array([9, 8, 7, 6]);
  const extFile = new Uint8Array(16 + ext.byteLength);
  extFile.set(new Uint8Array(ext.buffer), 16);
  writeFileSync(join(dir, 'weights.bin'), extFile);

  const initializers: TensorProto[] = [
    // named, float_data, consumed by Gemm with transB=1 -> stored [out,in] already
    { name: 'lin.weight', dataType: FLOAT, dims: [2, 3], floatData: [1, 2, 3, 4, 5, 6] },
    // anonymous [in,out] consumed by MatMul -> enc.fc.weight [out,in]
    { name: 'onnx::MatMul_7', dataType: FLOAT, dims: [3, 2], floatData: [1, 4, 2, 5, 3, 6] },
    // anonymous [in,out] consumed by Gemm transB=0 -> head.weight, transposed
    { name: 'onnx::Gemm_3', dataType: FLOAT, dims: [2, 1], floatData: [0.5, -0.5] },
    // anonymous [out,in] reaching MatMul through Transpose(perm 1,0) and Cast: net layout unchanged
    { name: 'onnx::Transpose_9', dataType: FLOAT, dims: [2, 2], floatData: [1, 2, 3, 4] },
    // int64 shape constant: stays unplaced
    { name: '/enc/Constant_output_0', dataType: onnx.TensorProto.DataType.INT64, dims: [2], int64Data: [-1, 3] },
    // fp16 bits in int32_data, and in raw_data; bf16 raw; double_data
    { name: 'half.weight', dataType: onnx.TensorProto.DataType.FLOAT16, dims: [3], int32Data: [f16(1), f16(-2.5), f16(0.125)] },
    {
      name: 'half_raw.weight',
      dataType: onnx.TensorProto.DataType.FLOAT16,
      dims: [2],
      rawData: new Uint8Array(new Uint16Array([f16(3), f16(-0.75)]).buffer),
    },
    { name: 'bf.weight', dataType: onnx.TensorProto.DataType.BFLOAT16, dims: [2], rawData: new Uint8Array(new Uint16Array([0x3fc0, 0xc040]).buffer) },
    { name: 'dbl.weight', dataType: onnx.TensorProto.DataType.DOUBLE, dims: [2], doubleData: [Math.PI, -1] },
    { name: 'i32.buffer', dataType: onnx.TensorProto.DataType.INT32, dims: [2], int32Data: [7, -7] },
    // external data at offset 16
    {
      name: 'ext.weight',
      dataType: FLOAT,
      dims: [2, 2],
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: [
        { key: 'location', value: 'weights.bin' },
        { key: 'offset', value: '16' },
        { key: 'length', value: '16' },
      ],
    },
    // int8 per-axis quantized embedding behind DequantizeLinear(axis=0) -> Gather
    { name: 'emb.weight', dataType: onnx.TensorProto.DataType.INT8, dims: [2, 2], int32Data: [10, -10, 4, 0] },
    { name: 'emb.scale', dataType: FLOAT, dims: [2], floatData: [0.5, 0.25] },
    { name: 'emb.zp', dataType: onnx.TensorProto.DataType.INT8, dims: [2], int32Data: [0, 2] },
    // conv weight + bias both anonymous, no BatchNormalization node: batch norm folded
    { name: 'onnx::Conv_20', dataType: FLOAT, dims: [1, 1, 1, 1], floatData: [2] },
    { name: 'onnx::Conv_21', dataType: FLOAT, dims: [1], floatData: [0.1] },
    // anonymous 1-D addend next to a MatMul: a folded bias; a scalar addend elsewhere and a Mul factor are not placed
    { name: 'onnx::Add_30', dataType: FLOAT, dims: [2], floatData: [0.25, -0.25] },
    { name: 'onnx::Add_31', dataType: FLOAT, dims: [1], floatData: [1e-6] },
    { name: 'onnx::Mul_32', dataType: FLOAT, dims: [2, 2], floatData: [1, 1, 1, 1] },
  ];
  const nodes: NodeSpec[] = [
    { op: 'Gemm', name: '/lin/Gemm', inputs: ['x', 'lin.weight'], int: { transB: 1 } },
    { op: 'MatMul', name: '/enc/fc/MatMul', inputs: ['x', 'onnx::MatMul_7'] },
    { op: 'Gemm', name: '/head/Gemm', inputs: ['x', 'onnx::Gemm_3'], int: { transB: 0 } },
    { op: 'Transpose', name: '/enc/proj/Transpose', inputs: ['onnx::Transpose_9'], outputs: ['t9'], ints: { perm: [1, 0] } },
    { op: 'Cast', name: '/enc/proj/Cast', inputs: ['t9'], outputs: ['c9'], int: { to: 1 } },
    { op: 'MatMul', name: '/enc/proj/MatMul', inputs: ['x', 'c9'] },
    { op: 'Reshape', name: '/enc/Reshape', inputs: ['x', '/enc/Constant_output_0'] },
    { op: 'DequantizeLinear', name: '/emb/DQ', inputs: ['emb.weight', 'emb.scale', 'emb.zp'], outputs: ['embf'], int: { axis: 0 } },
    { op: 'Gather', name: '/emb/Gather', inputs: ['embf', 'ids'] },
    { op: 'Conv', name: '/stem/convolution/Conv', inputs: ['img', 'onnx::Conv_20', 'onnx::Conv_21'] },
    { op: 'Add', name: '/enc/fc/Add', inputs: ['/enc/fc/MatMul_output_0', 'onnx::Add_30'] },
    { op: 'Add', name: '/norm/Add', inputs: ['x', 'onnx::Add_31'] },
    { op: 'Mul', name: '/scale/Mul', inputs: ['x', 'onnx::Mul_32'] },
  ];
  const path = join(dir, 'synthetic.onnx');
  writeFileSync(path, modelBytes(initializers, nodes));
  const aliases = { 'enc.fc.weight': 'encoder.fc.weight', 'enc.fc.bias': 'encoder.fc.bias' };
  const { tensors, report } = readOnnxWeights(path, { aliases });
  const get = (n: string): HostTensor => {
    const t = tensors.get(n);
    if (!t) throw new Error(`missing ${n}; have ${[...tensors.keys()].join(', ')}`);
    return t;
  };
  const values = (n: string) => Array.from(toFloat32(get(n)));
  const rec = (init: string) => report.initializers.find((r) => r.initializer === init)!;

  it('float_data, named, Gemm transB=1 kept as stored', () => {
    expect(get('lin.weight').shape).toEqual([2, 3]);
    expect(values('lin.weight')).toEqual([1, 2, 3, 4, 5, 6]);
    expect(rec('lin.weight').resolution).toBe('named');
  });
  it('anonymous MatMul weight is named from the node and transposed to [out,in], then aliased', () => {
    expect(get('encoder.fc.weight').shape).toEqual([2, 3]);
    expect(values('encoder.fc.weight')).toEqual([1, 2, 3, 4, 5, 6]);
    expect(rec('onnx::MatMul_7')).toMatchObject({ resolution: 'anonymous-via-node', name: 'encoder.fc.weight', via: { node: '/enc/fc/MatMul', op: 'MatMul' }, transposed: true });
    expect(report.findings.find((f) => f.kind === 'aliased')!.tensors).toEqual(['enc.fc.weight -> encoder.fc.weight', 'enc.fc.bias -> encoder.fc.bias']);
  });
  it('Gemm transB=0 weight is transposed; Transpose+Cast chain is followed', () => {
    expect(get('head.weight').shape).toEqual([1, 2]);
    expect(values('head.weight')).toEqual([0.5, -0.5]);
    expect(values('enc.proj.weight')).toEqual([1, 2, 3, 4]);
    expect(rec('onnx::Transpose_9').via).toEqual({ node: '/enc/proj/MatMul', op: 'MatMul' });
  });
  it('int64 shape constants stay unplaced and decode from int64_data', () => {
    expect(rec('/enc/Constant_output_0').resolution).toBe('unplaced');
    const t = decodeTensorProto(initializers[4], path);
    expect(Array.from(t.data as BigInt64Array)).toEqual([-1n, 3n]);
  });
  it('folded 1-D biases beside a MatMul are placed; other anonymous floats are unplaced, big ones reported', () => {
    expect(values('encoder.fc.bias')).toEqual([0.25, -0.25]);
    expect(rec('onnx::Add_31').resolution).toBe('unplaced');
    expect(rec('onnx::Mul_32').resolution).toBe('unplaced');
    expect(report.findings.find((f) => f.kind === 'unplaced-float')!.tensors).toEqual(['onnx::Mul_32 [2,2]']);
  });
  it('fp16 (int32_data and raw), bf16, double, int32', () => {
    expect(get('half.weight').dtype).toBe('float16');
    expect(values('half.weight')).toEqual([1, -2.5, 0.125]);
    expect(values('half_raw.weight')).toEqual([3, -0.75]);
    expect(values('bf.weight')).toEqual([1.5, -3]);
    expect(get('dbl.weight').dtype).toBe('float64');
    expect(Array.from(get('dbl.weight').data as Float64Array)).toEqual([Math.PI, -1]);
    expect(Array.from(get('i32.buffer').data as Int32Array)).toEqual([7, -7]);
  });
  it('external data relative to the model file, at an offset', () => {
    expect(values('ext.weight')).toEqual([9, 8, 7, 6]);
  });
  it('DequantizeLinear per-axis int8 with zero points', () => {
    // row 0: (10-0)*.5, (-10-0)*.5 ; row 1: (4-2)*.25, (0-2)*.25
    expect(values('emb.weight')).toEqual([5, -5, 0.5, -0.5]);
    expect(rec('emb.weight')).toMatchObject({ resolution: 'dequantized', role: 'values' });
    expect(rec('emb.scale')).toMatchObject({ resolution: 'dequantized', role: 'scale', name: 'emb.weight' });
    expect(rec('emb.zp')).toMatchObject({ resolution: 'dequantized', role: 'zero_point' });
  });
  it('anonymous conv weight + bias without BatchNormalization is reported as folded batch norm', () => {
    expect(values('stem.convolution.weight')).toEqual([2]);
    expect(rec('onnx::Conv_21').resolution).toBe('folded');
    const f = report.findings.find((x) => x.kind === 'batchnorm-folded')!;
    expect(f.tensors).toEqual(['stem.convolution.weight', 'stem.convolution.bias']);
    expect(f.message).toContain('stem.normalization');
  });

  it('errors name the file and the tensor', () => {
    const bad = (init: TensorProto[], n: NodeSpec[] = []) => () => parseOnnxWeights(modelBytes(init, n), join(dir, 'bad.onnx'));
    expect(bad([{ name: 'w', dataType: FLOAT, dims: [3], rawData: new Uint8Array(8) }])).toThrow(/bad\.onnx: tensor 'w': raw_data holds 8 bytes but float32\[3\] needs 12/);
    expect(bad([{ name: 'w', dataType: FLOAT, dims: [3], floatData: [1, 2] }])).toThrow(/tensor 'w': 2 values for shape \[3\]/);
    expect(bad([{ name: '', dataType: FLOAT, dims: [1], floatData: [1] }])).toThrow(/initializer #0 has no name/);
    const missingExt = { name: 'e', dataType: FLOAT, dims: [4], dataLocation: 1, externalData: [{ key: 'location', value: 'nope.bin' }] };
    expect(bad([missingExt])).toThrow(/nope\.bin: tensor 'e': external data: cannot open file/);
    const shortExt = { name: 'e', dataType: FLOAT, dims: [4], dataLocation: 1, externalData: [{ key: 'location', value: 'weights.bin' }, { key: 'offset', value: '24' }] };
    expect(bad([shortExt])).toThrow(/weights\.bin: tensor 'e': external data \[24, 40\) reaches past the 32-byte file/);
  });

  it('a truncated or non-ONNX file is a FileFormatError naming the file', () => {
    const bytes = readFileSync(path);
    const truncated = join(dir, 'truncated.onnx');
    writeFileSync(truncated, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
    expect(() => readOnnxWeights(truncated)).toThrow(FileFormatError);
    expect(() => readOnnxWeights(truncated)).toThrow(/truncated\.onnx/);
    expect(() => readOnnxWeights(join(dir, 'absent.onnx'))).toThrow(/absent\.onnx: cannot read file/);
  });
});

// ------------------------------------------------------------------ the five zoo fixtures

const ARCHS = ['vit', 'resnet', 'swin', 'bert', 'clip'] as const;

/** Safetensors tensors ONNX lacks, per architecture, and why (asserted exactly). */
const EXPECTED_MISSING: Record<(typeof ARCHS)[number], RegExp | null> = {
  vit: null,
  swin: null,
  bert: null,
  clip: null,
  // batch norm folded into the convolutions: BN affine params and running stats are gone
  resnet: /\.normalization\.(weight|bias|running_mean|running_var|num_batches_tracked)$/,
};

describeShared('fixtures/hf-tiny', 'ONNX fixtures resolve to the safetensors checkpoint', () => {
  for (const arch of ARCHS) {
    it(`${arch}: every ONNX tensor equals the checkpoint tensor of the same name`, () => {
      const st = readSafetensors(fixturePath(arch, 'model.safetensors'));
      const { tensors, report } = readOnnxWeights(fixturePath(arch, 'model.onnx'));
      const folded = new Set(report.initializers.filter((r) => r.resolution === 'folded' && arch === 'resnet').map((r) => r.name));
      let compared = 0;
      for (const [name, t] of tensors) {
        if (folded.has(name)) continue; // BN-scaled conv weights: checked in the resnet test below
        const ref = st.get(name);
        expect(ref, `${arch}: ONNX tensor ${name} is not in the checkpoint`).toBeDefined();
        expect(t.shape, name).toEqual(ref!.shape);
        expect(maxAbsDiff(t, ref!), name).toBeLessThanOrEqual(1e-6);
        compared++;
      }
      expect(compared).toBeGreaterThan(0);

      const missing = [...st.keys()].filter((k) => !tensors.has(k));
      const pattern = EXPECTED_MISSING[arch];
      if (pattern === null) expect(missing).toEqual([]);
      else {
        expect(missing.length).toBeGreaterThan(0);
        for (const m of missing) expect(m).toMatch(pattern);
      }

      // Nothing left behind except small non-float or scalar constants.
      for (const r of report.initializers.filter((x) => x.resolution === 'unplaced')) {
        const n = r.shape.reduce((a, b) => a * b, 1);
        expect(!String(r.dtype).startsWith('float') || n <= 1, `${arch}: ${r.initializer} unplaced`).toBe(true);
      }
      expect(report.findings.some((f) => f.kind === 'unplaced-float')).toBe(false);
    });
  }

  it('resnet: batch norm folding is a finding and the folded weights are the checkpoint conv*BN', () => {
    const st = readSafetensors(fixturePath('resnet', 'model.safetensors'));
    const { tensors, report } = readOnnxWeights(fixturePath('resnet', 'model.onnx'));
    const finding = report.findings.find((f) => f.kind === 'batchnorm-folded');
    expect(finding).toBeDefined();
    const convs = [...st.keys()].filter((k) => k.endsWith('.convolution.weight'));
    expect(convs.length).toBe(8);
    for (const conv of convs) {
      const scope = conv.slice(0, -'.convolution.weight'.length);
      expect(finding!.tensors).toContain(`${scope}.convolution.weight`);
      expect(finding!.tensors).toContain(`${scope}.convolution.bias`);
      expect(finding!.message).toContain(`${scope}.normalization`);
      // W' = W * g/sqrt(v+eps) per output channel, b' = beta - mean * g/sqrt(v+eps)   (BatchNorm2d eps 1e-5)
      const w = toFloat32(st.get(conv)!);
      const g = toFloat32(st.get(`${scope}.normalization.weight`)!);
      const beta = toFloat32(st.get(`${scope}.normalization.bias`)!);
      const mean = toFloat32(st.get(`${scope}.normalization.running_mean`)!);
      const v = toFloat32(st.get(`${scope}.normalization.running_var`)!);
      const fw = toFloat32(tensors.get(`${scope}.convolution.weight`)!);
      const fb = toFloat32(tensors.get(`${scope}.convolution.bias`)!);
      const per = w.length / g.length;
      for (let c = 0; c < g.length; c++) {
        const k = g[c] / Math.sqrt(v[c] + 1e-5);
        expect(Math.abs(fb[c] - (beta[c] - mean[c] * k))).toBeLessThan(1e-5);
        for (let i = 0; i < per; i++) expect(Math.abs(fw[c * per + i] - w[c * per + i] * k)).toBeLessThan(1e-5);
      }
    }
  });

  it('swin: relative position bias tables are recovered from the folded addends', () => {
    const { report } = readOnnxWeights(fixturePath('swin', 'model.onnx'));
    const f = report.findings.find((x) => x.kind === 'relative-position-bias-folded');
    expect(f!.tensors).toEqual([
      'swin.encoder.layers.0.blocks.0.attention.self.relative_position_bias_table',
      'swin.encoder.layers.0.blocks.1.attention.self.relative_position_bias_table',
      'swin.encoder.layers.1.blocks.0.attention.self.relative_position_bias_table',
      'swin.encoder.layers.1.blocks.1.attention.self.relative_position_bias_table',
    ]);
  });

  for (const arch of ['vit', 'bert'] as const) {
    it(`${arch} quantized: every weight matches the checkpoint within its quantization step`, () => {
      const path = fixturePath(arch, 'model_quantized.onnx');
      const st = readSafetensors(fixturePath(arch, 'model.safetensors'));
      const { tensors, report } = readOnnxWeights(path);
      const model = onnx.ModelProto.decode(readFileSync(path));
      const protos = new Map((model.graph!.initializer ?? []).map((t) => [t.name!, t]));
      const dq = report.initializers.filter((r) => r.resolution === 'dequantized' && r.role === 'values');
      expect(dq.length).toBeGreaterThan(10);
      expect(report.findings.find((f) => f.kind === 'dequantized')!.tensors.length).toBe(dq.length);
      for (const r of dq) {
        const scaleRec = report.initializers.find((x) => x.role === 'scale' && x.name === r.name)!;
        const scale = Math.max(...toFloat32(decodeTensorProto(protos.get(scaleRec.initializer)!, path)));
        const ref = st.get(r.name!);
        expect(ref, r.name).toBeDefined();
        expect(tensors.get(r.name!)!.shape).toEqual(ref!.shape);
        expect(maxAbsDiff(tensors.get(r.name!)!, ref!), r.name).toBeLessThanOrEqual(1.5 * scale);
      }
      // The rest (biases, norms) are exact; nothing of the checkpoint is missing.
      for (const [name, t] of tensors) {
        if (dq.some((r) => r.name === name)) continue;
        expect(maxAbsDiff(t, st.get(name)!), name).toBeLessThanOrEqual(1e-6);
      }
      expect([...st.keys()].filter((k) => !tensors.has(k))).toEqual([]);
    });
  }

  it('aliases: an export in transformers-5 module names resolves to hub names through name_map.json', () => {
    // Rename the vit export's node scopes and initializers to the in-memory names, then read it back
    // with name_map.json as the alias table.
    const nameMap = JSON.parse(readFileSync(sharedPath('fixtures/hf-tiny/name_map.json'), 'utf8')) as Record<string, Record<string, string>>;
    const vitMap = nameMap.vit;
    const modToMem = new Map<string, string>();
    for (const [mem, ck] of Object.entries(vitMap)) modToMem.set(ck.slice(0, ck.lastIndexOf('.')), mem.slice(0, mem.lastIndexOf('.')));
    const ckToMem = new Map(Object.entries(vitMap).map(([mem, ck]) => [ck, mem]));
    const model = onnx.ModelProto.decode(readFileSync(fixturePath('vit', 'model.onnx')));
    const g = model.graph!;
    const renameScope = (s: string): string => {
      const dotted = s.replace(/^\//, '').split('/').slice(0, -1).join('.');
      for (const [ck, mem] of modToMem) if (dotted === ck) return `/${mem.replace(/\./g, '/')}/${s.split('/').pop()}`;
      return s;
    };
    const renameInit = new Map<string, string>();
    for (const t of g.initializer ?? []) {
      const mem = ckToMem.get(t.name!);
      if (mem) renameInit.set(t.name!, mem);
      t.name = renameInit.get(t.name!) ?? t.name;
    }
    for (const n of g.node ?? []) {
      n.name = renameScope(n.name ?? '');
      n.input = (n.input ?? []).map((i) => renameInit.get(i) ?? i);
    }
    const renamed = onnx.ModelProto.encode(model).finish();
    const plain = parseOnnxWeights(renamed, 'renamed.onnx');
    expect(plain.tensors.has('vit.encoder.layer.0.attention.attention.query.weight')).toBe(false);
    const { tensors, report } = parseOnnxWeights(renamed, 'renamed.onnx', { aliases: vitMap });
    const st = readSafetensors(fixturePath('vit', 'model.safetensors'));
    expect(sortedKeys(tensors)).toEqual(sortedKeys(st));
    for (const [name, t] of tensors) expect(maxAbsDiff(t, st.get(name)!), name).toBe(0);
    expect(report.findings.find((f) => f.kind === 'aliased')!.tensors.length).toBeGreaterThan(10);
  });
});

function sortedKeys(m: TensorMap): string[] {
  return [...m.keys()].sort();
}
