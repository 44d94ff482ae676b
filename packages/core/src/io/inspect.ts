/**
 * `masksub inspect`: what a checkpoint holds, as the reader sees it: format, every tensor, where
 * each anonymous ONNX tensor came from, findings, and the parameter count.
 */
import { folderFile } from './contained-path.js';
import type { WeightsFormat } from './hf-folder.js';
import { locateWeights, readConfig, readWeights } from './hf-folder.js';
import type { AliasTable, Finding, InitializerRecord, Resolution } from './onnx.js';
import type { DType } from './types.js';
import { numel } from './types.js';

export interface InspectedTensor {
  name: string;
  dtype: DType;
  shape: number[];
  numel: number;
  /** ONNX only: how the tensor was resolved and from which initializer via which node. */
  resolution?: Resolution;
  from?: { initializer: string; node?: string; op?: string; transposed?: boolean; note?: string };
}

export interface InspectReport {
  path: string;
  weightsPath: string;
  format: WeightsFormat;
  /** `model_type` from config.json, when there is one. */
  modelType?: string;
  tensors: InspectedTensor[];
  findings: Finding[];
  /** ONNX initializers that were not placed under a checkpoint name (shape constants and such). */
  unplaced: { initializer: string; dtype: string; shape: number[] }[];
  /** Values in floating-point tensors (parameters and float buffers such as BN running statistics). */
  parameterCount: number;
  /** Values in all tensors, integer buffers included. */
  valueCount: number;
}

export function inspectCheckpoint(path: string, opts: { weights?: string; aliases?: AliasTable } = {}): InspectReport {
  const located = locateWeights(path, { weights: opts.weights });
  const configPath = folderFile(located.dir, 'config.json');
  const modelType = configPath !== undefined ? readConfig(configPath).model_type : undefined;
  const { tensors, report } = readWeights(located, opts.aliases);

  const byName = new Map<string, InitializerRecord>();
  for (const r of report.onnx?.initializers ?? []) {
    // The values record (not the scale/zero point) describes a dequantized tensor.
    if (r.name && (r.role === undefined || r.role === 'values')) byName.set(r.name, r);
  }
  const list: InspectedTensor[] = [...tensors.values()].map((t) => {
    const r = byName.get(t.name);
    const entry: InspectedTensor = { name: t.name, dtype: t.dtype, shape: t.shape, numel: numel(t.shape) };
    if (r) {
      entry.resolution = r.resolution;
      entry.from = { initializer: r.initializer, node: r.via?.node, op: r.via?.op, transposed: r.transposed, note: r.note };
    }
    return entry;
  });
  const isFloat = (d: DType) => d === 'float32' || d === 'float16' || d === 'bfloat16' || d === 'float64';
  return {
    path,
    weightsPath: located.weightsPath,
    format: located.format,
    modelType: typeof modelType === 'string' ? modelType : undefined,
    tensors: list,
    findings: report.findings,
    unplaced: (report.onnx?.initializers ?? [])
      .filter((r) => r.resolution === 'unplaced')
      .map((r) => ({ initializer: r.initializer, dtype: String(r.dtype), shape: r.shape })),
    parameterCount: list.filter((t) => isFloat(t.dtype)).reduce((a, t) => a + t.numel, 0),
    valueCount: list.reduce((a, t) => a + t.numel, 0),
  };
}

/** Plain-text rendering for the CLI. */
export function formatInspectReport(r: InspectReport): string {
  const lines: string[] = [];
  const shape = (s: number[]) => `[${s.join(',')}]`;
  lines.push(`checkpoint: ${r.weightsPath}`);
  lines.push(`format: ${r.format}${r.modelType ? `   model_type: ${r.modelType}` : ''}`);
  lines.push(`parameters: ${r.parameterCount.toLocaleString('en-US')} in ${r.tensors.length} tensors (${r.valueCount.toLocaleString('en-US')} values incl. integer buffers)`);
  lines.push('');
  lines.push('tensors:');
  const nameWidth = Math.min(80, Math.max(4, ...r.tensors.map((t) => t.name.length)));
  for (const t of r.tensors) {
    let line = `  ${t.name.padEnd(nameWidth)}  ${t.dtype.padEnd(8)}  ${shape(t.shape)}`;
    if (t.from && t.resolution !== 'named') {
      const via = t.from.node ? ` via ${t.from.op} ${t.from.node}` : '';
      const tr = t.from.transposed ? ', transposed' : '';
      line += `   <- ${t.resolution}: ${t.from.initializer}${via}${tr}`;
    }
    lines.push(line);
  }
  if (r.findings.length > 0) {
    lines.push('');
    lines.push('findings:');
    for (const f of r.findings) {
      lines.push(`  - [${f.kind}] ${f.message}`);
      for (const n of f.tensors) lines.push(`      ${n}`);
    }
  }
  if (r.unplaced.length > 0) {
    lines.push('');
    lines.push(`not placed (${r.unplaced.length}, constants of the graph):`);
    for (const u of r.unplaced) lines.push(`  ${u.initializer}  ${u.dtype}  ${shape(u.shape)}`);
  }
  return lines.join('\n');
}
