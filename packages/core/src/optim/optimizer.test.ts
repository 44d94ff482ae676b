/**
 * The updates are checked against plain-JS (float64) transcriptions of torch.optim.AdamW,
 * torch.optim.SGD and timm's Lamb, run on the same parameters and gradients for several steps.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { tf } from '../tf.js';
import { OptionError, TensorMismatchError } from '../errors.js';
import { Rng } from '../rng.js';
import { createOptimizer, type OptimizerKind, type OptimizerSpec } from './optimizer.js';
import { blockIndex, layeredParamGroups, type ParamGroupRules } from './param-groups.js';

/** The ViT-shaped names of SHAPES grouped as a ViT declares them (2 blocks, tokens without decay). */
const groups = layeredParamGroups({
  numLayers: 2,
  embedding: (n) => n.startsWith('vit.embeddings.'),
  block: (n) => blockIndex(/\.encoder\.layer\.(\d+)\./, n),
  noWeightDecay: (n) => n.endsWith('cls_token'),
});

type Arr = number[];
interface RefParam {
  name: string;
  shape: number[];
  p: Arr;
  wd: number;
  lrScale: number;
  m: Arr;
  v: Arr;
  t: number;
}

const SHAPES: Record<string, number[]> = {
  'vit.embeddings.cls_token': [1, 1, 4],
  'vit.encoder.layer.0.attention.attention.query.weight': [4, 4],
  'vit.encoder.layer.0.attention.attention.query.bias': [4],
  'vit.encoder.layer.1.output.dense.weight': [3, 4],
  'classifier.weight': [2, 4],
};

const norm = (a: Arr) => Math.sqrt(a.reduce((s, x) => s + x * x, 0));

function refAdamW(r: RefParam, g: Arr, lr: number, s: Required<Pick<OptimizerSpec, 'betas' | 'eps'>>): void {
  const [b1, b2] = s.betas;
  r.t++;
  const lrE = lr * r.lrScale;
  const bc1 = 1 - b1 ** r.t;
  const bc2 = 1 - b2 ** r.t;
  for (let i = 0; i < r.p.length; i++) {
    r.p[i] *= 1 - lrE * r.wd;
    r.m[i] = b1 * r.m[i] + (1 - b1) * g[i];
    r.v[i] = b2 * r.v[i] + (1 - b2) * g[i] * g[i];
    const denom = Math.sqrt(r.v[i]) / Math.sqrt(bc2) + s.eps;
    r.p[i] -= (lrE / bc1) * (r.m[i] / denom);
  }
}

function refSgd(r: RefParam, g: Arr, lr: number, momentum: number, dampening: number, nesterov: boolean): void {
  r.t++;
  const lrE = lr * r.lrScale;
  for (let i = 0; i < r.p.length; i++) {
    let d = g[i] + r.wd * r.p[i];
    if (momentum !== 0) {
      r.m[i] = r.t === 1 ? d : momentum * r.m[i] + (1 - dampening) * d;
      d = nesterov ? d + momentum * r.m[i] : r.m[i];
    }
    r.p[i] -= lrE * d;
  }
}

function refLamb(all: RefParam[], grads: Arr[], lr: number, b1: number, b2: number, eps: number, maxGradNorm: number, trustClip: boolean): void {
  const globalNorm = Math.sqrt(grads.reduce((s, g) => s + norm(g) ** 2, 0));
  const clip = Math.max(globalNorm / maxGradNorm, 1);
  all.forEach((r, k) => {
    r.t++;
    const g = grads[k].map((x) => x / clip);
    const bc1 = 1 - b1 ** r.t;
    const bc2 = 1 - b2 ** r.t;
    const update: Arr = [];
    for (let i = 0; i < r.p.length; i++) {
      r.m[i] = b1 * r.m[i] + (1 - b1) * g[i];
      r.v[i] = b2 * r.v[i] + (1 - b2) * g[i] * g[i];
      update.push(r.m[i] / bc1 / (Math.sqrt(r.v[i]) / Math.sqrt(bc2) + eps) + r.wd * r.p[i]);
    }
    let ratio = 1;
    if (r.wd !== 0) {
      const wn = norm(r.p);
      const un = norm(update);
      ratio = wn > 0 && un > 0 ? wn / un : 1;
      if (trustClip) ratio = Math.min(ratio, 1);
    }
    for (let i = 0; i < r.p.length; i++) r.p[i] -= lr * r.lrScale * ratio * update[i];
  });
}

