import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { describeShared, fixturePath } from '../testing/shared.js';
import { formatInspectReport, inspectCheckpoint } from './index.js';
import { writeSafetensors } from './safetensors.js';

const root = mkdtempSync(join(tmpdir(), 'masksub-inspect-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('inspectCheckpoint on a bare safetensors file', () => {
  it('lists tensors and counts float values as parameters', () => {
    const dir = join(root, 'bare');
    mkdirSync(dir);
    writeSafetensors(join(dir, 'model.safetensors'), [
      { name: 'w', dtype: 'float32', shape: [2, 3], data: new Float32Array(6) },
      { name: 'h', dtype: 'float16', shape: [4], data: new Float32Array(4) },
      { name: 'steps', dtype: 'int64', shape: [], data: BigInt64Array.from([3n]) },
    ]);
    const r = inspectCheckpoint(join(dir, 'model.safetensors'));
    expect(r.format).toBe('safetensors');
    expect(r.modelType).toBeUndefined();
    expect(r.parameterCount).toBe(10);
    expect(r.valueCount).toBe(11);
    expect(r.tensors.map((t) => [t.name, t.dtype, t.shape])).toEqual([
      ['h', 'float16', [4]],
      ['steps', 'int64', []],
      ['w', 'float32', [2, 3]],
    ]);
    const text = formatInspectReport(r);
    expect(text).toContain('parameters: 10 in 3 tensors');
    expect(text).toMatch(/w\s+float32\s+\[2,3\]/);
  });
});

describeShared('fixtures/hf-tiny', 'inspectCheckpoint on the fixtures', () => {
  it('vit ONNX: anonymous tensors show their initializer and node; counts match safetensors', () => {
    const onnxReport = inspectCheckpoint(fixturePath('vit'), { weights: 'model.onnx' });
    const stReport = inspectCheckpoint(fixturePath('vit'));
    expect(onnxReport.format).toBe('onnx');
    expect(onnxReport.modelType).toBe('vit');
    expect(onnxReport.parameterCount).toBe(stReport.parameterCount);
    const q = onnxReport.tensors.find((t) => t.name === 'vit.encoder.layer.0.attention.attention.query.weight')!;
    expect(q.resolution).toBe('anonymous-via-node');
    expect(q.from).toMatchObject({ initializer: expect.stringMatching(/^onnx::MatMul_\d+$/), node: '/vit/encoder/layer.0/attention/attention/query/MatMul', op: 'MatMul', transposed: true });
    const text = formatInspectReport(onnxReport);
    expect(text).toMatch(/vit\.encoder\.layer\.0\.attention\.attention\.query\.weight\s+float32\s+\[32,32\]\s+<- anonymous-via-node: onnx::MatMul_\d+ via MatMul \/vit\/encoder\/layer\.0\/attention\/attention\/query\/MatMul, transposed/);
  });

  it('resnet ONNX: the folded batch norm finding is printed with tensor names', () => {
    const r = inspectCheckpoint(fixturePath('resnet', 'model.onnx'));
    const text = formatInspectReport(r);
    expect(text).toContain('[batchnorm-folded]');
    expect(text).toContain('resnet.embedder.embedder.convolution.bias');
  });

  it('vit quantized: dequantized tensors and the graph constant left unplaced', () => {
    const r = inspectCheckpoint(fixturePath('vit', 'model_quantized.onnx'));
    expect(r.format).toBe('onnx-quantized');
    expect(r.tensors.find((t) => t.name === 'classifier.weight')!.resolution).toBe('dequantized');
    expect(r.unplaced.map((u) => u.dtype)).toEqual(['int64']);
    expect(formatInspectReport(r)).toContain('[dequantized]');
  });
});
