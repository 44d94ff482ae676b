import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createOptimizer, FileFormatError, OptionError, Rng, TensorMismatchError, tf } from '@masksub/core';
import {
  checkpointsDir,
  disposeCheckpoint,
  latestCheckpoint,
  loadCheckpoint,
  loadLatestCheckpoint,
  restoreVariables,
  saveCheckpoint,
  type CheckpointState,
} from './checkpoint.js';

let runDir = '';
beforeEach(async () => {
  runDir = await mkdtemp(join(tmpdir(), 'masksub-ckpt-'));
});
afterEach(async () => {
  tf.disposeVariables();
  await rm(runDir, { recursive: true, force: true });
});

/** Values whose bits a lossy path would change: NaN payload, -0, infinities, subnormals. */
function trickyFloats(n: number, rng: Rng): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal() * 10 ** (rng.int(20) - 10);
  const u = new Uint32Array(a.buffer);
  u[0] = 0x7fc01234; // NaN with a payload
  u[1] = 0x80000000; // -0
  u[2] = 0x00000001; // smallest subnormal
  a[3] = -Infinity;
  return a;
}

function makeModel(seed: number): Map<string, tf.Variable> {
  const rng = new Rng(seed);
  return new Map<string, tf.Variable>([
    ['vit.embeddings.cls_token', tf.variable(tf.tensor(trickyFloats(8, rng), [1, 1, 8]))],
    ['vit.encoder.layer.0.attention.attention.query.weight', tf.variable(tf.tensor(trickyFloats(64, rng), [8, 8]))],
    ['classifier.bias', tf.variable(tf.tensor(trickyFloats(4, rng), [4]))],
  ]);
}

function bits(t: tf.Tensor): number[] {
  const d = t.dataSync();
  return Array.from(new Uint32Array(d.buffer, d.byteOffset, d.length));
}

function simpleState(step: number, model = makeModel(step)): CheckpointState {
  return { step, epoch: step / 10, model, config: { tag: `s${step}` } };
}

