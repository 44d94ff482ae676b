/**
 * Weights out of a zoo ONNX export, under checkpoint (hub) names and in PyTorch layouts.
 *
 * Exporters do not keep every parameter's name: constant folding turns `query.weight` into an
 * anonymous, transposed `onnx::MatMul_1234` ([in,out]); batch norm is folded into convolutions
 * (`onnx::Conv_N`); onnxruntime's dynamic quantization stores `X_quantized` + `X_scale` +
 * `X_zero_point`. The parameter's identity survives in the *consumer node's* scope
 * (`/vit/encoder/layer.0/attention/attention/query/MatMul`), so names are resolved from there, and
 * the layout is undone according to how that node consumes the tensor. Every initializer gets a
 * record of how it was resolved; anything unusual becomes a finding for the loader to log.
 */
import { readFileSync } from 'node:fs';
import { FileFormatError } from '../errors.js';
import type { ModelProto, NodeProto, TensorProto } from './onnx-tensor.js';
import { decodeTensorProto, int64ToNumber, isSupportedDataType, onnx, onnxDType, tensorShape } from './onnx-tensor.js';
import { composePerm, permute, transpose2d } from './permute.js';
import type { DType, HostTensor, TensorMap } from './types.js';
import { numel, toFloat32 } from './types.js';

export type Resolution = 'named' | 'anonymous-via-node' | 'dequantized' | 'folded' | 'unplaced';

/** How one ONNX initializer ended up in the tensor map (or why it did not). */
export interface InitializerRecord {
  /** Name in the ONNX file. */
  initializer: string;
  /** Stored ONNX dtype (or `onnx:<code>` for types this reader does not decode). */
  dtype: DType | string;
  shape: number[];
  resolution: Resolution;
  /** Checkpoint name it was placed under (absent when unplaced). */
  name?: string;
  /** The node whose scope named it, and that node's op type. */
  via?: { node: string; op: string };
  /** Part of a quantized triplet: the integer values, the scale or the zero point. */
  role?: 'values' | 'scale' | 'zero_point';
  /** Axes were permuted to reach the PyTorch layout (e.g. [in,out] -> [out,in]). */
  transposed?: boolean;
  note?: string;
}

export type FindingKind =
  | 'batchnorm-folded'
  | 'dequantized'
  | 'relative-position-bias-folded'
  | 'aliased'
  | 'unplaced-float'
  | 'duplicate-name'
  | 'nested-state-dict';

/** Something the loader should tell the user about, with the tensors concerned. */
export interface Finding {
  kind: FindingKind;
  message: string;
  tensors: string[];
}

export interface OnnxReport {
  source: string;
  initializers: InitializerRecord[];
  findings: Finding[];
}

export interface OnnxWeights {
  tensors: TensorMap;
  report: OnnxReport;
}

/** Resolved name -> hub name (e.g. transformers-5 in-memory names to checkpoint names). */
export type AliasTable = Readonly<Record<string, string>> | ReadonlyMap<string, string>;

export interface ReadOnnxOptions {
  aliases?: AliasTable;
}

/** Nodes that hand a constant on unchanged in value (Transpose only reorders it). */
const PASS_THROUGH = new Set(['Transpose', 'Cast', 'Identity']);

/** BatchNormalization inputs 1..4 as torch names them. */
const BATCH_NORM_INPUTS: Record<number, string> = { 1: 'weight', 2: 'bias', 3: 'running_mean', 4: 'running_var' };

/** A node that uses an initializer, seen through pass-through nodes. */
interface Use {
  node: NodeProto;
  index: number;
  /** Accumulated Transpose permutation between the stored tensor and this input (null = none). */
  perm: number[] | null;
}

export function readOnnxWeights(path: string, opts: ReadOnnxOptions = {}): OnnxWeights {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    throw new FileFormatError(path, `cannot read file (${(e as Error).message})`);
  }
  return parseOnnxWeights(buf, path, opts);
}

export function decodeOnnxModel(buf: Uint8Array, path: string): ModelProto {
  let model: ModelProto;
  try {
    model = onnx.ModelProto.decode(buf);
  } catch (e) {
    throw new FileFormatError(path, `not a valid ONNX model (${(e as Error).message})`);
  }
  if (!model.graph) throw new FileFormatError(path, 'not a valid ONNX model: no graph');
  return model;
}

