/**
 * Check a ported checkpoint against a reference in the hf-tiny fixture format (PyTorch
 * outputs, MaskSub losses and gradients for fixed inputs and masks). Works for any registered
 * architecture: the reference's mask is turned into the model's default drop operator's mask.
 *
 * Reference keys: `input.*` (model inputs, `labels`, and masks: `keep_indices`, `bool_masked_pos`,
 * `pixel_mask`, `masked_input_ids`), `param.*` (parameters the reference set, e.g. a mask token),
 * and per recipe `ce.` / `bce.` (or none, contrastive): `main_logits`, `sub_logits`, `loss_main`,
 * `loss_sub`, `grad.<checkpoint name>`; contrastive models use `main_logits_per_image` /
 * `sub_logits_per_image`.
 */
import type { DropMask } from './contract/drop.js';
import type { LossKind } from './contract/loss.js';
import { MaskSubError } from './errors.js';
import { readSafetensors } from './io/safetensors.js';
import { toFloat32, type HostTensor, type TensorMap } from './io/types.js';
import { withMaskSub } from './masksub.js';
import { internalShape, toInternal, type ModelInputs } from './model.js';
import type { AdapterModel } from './registry.js';
import { tf } from './tf.js';

export interface Tolerances {
  /** Max abs error of logits. */
  logits: number;
  /** Max abs error of each loss half. */
  loss: number;
  /**
   * Max abs error of a gradient tensor over the reference's max abs. As numpy's allclose, an
   * absolute term keeps analytically zero gradients (e.g. attention key biases: softmax ignores a
   * constant added to every score) from failing on float noise: the denominator is at least
   * gradAbsolute / gradRelative.
   */
  gradRelative: number;
  /** Gradient differences below this are float32 noise (PyTorch's own on zero gradients reaches 2e-8). */
  gradAbsolute: number;
}

export const DEFAULT_TOLERANCES: Tolerances = { logits: 1e-4, loss: 1e-5, gradRelative: 1e-3, gradAbsolute: 1e-7 };

export interface VerifyRow {
  recipe: string;
  quantity: string;
  error: number;
  tolerance: number;
  ok: boolean;
}

export interface VerifyReport {
  reference: string;
  rows: VerifyRow[];
  ok: boolean;
}

const MASK_KEYS = new Set(['labels', 'keep_indices', 'block_keep_indices', 'bool_masked_pos', 'pixel_mask', 'masked_input_ids']);

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Number.POSITIVE_INFINITY;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d;
  }
  return m;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

function toTensor(t: HostTensor): tf.Tensor {
  const integer = t.dtype === 'int64' || t.dtype === 'int32' || t.dtype === 'bool' || t.dtype === 'uint8' || t.dtype === 'int8';
  return tf.tensor(integer ? Int32Array.from(toFloat32(t)) : toFloat32(t), t.shape, integer ? 'int32' : 'float32');
}

/** The reference's fixed mask in the form the model's default drop operator uses. */
export function referenceMask(model: AdapterModel, ref: TensorMap, source: string): DropMask {
  const need = (key: string): HostTensor => {
    const t = ref.get(key);
    if (!t) throw new MaskSubError(`${source}: the ${model.architecture} drop operator '${model.defaultDrop}' needs '${key}' in the reference`);
    return t;
  };
  switch (model.defaultDrop) {
    case 'token-removal': {
      const t = need('input.keep_indices');
      return { kind: 'token-removal', batch: t.shape[0], keep: t.shape[1], keepIndices: Int32Array.from(toFloat32(t)) };
    }
    case 'mask-token': {
      const t = need('input.bool_masked_pos');
      return { kind: 'mask-token', batch: t.shape[0], tokens: t.shape[1], masked: Uint8Array.from(toFloat32(t)) };
    }
    case 'zero-fill': {
      const t = need('input.pixel_mask');
      return { kind: 'zero-fill', batch: t.shape[0], height: t.shape[2], width: t.shape[3], pixelMask: toFloat32(t) };
    }
    case 'token-masking': {
      const t = need('input.masked_input_ids');
      const ids = Int32Array.from(toFloat32(t));
      const orig = toFloat32(need('input.input_ids'));
      return { kind: 'token-masking', batch: t.shape[0], length: t.shape[1], maskedIds: ids, masked: Uint8Array.from(ids, (v, i) => (v !== orig[i] ? 1 : 0)) };
    }
    default:
      throw new MaskSubError(`${source}: cannot replay a '${model.defaultDrop}' drop from a reference`);
  }
}