describe('saveCheckpoint / loadCheckpoint', () => {
  it('round trip restores model, optimizer, RNGs, loader position and config bit-exactly', async () => {
    const model = makeModel(1);
    const modelInt = new Map<string, tf.Tensor>([...model, ['resnet.embedder.num_batches_tracked', tf.tensor([7], [1], 'int32')]]);
    const opt = createOptimizer({ kind: 'adamw', weightDecay: 0.05 }, model);
    const grads = new Map([...model].map(([n, v]) => [n, tf.randomNormal(v.shape, 0, 1, 'float32', 3)]));
    opt.step(grads, 1e-3);
    const optState = opt.getState();
    const dataRng = new Rng(11);
    const maskRng = new Rng(12);
    dataRng.next();
    const state: CheckpointState = {
      step: 42,
      epoch: 3,
      model: modelInt,
      optimizer: optState,
      rng: { data: dataRng.getState(), mask: maskRng.getState() },
      dataLoader: { epochOrderSeed: 5, offset: 128, shards: ['a', 'b'] },
      config: { model: 'vit', lr: 1e-3, nested: { keep: 0.5 } },
    };
    const before = tf.memory().numTensors;
    const dir = await saveCheckpoint(runDir, state);
    expect(tf.memory().numTensors).toBe(before);
    expect(dir).toBe(join(checkpointsDir(runDir), 'step-42'));
    expect((await readFile(join(checkpointsDir(runDir), 'latest'), 'utf8')).trim()).toBe('step-42');

    const loaded = await loadCheckpoint(dir);
    expect(loaded.step).toBe(42);
    expect(loaded.epoch).toBe(3);
    expect(loaded.dataLoader).toEqual(state.dataLoader);
    expect(loaded.config).toEqual(state.config);
    expect([...loaded.model.keys()].sort()).toEqual([...modelInt.keys()].sort());
    for (const [n, t] of modelInt) {
      expect(loaded.model.get(n)!.dtype).toBe(t.dtype);
      expect(loaded.model.get(n)!.shape).toEqual(t.shape);
      expect(bits(loaded.model.get(n)!), n).toEqual(bits(t));
    }
    expect(loaded.optimizer!.kind).toBe('adamw');
    expect(loaded.optimizer!.scalars).toEqual(optState.scalars);
    for (const [n, t] of optState.tensors) expect(bits(loaded.optimizer!.tensors.get(n)!), n).toEqual(bits(t));

    // Resuming: RNG streams continue where they were; the optimizer and weights accept the state.
    const resumedData = new Rng(loaded.rng.data);
    expect(resumedData.next()).toBe(dataRng.next());
    const model2 = makeModel(99);
    restoreVariables(model2, new Map([...loaded.model].filter(([n]) => model2.has(n))), dir);
    for (const [n, v] of model) expect(bits(model2.get(n)!)).toEqual(bits(v));
    const opt2 = createOptimizer({ kind: 'adamw', weightDecay: 0.05 }, model2);
    opt2.setState(loaded.optimizer!);
    expect(opt2.stepCount).toBe(1);
    expect(() => restoreVariables(model2, loaded.model, dir)).toThrow(TensorMismatchError);
    disposeCheckpoint(loaded);
    optState.tensors.forEach((t) => t.dispose());
  });

  it('loadLatestCheckpoint is null for a run without checkpoints', async () => {
    expect(await loadLatestCheckpoint(runDir)).toBeNull();
    expect(await latestCheckpoint(join(runDir, 'nope'))).toBeNull();
  });

  it('saving the same step again replaces it', async () => {
    await saveCheckpoint(runDir, { ...simpleState(5), config: 'first' });
    await saveCheckpoint(runDir, { ...simpleState(5), config: 'second' });
    const c = (await loadLatestCheckpoint(runDir))!;
    expect(c.config).toBe('second');
    disposeCheckpoint(c);
    expect((await readdir(checkpointsDir(runDir))).sort()).toEqual(['latest', 'step-5']);
  });

  it('rejects bad options by name', async () => {
    await expect(saveCheckpoint(runDir, simpleState(1), { keepLast: 0 })).rejects.toThrow(/keepLast/);
    await expect(saveCheckpoint(runDir, { ...simpleState(1), step: -1 })).rejects.toThrow(OptionError);
    await expect(saveCheckpoint(runDir, { ...simpleState(1), rng: { data: [1, 2, 3] as unknown as [number, number, number, number] } })).rejects.toThrow(/rng.data/);
  });
});