/** Resolve the initializers of ONNX bytes; `path` names the file and anchors external data. */
export function parseOnnxWeights(buf: Uint8Array, path: string, opts: ReadOnnxOptions = {}): OnnxWeights {
  const model = decodeOnnxModel(buf, path);
  return new OnnxResolver(model, path, opts.aliases).run();
}

class OnnxResolver {
  private readonly nodes: NodeProto[];
  private readonly consumers = new Map<string, { node: NodeProto; index: number }[]>();
  private readonly protos = new Map<string, TensorProto>();
  private readonly records = new Map<string, InitializerRecord>();
  private readonly findings: Finding[] = [];
  private readonly tensors: TensorMap = new Map();
  private readonly decoded = new Map<string, HostTensor>();
  private readonly aliasedNames: string[] = [];

  constructor(
    model: ModelProto,
    private readonly path: string,
    private readonly aliases: AliasTable | undefined,
  ) {
    const graph = model.graph!;
    this.nodes = graph.node ?? [];
    for (const node of this.nodes) {
      (node.input ?? []).forEach((input, index) => {
        if (!input) return;
        const list = this.consumers.get(input) ?? [];
        list.push({ node, index });
        this.consumers.set(input, list);
      });
    }
    (graph.initializer ?? []).forEach((t, i) => {
      if (!t.name) throw new FileFormatError(path, `initializer #${i} has no name`);
    });
    for (const t of graph.initializer ?? []) {
      const name = t.name ?? '';
      if (this.protos.has(name)) throw new FileFormatError(path, `initializer '${name}' appears twice`);
      this.protos.set(name, t);
      const dt = t.dataType ?? 0;
      this.records.set(name, {
        initializer: name,
        dtype: onnxDType(dt) ?? `onnx:${dt}`,
        shape: tensorShape(t),
        resolution: 'unplaced',
      });
    }
  }

  run(): OnnxWeights {
    this.resolveQuantized();
    for (const name of this.protos.keys()) {
      if (this.records.get(name)!.resolution !== 'unplaced') continue;
      if (!isSupportedDataType(this.protos.get(name)!.dataType ?? 0)) continue;
      this.resolveFloat(name);
    }
    this.reportBatchNormFolding();
    this.reportUnplaced();
    if (this.aliasedNames.length > 0) {
      this.findings.push({
        kind: 'aliased',
        message: `${this.aliasedNames.length} tensor name(s) were mapped to checkpoint names through the alias table`,
        tensors: this.aliasedNames,
      });
    }
    return {
      tensors: this.tensors,
      report: { source: this.path, initializers: [...this.records.values()], findings: this.findings },
    };
  }

  // ---------------------------------------------------------------- decoding and uses

  private tensor(name: string): HostTensor {
    let t = this.decoded.get(name);
    if (!t) {
      t = decodeTensorProto(this.protos.get(name)!, this.path);
      this.decoded.set(name, t);
    }
    return t;
  }

  /** Where a value is consumed, following Transpose/Cast/Identity chains to the real consumer. */
  private uses(value: string, perm: number[] | null = null, depth = 0): Use[] {
    const out: Use[] = [];
    for (const { node, index } of this.consumers.get(value) ?? []) {
      const op = node.opType ?? '';
      if (PASS_THROUGH.has(op) && index === 0 && depth < 16 && node.output?.[0]) {
        let next = perm;
        if (op === 'Transpose') {
          const attr = node.attribute?.find((a) => a.name === 'perm');
          const rank = this.records.get(value)?.shape.length ?? 2;
          const p = attr?.ints?.length ? attr.ints.map((v) => int64ToNumber(v)) : [...Array(rank).keys()].reverse();
          next = perm ? composePerm(perm, p) : p;
        }
        out.push(...this.uses(node.output[0], next, depth + 1));
      } else {
        out.push({ node, index, perm });
      }
    }
    return out;
  }

  // ---------------------------------------------------------------- naming