export function verifyModel(model: AdapterModel, referencePath: string, tolerances: Tolerances = DEFAULT_TOLERANCES): VerifyReport {
  const ref = readSafetensors(referencePath);
  const rows: VerifyRow[] = [];
  // Parameters the reference fixed (e.g. a mask token the checkpoint lacks).
  for (const [key, t] of ref) {
    if (!key.startsWith('param.')) continue;
    const name = key.slice('param.'.length);
    if (!model.params.has(name)) throw new MaskSubError(`${referencePath}: '${key}' names no parameter of the model`);
    const spec = model.params.specs.get(name)!;
    const value = tf.tensor(toInternal(spec, toFloat32(t)), internalShape(spec));
    model.params.get(name).assign(value);
    value.dispose();
  }
  const inputs: ModelInputs = {};
  for (const [key, t] of ref) {
    if (!key.startsWith('input.')) continue;
    const name = key.slice('input.'.length);
    if (!MASK_KEYS.has(name)) inputs[name] = toTensor(t);
  }
  const mask = referenceMask(model, ref, referencePath);
  const recipes: { prefix: string; loss: LossKind | 'contrastive' }[] = [];
  if (ref.has('ce.main_logits')) recipes.push({ prefix: 'ce.', loss: 'ce' });
  if (ref.has('bce.main_logits')) recipes.push({ prefix: 'bce.', loss: 'bce' });
  if (ref.has('main_logits_per_image')) recipes.push({ prefix: '', loss: 'contrastive' });
  if (recipes.length === 0) throw new MaskSubError(`${referencePath}: no 'ce.main_logits', 'bce.main_logits' or 'main_logits_per_image': not a reference in the fixture format`);
  const labelsT = ref.get('input.labels');
  try {
    for (const { prefix, loss } of recipes) {
      const recipe = prefix ? prefix.slice(0, -1) : 'contrastive';
      // Contrastive references carry no labels: pair i matches pair i.
      const batch = Object.values(inputs)[0]?.shape[0] ?? 0;
      const labels = labelsT ? (toTensor(labelsT) as tf.Tensor1D) : (tf.range(0, batch, 1, 'int32') as tf.Tensor1D);
      // The fixture format's references are computed with batch norm in eval mode (running statistics).
      const trainer = withMaskSub(model, { loss, bnMode: 'eval' });
      const r = trainer.computeGradients({ inputs, targets: { labels } }, 0, mask);
      const logitsKey = loss === 'contrastive' ? ['main_logits_per_image', 'sub_logits_per_image'] : [`${prefix}main_logits`, `${prefix}sub_logits`];
      const add = (quantity: string, error: number, tolerance: number) => rows.push({ recipe, quantity, error, tolerance, ok: error <= tolerance });
      add('main logits', maxAbsDiff(r.mainLogits.dataSync(), toFloat32(ref.get(logitsKey[0])!)), tolerances.logits);
      if (r.subLogits && ref.has(logitsKey[1])) add('sub logits', maxAbsDiff(r.subLogits.dataSync(), toFloat32(ref.get(logitsKey[1])!)), tolerances.logits);
      const lm = ref.get(`${prefix}loss_main`);
      const ls = ref.get(`${prefix}loss_sub`);
      if (lm) add('loss main', Math.abs(r.weights.main * r.lossMain - toFloat32(lm)[0]), tolerances.loss);
      if (ls) add('loss sub', Math.abs(r.weights.sub * r.lossSub - toFloat32(ls)[0]), tolerances.loss);
      let worst = 0;
      let worstName = '';
      let count = 0;
      for (const [key, t] of ref) {
        if (!key.startsWith(`${prefix}grad.`)) continue;
        const name = key.slice(`${prefix}grad.`.length);
        const g = r.grads.get(name);
        count++;
        const theirs = toFloat32(t);
        const floor = tolerances.gradAbsolute / tolerances.gradRelative;
        const err = g ? maxAbsDiff(model.params.gradientToCheckpoint(name, g).data as Float32Array, theirs) / Math.max(maxAbs(theirs), floor) : Number.POSITIVE_INFINITY;
        if (!(err <= worst)) {
          worst = err;
          worstName = name;
        }
      }
      if (count) add(`gradients (${count}, worst ${worstName || 'none'})`, worst, tolerances.gradRelative);
      tf.dispose([labels, r.mainLogits, ...(r.subLogits ? [r.subLogits] : []), ...r.grads.values()]);
    }
  } finally {
    tf.dispose(Object.values(inputs));
  }
  return { reference: referencePath, rows, ok: rows.every((r) => r.ok) };
}

export function formatVerifyReport(report: VerifyReport): string {
  const lines = [`reference: ${report.reference}`];
  for (const r of report.rows) {
    lines.push(`${r.ok ? 'ok  ' : 'FAIL'}  ${r.recipe.padEnd(11)} ${r.quantity.padEnd(60)} ${r.error.toExponential(2)}  (tolerance ${r.tolerance.toExponential(0)})`);
  }
  lines.push(report.ok ? 'all within tolerance' : 'BEYOND TOLERANCE');
  return lines.join('\n');
}
