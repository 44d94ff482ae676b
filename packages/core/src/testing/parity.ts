/**
 * Test support shared by the architecture packages' parity, zoo and verify tests: reading an
 * hf-tiny fixture (config, weights, reference), comparing our outputs and gradients with
 * PyTorch's, and running the `masksub` CLI from source. One copy here instead of one per package,
 * so every architecture is held to the same checks.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { initBackend, type BackendName } from '../backend/index.js';
import type { DropMask } from '../contract/drop.js';
import { readSafetensors } from '../io/safetensors.js';
import { toFloat32, type HostTensor, type TensorMap } from '../io/types.js';
import type { GradientResult } from '../masksub.js';
import type { ParameterStore } from '../model.js';
import type { HFConfig } from '../registry.js';
import { tf } from '../tf.js';
import { fixturePath } from './shared.js';

/** Root of the repository (the tests' working directory for CLI runs). */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');

/** Load/verify options that keep test output clean. */
export const quiet: { log: (message: string) => void } = { log: () => {} };

/** Largest |a[i]|. */
export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** Largest |a[i] - b[i]|; asserts equal lengths first (a shorter side would otherwise pass). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Switches to `backend` (quietly) and asserts that it really is the active one. */
export async function useBackend(backend: BackendName): Promise<void> {
  await initBackend({ prefer: backend, log: quiet.log });
  expect(tf.getBackend()).toBe(backend);
}

/** The fixture's config.json. */
export function readFixtureConfig(arch: string): HFConfig {
  return JSON.parse(readFileSync(fixturePath(arch, 'config.json'), 'utf8')) as HFConfig;
}

/** Loads the fixture's model.safetensors into `params` (named `<arch>/model.safetensors` in errors). */
export function loadFixtureWeights(
  params: Pick<ParameterStore, 'load'>,
  arch: string,
  ignore?: (name: string) => boolean,
): { loaded: string[]; created: string[] } {
  return params.load(readSafetensors(fixturePath(arch, 'model.safetensors')), `${arch}/model.safetensors`, ignore);
}

/**
 * The usual parity set-up: switch to `backend`, build the model from the fixture's config, load
 * its model.safetensors and read its reference. The caller asserts `created` / `loaded`.
 */
export async function loadParityFixture<M extends { params: Pick<ParameterStore, 'load'> }>(
  arch: string,
  backend: BackendName,
  build: (config: HFConfig) => M,
  ignore?: (name: string) => boolean,
): Promise<{ model: M; ref: TensorMap; loaded: string[]; created: string[] }> {
  await useBackend(backend);
  const model = build(readFixtureConfig(arch));
  const { loaded, created } = loadFixtureWeights(model.params, arch, ignore);
  return { model, ref: readReference(arch), loaded, created };
}

/** The fixture's reference.safetensors (PyTorch inputs, masks, outputs and gradients). */
export function readReference(arch: string): TensorMap {
  return readSafetensors(fixturePath(arch, 'reference.safetensors'));
}

/** One reference entry; a missing one fails with its name rather than as `undefined` later. */
export function referenceEntry(ref: TensorMap, name: string): HostTensor {
  const t = ref.get(name);
  if (!t) throw new Error(`reference lacks ${name}`);
  return t;
}

/** A reference entry as a tf tensor of its own shape (int64 ids and labels become int32). */
export function referenceTensor<R extends tf.Rank = tf.Rank>(ref: TensorMap, name: string, dtype: 'float32' | 'int32' = 'float32'): tf.Tensor<R> {
  const t = referenceEntry(ref, name);
  const data = dtype === 'int32' ? Int32Array.from(toFloat32(t)) : toFloat32(t);
  return tf.tensor(data, t.shape as tf.ShapeMap[R], dtype) as tf.Tensor<R>;
}

/** A reference entry's values as float32 (logits, losses). */
export function referenceValues(ref: TensorMap, name: string): Float32Array {
  return toFloat32(referenceEntry(ref, name));
}