  /** `/vit/encoder/layer.0/attention/attention/query/MatMul` -> `vit.encoder.layer.0.attention.attention.query`. */
  private scopeOf(node: NodeProto): string | undefined {
    const source = node.name?.startsWith('/') ? node.name : node.output?.find((o) => o.startsWith('/'));
    if (!source) return undefined;
    const parts = source.replace(/^\/+/, '').split('/');
    parts.pop(); // the op instance (`MatMul`, `Gemm_MatMul_quant`, `Add_output_0`)
    // A called nn.Sequential `layer` opens its own scope and its children are scoped `layer.0`:
    // `/layer/layer.0/convolution` is the module `layer.0.convolution`, so drop the container.
    const modules = parts.filter((p, i) => !(parts[i + 1]?.startsWith(`${p}.`) && /^\d+$/.test(parts[i + 1].slice(p.length + 1))));
    return modules.length > 0 ? modules.join('.') : undefined;
  }

  private linearScopesCache: Set<string> | undefined;

  /** Module scopes that contain a MatMul / MatMulInteger / Gemm node. */
  private linearScopes(): Set<string> {
    if (!this.linearScopesCache) {
      this.linearScopesCache = new Set();
      for (const node of this.nodes) {
        if (!['MatMul', 'MatMulInteger', 'Gemm'].includes(node.opType ?? '')) continue;
        const scope = this.scopeOf(node);
        if (scope) this.linearScopesCache.add(scope);
      }
    }
    return this.linearScopesCache;
  }

  private alias(name: string): string {
    if (!this.aliases) return name;
    const hub = this.aliases instanceof Map ? this.aliases.get(name) : (this.aliases as Record<string, string>)[name];
    if (hub !== undefined && hub !== name) {
      this.aliasedNames.push(`${name} -> ${hub}`);
      return hub;
    }
    return name;
  }

  /**
   * The parameter an anonymous tensor is, from its consumer, and how to lay it out as PyTorch does.
   * Returns undefined for uses that do not identify a parameter (shape inputs, masks, ...).
   */
  private placement(use: Use, rank: number): { name: string; toTorch: (t: HostTensor) => HostTensor } | undefined {
    const scope = this.scopeOf(use.node);
    if (!scope) return undefined;
    const view = (t: HostTensor): HostTensor => (use.perm ? permute(t, use.perm) : t);
    const op = use.node.opType ?? '';
    const asIs = (suffix: string) => ({ name: `${scope}.${suffix}`, toTorch: view });
    switch (op) {
      case 'MatMul':
      case 'MatMulInteger':
        // y = x @ W with W [in,out]; torch Linear keeps [out,in].
        if (use.index === 1 && rank === 2) return { name: `${scope}.weight`, toTorch: (t) => transpose2d(view(t)) };
        return undefined;
      case 'Gemm': {
        if (use.index === 2) return asIs('bias');
        if (use.index !== 1 || rank !== 2) return undefined;
        const transB = int64ToNumber(use.node.attribute?.find((a) => a.name === 'transB')?.i);
        // transB=1: the stored B is already [out,in] (torch Linear); transB=0: it is [in,out].
        return transB ? asIs('weight') : { name: `${scope}.weight`, toTorch: (t) => transpose2d(view(t)) };
      }
      case 'Conv':
      case 'ConvInteger':
        if (use.index === 1) return asIs('weight');
        if (use.index === 2 && op === 'Conv') return asIs('bias');
        return undefined;
      case 'Gather':
        return use.index === 0 ? asIs('weight') : undefined;
      case 'LayerNormalization':
        return use.index === 1 ? asIs('weight') : use.index === 2 ? asIs('bias') : undefined;
      case 'BatchNormalization': {
        const role = BATCH_NORM_INPUTS[use.index];
        return role ? asIs(role) : undefined;
      }
      case 'Add':
        // A folded 1-D bias: only where the same module scope has a matrix product to be the bias of.
        return rank === 1 && this.linearScopes().has(scope) ? asIs('bias') : undefined;
      default:
        return undefined;
    }
  }

  private place(name: string, tensor: HostTensor, record: InitializerRecord): boolean {
    const hub = this.alias(name);
    if (this.tensors.has(hub)) {
      record.note = `resolves to '${hub}', which another initializer already provides`;
      this.findings.push({
        kind: 'duplicate-name',
        message: `initializer '${record.initializer}' resolves to '${hub}', already taken: left unplaced`,
        tensors: [record.initializer, hub],
      });
      return false;
    }
    this.tensors.set(hub, { ...tensor, name: hub });
    record.name = hub;
    return true;
  }