/** Same start for tfjs and the reference: values drawn from one seed. */
function setup(seed: number, zeroParam?: string) {
  const rng = new Rng(seed);
  const params = new Map<string, tf.Variable>();
  const refs: RefParam[] = [];
  for (const [name, shape] of Object.entries(SHAPES)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const p = Array.from({ length: n }, () => (name === zeroParam ? 0 : rng.normal() * 0.5));
    params.set(name, tf.variable(tf.tensor(p, shape), true));
    // The reference starts from the float32-rounded values tfjs holds.
    refs.push({ name, shape, p: Array.from(Float32Array.from(p)), wd: 0, lrScale: 1, m: new Array(n).fill(0), v: new Array(n).fill(0), t: 0 });
  }
  const gradsFor = (step: number) => {
    const g = new Rng(seed * 1000 + step);
    return refs.map((r) => Array.from(Float32Array.from(r.p.map(() => g.normal() * (step % 2 ? 2 : 0.3)))));
  };
  return { params, refs, gradsFor };
}

function run(spec: OptimizerSpec, rules: ParamGroupRules, refStep: (refs: RefParam[], grads: Arr[], lr: number) => void, opts: { steps?: number; zeroParam?: string } = {}) {
  const { params, refs, gradsFor } = setup(7, opts.zeroParam);
  const opt = createOptimizer(spec, params, rules);
  for (const r of refs) {
    const h = opt.paramHyper(r.name);
    r.wd = h.weightDecay;
    r.lrScale = h.lrScale;
  }
  const lrs = [0.1, 0.05, 0.02, 0.01, 0.005];
  for (let s = 0; s < (opts.steps ?? 5); s++) {
    const gs = gradsFor(s);
    const grads = new Map(refs.map((r, k) => [r.name, tf.tensor(gs[k], r.shape)]));
    opt.step(grads, lrs[s]);
    grads.forEach((g) => g.dispose());
    refStep(refs, gs, lrs[s]);
  }
  for (const r of refs) {
    const got = params.get(r.name)!.dataSync();
    for (let i = 0; i < r.p.length; i++) expect(got[i], `${r.name}[${i}]`).toBeCloseTo(r.p[i], 5);
  }
  return { opt, params, refs };
}