/** The reference's token-removal mask (`input.keep_indices`, [B, K]). */
export function referenceKeptPatches(ref: TensorMap): Extract<DropMask, { kind: 'token-removal' }> {
  const keep = referenceEntry(ref, 'input.keep_indices');
  return { kind: 'token-removal', batch: keep.shape[0], keep: keep.shape[1], keepIndices: Int32Array.from(toFloat32(keep)) };
}

/** The reference's mask-token mask (`input.bool_masked_pos`, [B, N]). */
export function referenceMaskedTokens(ref: TensorMap): Extract<DropMask, { kind: 'mask-token' }> {
  const masked = referenceEntry(ref, 'input.bool_masked_pos');
  return { kind: 'mask-token', batch: masked.shape[0], tokens: masked.shape[1], masked: Uint8Array.from(toFloat32(masked)) };
}

/** Reference keys of one MaskSub recipe (the fixture format core's verify reads). */
export interface RecipeKeys {
  mainLogits: string;
  subLogits: string;
  lossMain: string;
  lossSub: string;
  /** Prefix of the per-parameter gradients: `<gradPrefix><checkpoint name>`. */
  gradPrefix: string;
}

/** `ce.` / `bce.` keys, or the unprefixed contrastive ones (`*_logits_per_image`). */
export function recipeKeys(recipe: 'ce' | 'bce' | 'contrastive'): RecipeKeys {
  if (recipe === 'contrastive') {
    return { mainLogits: 'main_logits_per_image', subLogits: 'sub_logits_per_image', lossMain: 'loss_main', lossSub: 'loss_sub', gradPrefix: 'grad.' };
  }
  return { mainLogits: `${recipe}.main_logits`, subLogits: `${recipe}.sub_logits`, lossMain: `${recipe}.loss_main`, lossSub: `${recipe}.loss_sub`, gradPrefix: `${recipe}.grad.` };
}

/**
 * Main and sub logits within `logits`, and each weighted loss half within `loss`: the fixture's
 * halves are weighted (loss_main = weight * main loss, loss_sub = weight * sub loss).
 */
export function expectStepMatches(r: GradientResult, ref: TensorMap, keys: RecipeKeys, tol = { logits: 1e-4, loss: 1e-5 }): void {
  expect(r.subLogits, 'the step ran a sub pass').not.toBeNull();
  expect(maxAbsDiff(r.mainLogits.dataSync(), referenceValues(ref, keys.mainLogits))).toBeLessThan(tol.logits);
  expect(maxAbsDiff(r.subLogits!.dataSync(), referenceValues(ref, keys.subLogits))).toBeLessThan(tol.logits);
  expect(Math.abs(r.weights.main * r.lossMain - referenceValues(ref, keys.lossMain)[0])).toBeLessThan(tol.loss);
  expect(Math.abs(r.weights.sub * r.lossSub - referenceValues(ref, keys.lossSub)[0])).toBeLessThan(tol.loss);
}

export interface GradientTolerances {
  /** Max |ours - theirs| over the reference's max |g|. */
  relTol: number;
  /**
   * Floor of that denominator (core's verify: gradAbsolute / gradRelative = 1e-5). It covers
   * gradients that are analytically zero, e.g. attention key biases (softmax ignores a per-query
   * constant), where both sides are float noise.
   */
  floor?: number;
  /**
   * Gradients known to be analytically zero, checked absolutely instead: the reference's noise
   * and our difference from it both below `absTol`. For noise too large for `floor` to hide.
   */
  analyticallyZero?: { names: RegExp; absTol: number };
}

/**
 * Compares EVERY `<gradPrefix>*` reference gradient with ours (mapped to the checkpoint layout):
 * ours exists, has the reference's shape and is within tolerance. Returns the parameter names
 * checked and the worst relative error, for callers that assert counts or headroom.
 */