  // ---------------------------------------------------------------- float (and int) initializers

  private resolveFloat(name: string): void {
    const record = this.records.get(name)!;
    const t = this.tensor(name);
    if (!isAnonymous(name)) {
      // The exporter kept the parameter's own name, so the data is the parameter itself.
      record.resolution = 'named';
      this.place(name, t, record);
      return;
    }
    if (!isFloat(t.dtype)) return; // anonymous integer constants are shapes/indices, not weights
    const uses = this.uses(name);
    if (this.tryRelativePositionBias(name, t, uses, record)) return;
    for (const use of uses) {
      const where = this.placement(use, t.shape.length);
      if (!where) continue;
      const torch = where.toTorch(t);
      record.resolution = 'anonymous-via-node';
      record.via = { node: use.node.name ?? '', op: use.node.opType ?? '' };
      record.transposed = torch.data !== t.data;
      if (!this.place(where.name, torch, record)) record.resolution = 'unplaced';
      return;
    }
  }

  /**
   * Swin's relative position bias: `table[index[i,j], h]` gathered and constant-folded into a
   * [1,H,N,N] addend (N = w*w tokens of a w x w window). The gather is inverted with Swin's own
   * index; every table entry is covered, and duplicates must agree, or the tensor stays unplaced.
   */
  private tryRelativePositionBias(name: string, t: HostTensor, uses: Use[], record: InitializerRecord): boolean {
    const [one, heads, n, n2] = t.shape;
    if (t.shape.length !== 4 || one !== 1 || n !== n2) return false;
    const w = Math.round(Math.sqrt(n));
    if (w * w !== n) return false;
    const use = uses.find((u) => u.node.opType === 'Add' && u.perm === null);
    const scope = use && this.scopeOf(use.node);
    if (!use || !scope || !/(^|\.)(attention|self)$/.test(scope)) return false;

    const side = 2 * w - 1;
    const table = new Float32Array(side * side * heads);
    const seen = new Uint8Array(side * side);
    const values = toFloat32(t);
    let consistent = true;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        const dy = Math.floor(i / w) - Math.floor(j / w) + w - 1;
        const dx = (i % w) - (j % w) + w - 1;
        const k = dy * side + dx;
        for (let h = 0; h < heads; h++) {
          const v = values[(h * n + i) * n + j];
          if (seen[k] && Math.abs(table[k * heads + h] - v) > 1e-6 * Math.max(1, Math.abs(v))) consistent = false;
          table[k * heads + h] = v;
        }
        seen[k] = 1;
      }
    }
    if (!consistent || !seen.every((s) => s === 1)) return false;
    const tableName = scope.endsWith('.self') ? `${scope}.relative_position_bias_table` : `${scope}.self.relative_position_bias_table`;
    record.resolution = 'folded';
    record.via = { node: use.node.name ?? '', op: 'Add' };
    record.note = `relative position bias [1,${heads},${n},${n}] un-gathered into a [${side * side},${heads}] table`;
    if (!this.place(tableName, { name: tableName, dtype: t.dtype, shape: [side * side, heads], data: table }, record)) {
      record.resolution = 'unplaced';
      return true;
    }
    const existing = this.findings.find((f) => f.kind === 'relative-position-bias-folded');
    if (existing) existing.tensors.push(record.name!);
    else {
      this.findings.push({
        kind: 'relative-position-bias-folded',
        message: 'relative position bias tables were constant-folded into attention addends; recovered by inverting the window index',
        tensors: [record.name!],
      });
    }
    return true;
  }

  // ---------------------------------------------------------------- quantized initializers

  /**
   * onnxruntime dynamic quantization: `B_quantized` (u8/i8) with `B_scale` and `B_zero_point`,
   * consumed by MatMulInteger / ConvInteger, or by Gather followed by DequantizeLinear (embeddings).
   * Also the plain form: an integer initializer fed straight into DequantizeLinear.
   */
  private resolveQuantized(): void {
    const dequantized: string[] = [];
    for (const qName of this.protos.keys()) {
      const q = this.records.get(qName)!;
      if (q.dtype !== 'uint8' && q.dtype !== 'int8') continue;

      let base: string;
      let scaleName: string | undefined;
      let zeroName: string | undefined;
      let axisAttr: number | undefined;
      let uses: Use[];
      const direct = (this.consumers.get(qName) ?? []).find((c) => c.node.opType === 'DequantizeLinear' && c.index === 0);
      if (qName.endsWith('_quantized') && this.protos.has(`${qName.slice(0, -10)}_scale`)) {
        base = qName.slice(0, -'_quantized'.length);
        scaleName = `${base}_scale`;
        zeroName = this.protos.has(`${base}_zero_point`) ? `${base}_zero_point` : undefined;
        uses = this.uses(qName);
        const dq = this.dequantizeNodeFor(scaleName);
        if (dq) axisAttr = int64ToNumber(dq.attribute?.find((a) => a.name === 'axis')?.i ?? 1);
      } else if (direct && this.protos.has(direct.node.input?.[1] ?? '')) {
        base = qName;
        scaleName = direct.node.input![1];
        zeroName = this.protos.has(direct.node.input?.[2] ?? '') ? direct.node.input![2] : undefined;
        axisAttr = int64ToNumber(direct.node.attribute?.find((a) => a.name === 'axis')?.i ?? 1);
        uses = this.uses(direct.node.output![0]);
      } else if (qName.endsWith('_quantized') && this.protos.has(`${qName.slice(0, -10)}_zero_point`)) {
        // Values and zero point without their scale: the weight cannot be dequantized; say what is missing.
        throw new FileFormatError(this.path, `tensor '${qName}': quantized weight without its scale '${qName.slice(0, -10)}_scale' (it has a zero point)`);
      } else {
        continue;
      }

      const qt = this.tensor(qName);
      const scale = toFloat32(this.tensor(scaleName));
      const badScale = scale.findIndex((v) => !Number.isFinite(v));
      if (badScale >= 0) {
        throw new FileFormatError(this.path, `tensor '${scaleName}': quantization scale ${badScale} is ${scale[badScale]} (the weight '${qName}' cannot be dequantized)`);
      }
      const zero = zeroName ? toFloat32(this.tensor(zeroName)) : new Float32Array(1);
      const consumerOp = uses[0]?.node.opType ?? undefined;
      const axis = quantAxis(qt.shape, scale.length, axisAttr, consumerOp);
      if (axis === undefined) {
        throw new FileFormatError(this.path, `tensor '${qName}': ${scale.length} scales do not fit shape [${qt.shape.join(',')}]`);
      }
      const real: HostTensor = { name: base, dtype: 'float32', shape: qt.shape, data: dequantize(qt, scale, zero, axis) };

      let name: string | undefined;
      let toTorch: (t: HostTensor) => HostTensor = (t) => t;
      let via: Use | undefined;
      for (const use of uses) {
        const where = this.placement(use, qt.shape.length);
        if (where) {
          via = use;
          toTorch = where.toTorch;
          name = isAnonymous(base) ? where.name : base;
          break;
        }
      }
      if (!name && !isAnonymous(base)) name = base;
      if (!name) continue;
      const torch = toTorch(real);
      const group: [string, InitializerRecord['role']][] = [[qName, 'values'], [scaleName, 'scale']];
      if (zeroName) group.push([zeroName, 'zero_point']);
      const ok = this.place(name, torch, q);
      for (const [member, role] of group) {
        const r = this.records.get(member)!;
        r.resolution = ok ? 'dequantized' : 'unplaced';
        r.role = role;
        r.name = ok ? q.name : undefined;
        if (via) r.via = { node: via.node.name ?? '', op: via.node.opType ?? '' };
      }
      q.transposed = torch.data !== real.data;
      q.note = `(q - zero_point) * scale, ${scale.length === 1 ? 'per tensor' : `per axis ${axis}`}`;
      if (ok) dequantized.push(q.name!);
    }
    if (dequantized.length > 0) {
      this.findings.push({
        kind: 'dequantized',
        message: `${dequantized.length} weight(s) were stored quantized (8-bit) and were dequantized to float32: expect quantization error`,
        tensors: dequantized,
      });
    }
  }

  private dequantizeNodeFor(scaleName: string): NodeProto | undefined {
    return (this.consumers.get(scaleName) ?? []).find((c) => c.node.opType === 'DequantizeLinear')?.node;
  }

  // ---------------------------------------------------------------- findings

  /**
   * Export with constant folding fuses Conv + BatchNorm: the conv weight becomes an anonymous
   * `onnx::Conv_N` and a bias appears that the checkpoint conv does not have, while the BN
   * parameters and running statistics vanish. Exported names alone cannot undo that, so report it.
   */
  private reportBatchNormFolding(): void {
    if (this.nodes.some((n) => n.opType === 'BatchNormalization')) return;
    const folded: string[] = [];
    const modules: string[] = [];
    for (const node of this.nodes) {
      if (node.opType !== 'Conv') continue;
      const [, w, b] = node.input ?? [];
      if (!w || !b || !isAnonymous(w) || !isAnonymous(b)) continue;
      const records = [w, b].map((x) => this.records.get(x)).filter((r): r is InitializerRecord => !!r && !!r.name);
      if (records.length !== 2) continue;
      for (const r of records) {
        r.resolution = 'folded';
        r.note = 'conv weight/bias with batch norm folded in';
        folded.push(r.name!);
      }
      const scope = this.scopeOf(node) ?? '';
      modules.push(scope.endsWith('.convolution') ? `${scope.slice(0, -'.convolution'.length)}.normalization` : `${scope} (batch norm)`);
    }
    if (folded.length > 0) {
      this.findings.push({
        kind: 'batchnorm-folded',
        message:
          `batch norm was folded into ${folded.length / 2} convolution(s): the file has conv biases but no batch norm ` +
          `weights or running statistics (${modules.join(', ')}); conv weights here are scaled by the BN factors and differ from the checkpoint's`,
        tensors: folded,
      });
    }
  }

  private reportUnplaced(): void {
    const suspicious = [...this.records.values()].filter(
      (r) => r.resolution === 'unplaced' && (r.dtype === 'float32' || r.dtype === 'float16' || r.dtype === 'bfloat16' || r.dtype === 'float64') && numel(r.shape) > 1,
    );
    if (suspicious.length > 0) {
      this.findings.push({
        kind: 'unplaced-float',
        message: `${suspicious.length} float initializer(s) could not be matched to a checkpoint name`,
        tensors: suspicious.map((r) => `${r.initializer} [${r.shape.join(',')}]`),
      });
    }
  }
}