describe('crash safety', () => {
  it('ignores and removes temp folders left by a crashed writer', async () => {
    await saveCheckpoint(runDir, simpleState(10));
    const root = checkpointsDir(runDir);
    // A process that has exited: its pid is not alive any more.
    const deadPid = spawnSync(process.execPath, ['-e', '0']).pid!;
    const stale = join(root, `.tmp-20-${deadPid}`);
    await mkdir(stale);
    // Even a temp folder that looks complete is not a checkpoint until renamed.
    await writeFile(join(stale, 'model.safetensors'), 'half a file');
    await writeFile(join(stale, 'state.json'), '{"format":"masksub-checkpoint"');
    const ownStale = join(root, `.tmp-30-${process.pid}`);
    await mkdir(ownStale);

    expect(await latestCheckpoint(runDir)).toBe(join(root, 'step-10'));
    const entries = await readdir(root);
    expect(entries).not.toContain(`.tmp-20-${deadPid}`);
    expect(entries).not.toContain(`.tmp-30-${process.pid}`);
    const c = (await loadLatestCheckpoint(runDir))!;
    expect(c.step).toBe(10);
    disposeCheckpoint(c);
  });

  it('a save that fails half way leaves the previous checkpoint as the latest and no temp folder', async () => {
    await saveCheckpoint(runDir, simpleState(10));
    const model = makeModel(20);
    const opt = createOptimizer({ kind: 'adamw' }, model);
    const st = opt.getState();
    st.tensors.values().next().value!.dispose(); // fails after model.safetensors is written
    await expect(saveCheckpoint(runDir, { ...simpleState(20, model), optimizer: st })).rejects.toThrow(/disposed/);
    expect(await readdir(checkpointsDir(runDir))).toEqual(expect.arrayContaining(['latest', 'step-10']));
    expect(await readdir(checkpointsDir(runDir))).toHaveLength(2);
    expect((await readFile(join(checkpointsDir(runDir), 'latest'), 'utf8')).trim()).toBe('step-10');
    expect(await latestCheckpoint(runDir)).toBe(join(checkpointsDir(runDir), 'step-10'));
    st.tensors.forEach((t) => t.dispose());
  });

  it('a `latest` pointer one behind (crash before it was updated) still loads the newest complete one', async () => {
    await saveCheckpoint(runDir, simpleState(10));
    await saveCheckpoint(runDir, simpleState(20));
    await writeFile(join(checkpointsDir(runDir), 'latest'), 'step-10\n');
    expect(await latestCheckpoint(runDir)).toBe(join(checkpointsDir(runDir), 'step-20'));
  });

  it('a folder without a manifest is not complete and is skipped', async () => {
    await saveCheckpoint(runDir, simpleState(10));
    await mkdir(join(checkpointsDir(runDir), 'step-99'));
    expect(await latestCheckpoint(runDir)).toBe(join(checkpointsDir(runDir), 'step-10'));
    await expect(loadCheckpoint(join(checkpointsDir(runDir), 'step-99'))).rejects.toThrow(/state\.json.*not a complete checkpoint/);
  });

  it('a run resumed from an older step supersedes the abandoned newer checkpoint', async () => {
    await saveCheckpoint(runDir, simpleState(10));
    await saveCheckpoint(runDir, simpleState(20));
    await saveCheckpoint(runDir, simpleState(15));
    expect(await latestCheckpoint(runDir)).toBe(join(checkpointsDir(runDir), 'step-15'));
  });

  it('keepLast keeps only the K most recent', async () => {
    for (const s of [1, 2, 3, 4, 5]) await saveCheckpoint(runDir, simpleState(s), { keepLast: 2 });
    expect((await readdir(checkpointsDir(runDir))).sort()).toEqual(['latest', 'step-4', 'step-5']);
    expect((await readFile(join(checkpointsDir(runDir), 'latest'), 'utf8')).trim()).toBe('step-5');
  });
});

describe('corrupt checkpoints give clear errors', () => {
  async function saved(): Promise<string> {
    const model = makeModel(3);
    const opt = createOptimizer({ kind: 'sgd', momentum: 0.9 }, model);
    const st = opt.getState();
    const dir = await saveCheckpoint(runDir, { ...simpleState(7, model), optimizer: st });
    st.tensors.forEach((t) => t.dispose());
    return dir;
  }

  it('a flipped byte is caught by the checksum, naming the file', async () => {
    const dir = await saved();
    const path = join(dir, 'model.safetensors');
    const bytes = await readFile(path);
    bytes[bytes.length - 3] ^= 0x10;
    await writeFile(path, bytes);
    await expect(loadCheckpoint(dir)).rejects.toThrow(FileFormatError);
    await expect(loadCheckpoint(dir)).rejects.toThrow(/model\.safetensors: sha256 does not match/);
  });

  it('a truncated or missing tensor file is named', async () => {
    const dir = await saved();
    await truncate(join(dir, 'optimizer.safetensors'), 20);
    await expect(loadCheckpoint(dir)).rejects.toThrow(/optimizer\.safetensors: has 20 bytes/);
    await rm(join(dir, 'optimizer.safetensors'));
    await expect(loadCheckpoint(dir)).rejects.toThrow(/optimizer\.safetensors: missing or unreadable/);
  });

  it('a tensor the manifest lists but the file lacks is named', async () => {
    const dir = await saved();
    const manifestPath = join(dir, 'state.json');
    const m = JSON.parse(await readFile(manifestPath, 'utf8'));
    m.files['model.safetensors'].tensors.push('vit.encoder.layer.0.output.dense.weight');
    await writeFile(manifestPath, JSON.stringify(m));
    await expect(loadCheckpoint(dir)).rejects.toThrow(/missing: vit\.encoder\.layer\.0\.output\.dense\.weight/);
  });

  it('a broken manifest is named', async () => {
    const dir = await saved();
    await writeFile(join(dir, 'state.json'), '{"format": "masksub-checkpoint", ');
    await expect(loadCheckpoint(dir)).rejects.toThrow(/state\.json: is not valid JSON/);
  });
});