export function expectGradientsMatch(
  model: { params: Pick<ParameterStore, 'gradientToCheckpoint'> },
  ref: TensorMap,
  gradPrefix: string,
  grads: ReadonlyMap<string, tf.Tensor>,
  tol: GradientTolerances,
): { names: string[]; worst: number } {
  const floor = tol.floor ?? 1e-5;
  const names: string[] = [];
  let worst = 0;
  for (const [key, reference] of ref) {
    if (!key.startsWith(gradPrefix)) continue;
    const name = key.slice(gradPrefix.length);
    names.push(name);
    const g = grads.get(name);
    expect(g, `gradient of ${name}`).toBeDefined();
    const ours = model.params.gradientToCheckpoint(name, g!);
    const theirs = toFloat32(reference);
    expect(ours.shape).toEqual(reference.shape);
    const err = maxAbsDiff(ours.data as Float32Array, theirs);
    if (tol.analyticallyZero?.names.test(name)) {
      expect(maxAbs(theirs)).toBeLessThan(tol.analyticallyZero.absTol);
      expect(err, `gradient of ${name}`).toBeLessThan(tol.analyticallyZero.absTol);
      continue;
    }
    const rel = err / Math.max(maxAbs(theirs), floor);
    worst = Math.max(worst, rel);
    expect(rel, `gradient of ${name}`).toBeLessThan(tol.relTol);
  }
  return { names, worst };
}

/** Releases a step's tensors (logits and every gradient). */
export function disposeStep(r: GradientResult): void {
  tf.dispose([r.mainLogits, ...(r.subLogits ? [r.subLogits] : []), ...r.grads.values()]);
}

/**
 * `actual` holds the same values as `expected` for every name of `expected` (`skip` aside);
 * with `sameNames`, and no other names.
 */
export function expectSameTensors(actual: TensorMap, expected: TensorMap, options: { sameNames?: boolean; shapes?: boolean; skip?: (name: string) => boolean } = {}): void {
  if (options.sameNames) expect([...actual.keys()].sort()).toEqual([...expected.keys()].sort());
  for (const [name, t] of expected) {
    if (options.skip?.(name)) continue;
    if (options.shapes) expect(actual.get(name)!.shape, name).toEqual(t.shape);
    expect(Array.from(toFloat32(actual.get(name)!)), name).toEqual(Array.from(toFloat32(t)));
  }
}

/**
 * One output of ONNX Runtime on `file` for tf inputs (int32 ids are fed as ONNX's int64), as the
 * independent check of our ONNX import.
 */
export async function onnxRuntimeOutput(file: string, inputs: Readonly<Record<string, tf.Tensor>>, output = 'logits'): Promise<Float32Array> {
  const ort = await import('onnxruntime-node');
  const session = await ort.InferenceSession.create(file);
  const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {};
  for (const [name, t] of Object.entries(inputs)) {
    feeds[name] =
      t.dtype === 'int32'
        ? new ort.Tensor('int64', BigInt64Array.from(t.dataSync() as Int32Array, (v) => BigInt(v)), t.shape)
        : new ort.Tensor('float32', t.dataSync() as Float32Array, t.shape);
  }
  return (await session.run(feeds))[output].data as Float32Array;
}

/**
 * Runs the `masksub` CLI from source (tsx, `--conditions=source`, so never a stale dist/) in the
 * repository root; `env` adds variables (e.g. MASKSUB_PLUGINS) to the inherited environment.
 */
export function masksubWithEnv(env: Readonly<Record<string, string>>, ...args: string[]): SpawnSyncReturns<string> {
  const cli = join(repoRoot, 'packages/train/src/cli/main.ts');
  return spawnSync(process.execPath, ['--import', 'tsx', '--conditions=source', cli, ...args], {
    cwd: repoRoot,
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, ...env },
  });
}

/** `masksub <args>` from source with the inherited environment. */
export function masksub(...args: string[]): SpawnSyncReturns<string> {
  return masksubWithEnv({}, ...args);
}