/** Exporter-made names: `onnx::MatMul_12`, `/m/.../Constant_output_0`, anything with `::`. */
export function isAnonymous(name: string): boolean {
  return name.startsWith('/') || name.includes('::') || name === '';
}

function isFloat(d: DType): boolean {
  return d === 'float32' || d === 'float16' || d === 'bfloat16' || d === 'float64';
}

/** Which axis per-axis scales run along (DequantizeLinear `axis`; MatMulInteger columns; Conv output channels). */
function quantAxis(shape: number[], count: number, axisAttr: number | undefined, consumerOp: string | undefined): number | undefined {
  if (count === 1) return 0;
  const norm = (a: number) => (a < 0 ? a + shape.length : a);
  const preferred =
    consumerOp === 'MatMulInteger' ? shape.length - 1 : consumerOp === 'ConvInteger' ? 0 : axisAttr !== undefined ? norm(axisAttr) : undefined;
  if (preferred !== undefined && shape[preferred] === count) return preferred;
  const candidates = shape.map((d, i) => (d === count ? i : -1)).filter((i) => i >= 0);
  return candidates.length === 1 ? candidates[0] : undefined;
}

/** (q - zero_point) * scale, broadcasting scale/zero point along `axis` when per-axis. */
function dequantize(q: HostTensor, scale: Float32Array, zero: Float32Array, axis: number): Float32Array {
  const values = toFloat32(q);
  const out = new Float32Array(values.length);
  if (scale.length === 1) {
    const s = scale[0];
    const z = zero[0] ?? 0;
    for (let i = 0; i < out.length; i++) out[i] = (values[i] - z) * s;
    return out;
  }
  const inner = q.shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const dim = q.shape[axis];
  for (let i = 0; i < out.length; i++) {
    const c = Math.floor(i / inner) % dim;
    out[i] = (values[i] - (zero.length === 1 ? zero[0] : zero[c])) * scale[c];
  }
  return out;
}