describe('optimizers against the PyTorch/timm formulas', () => {
  afterEach(() => {
    tf.disposeVariables();
  });

  const adamSpec = { betas: [0.9, 0.99] as [number, number], eps: 1e-8 };
  it.each([0, 0.05])('AdamW, weight decay %s, the model\'s no-decay rules', (wd) => {
    const { opt, refs } = run({ kind: 'adamw', weightDecay: wd, ...adamSpec }, { groups }, (rs, gs, lr) => rs.forEach((r, k) => refAdamW(r, gs[k], lr, adamSpec)));
    // Decay really reaches 2-D weights and skips cls token and bias.
    expect(refs.find((r) => r.name === 'classifier.weight')!.wd).toBe(wd);
    expect(refs.find((r) => r.name === 'vit.embeddings.cls_token')!.wd).toBe(0);
    expect(refs.find((r) => r.name.endsWith('query.bias'))!.wd).toBe(0);
    expect(opt.stepCount).toBe(5);
  });

  it('AdamW with layer-wise lr decay', () => {
    const { refs } = run({ kind: 'adamw', weightDecay: 0.1, ...adamSpec }, { groups, layerDecay: 0.5 }, (rs, gs, lr) =>
      rs.forEach((r, k) => refAdamW(r, gs[k], lr, adamSpec)),
    );
    expect(refs.map((r) => r.lrScale)).toEqual([0.125, 0.25, 0.25, 0.5, 1]);
  });

  it.each([
    [0.9, 0, false, 0],
    [0.9, 0, false, 0.01],
    [0.9, 0, true, 0.01],
    [0.8, 0.1, false, 0.01],
    [0, 0, false, 0.01],
  ])('SGD momentum %s dampening %s nesterov %s wd %s', (momentum, dampening, nesterov, wd) => {
    run({ kind: 'sgd', momentum, dampening, nesterov, weightDecay: wd }, {}, (rs, gs, lr) =>
      rs.forEach((r, k) => refSgd(r, gs[k], lr, momentum, dampening, nesterov)),
    );
  });

  it.each([
    [0.01, 1.0, false],
    [0, 1.0, false],
    [0.05, 3.0, true],
  ])('LAMB wd %s maxGradNorm %s trustClip %s', (wd, maxGradNorm, trustClip) => {
    run({ kind: 'lamb', weightDecay: wd, betas: [0.9, 0.999], eps: 1e-6, maxGradNorm, trustClip }, { groups, layerDecay: 0.8 }, (rs, gs, lr) =>
      refLamb(rs, gs, lr, 0.9, 0.999, 1e-6, maxGradNorm, trustClip),
    );
  });

  it('LAMB trust ratio is 1 for a zero parameter', () => {
    run({ kind: 'lamb', weightDecay: 0.01 }, {}, (rs, gs, lr) => refLamb(rs, gs, lr, 0.9, 0.999, 1e-6, 1.0, false), {
      zeroParam: 'classifier.weight',
      steps: 1,
    });
  });

  it('leaks no tensors over steps, getState and setState', () => {
    const { params } = setup(3);
    const opt = createOptimizer({ kind: 'adamw' }, params);
    const base = tf.memory().numTensors;
    const grads = new Map([...params].map(([n, p]) => [n, tf.onesLike(p)]));
    opt.step(grads, 0.1);
    opt.step(grads, 0.1);
    const st = opt.getState();
    opt.setState(st);
    st.tensors.forEach((t) => t.dispose());
    grads.forEach((g) => g.dispose());
    expect(tf.memory().numTensors).toBe(base);
    opt.dispose();
    expect(tf.memory().numTensors).toBe(base - 2 * params.size);
  });

  it('state round trip resumes identically', () => {
    const a = setup(5);
    const b = setup(5);
    const optA = createOptimizer({ kind: 'adamw', weightDecay: 0.05 }, a.params);
    const grads = (s: number) => new Map(a.refs.map((r, k) => [r.name, tf.tensor(a.gradsFor(s)[k], r.shape)]));
    for (let s = 0; s < 2; s++) optA.step(grads(s), 0.1);
    const st = optA.getState();
    expect(st.scalars.step).toBe(2);
    expect(st.scalars.paramSteps['classifier.weight']).toBe(2);
    // b starts from a's weights and a's optimizer state.
    for (const [n, p] of a.params) b.params.get(n)!.assign(p);
    const optB = createOptimizer({ kind: 'adamw', weightDecay: 0.05 }, b.params);
    optB.setState(st);
    optA.step(grads(2), 0.05);
    optB.step(grads(2), 0.05);
    for (const [n, p] of a.params) expect(Array.from(b.params.get(n)!.dataSync())).toEqual(Array.from(p.dataSync()));
  });

  it('parameters without a gradient are left alone; bad gradients and state are named', () => {
    const { params } = setup(1);
    const opt = createOptimizer({ kind: 'sgd', momentum: 0.9 }, params);
    const before = params.get('classifier.weight')!.dataSync().slice();
    opt.step(new Map([['vit.embeddings.cls_token', tf.ones([1, 1, 4])]]), 0.1);
    expect(Array.from(params.get('classifier.weight')!.dataSync())).toEqual(Array.from(before));
    expect(opt.getState().scalars.paramSteps).toMatchObject({ 'vit.embeddings.cls_token': 1, 'classifier.weight': 0 });
    expect(() => opt.step(new Map([['classifier.weight', tf.ones([4, 2])]]), 0.1)).toThrow(/wrong shape: classifier.weight/);
    expect(() => opt.step(new Map([['head.weight', tf.ones([2])]]), 0.1)).toThrow(TensorMismatchError);
    expect(() => opt.step(new Map(), Number.NaN)).toThrow(OptionError);
    const st = opt.getState();
    st.tensors.delete('momentum_buffer.classifier.weight');
    expect(() => opt.setState(st)).toThrow(/missing: momentum_buffer.classifier.weight/);
    expect(() => opt.setState({ ...st, kind: 'adamw' })).toThrow(/'adamw'/);
    expect(() => createOptimizer({ kind: 'sgd', nesterov: true, momentum: 0 }, params)).toThrow(/nesterov/);
    expect(() => createOptimizer({ kind: 'adam' as OptimizerKind }, params)).toThrow(/option 'optimizer': unknown kind "adam" \(adamw, sgd, lamb\)/);
  });
});
