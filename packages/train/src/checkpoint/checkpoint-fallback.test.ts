import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FileFormatError, MaskSubError, tf } from '@masksub/core';
import * as durable from './durable-fs.js';
import { checkpointsDir, disposeCheckpoint, latestCheckpoint, loadLatestCheckpoint, saveCheckpoint, type CheckpointState } from './checkpoint.js';

let runDir = '';
beforeEach(async () => {
  runDir = await mkdtemp(join(tmpdir(), 'masksub-ckpt-fb-'));
});
afterEach(async () => {
  vi.restoreAllMocks();
  tf.disposeVariables();
  await rm(runDir, { recursive: true, force: true });
});

function state(step: number, value = step): CheckpointState {
  return { step, epoch: 0, model: new Map([['w', tf.variable(tf.fill([4], value))]]) };
}

async function valueOf(runDir: string, log: (m: string) => void): Promise<{ step: number; w: number[] }> {
  const c = (await loadLatestCheckpoint(runDir, { log }))!;
  const out = { step: c.step, w: Array.from(c.model.get('w')!.dataSync()) };
  disposeCheckpoint(c);
  return out;
}

describe('choosing the checkpoint to resume from', () => {
  it('a latest checkpoint with a flipped byte (right size) falls back to the previous one and says why', async () => {
    await saveCheckpoint(runDir, state(10));
    await saveCheckpoint(runDir, state(20));
    const file = join(checkpointsDir(runDir), 'step-20', 'model.safetensors');
    const bytes = await readFile(file);
    bytes[bytes.length - 1] ^= 0x01;
    await writeFile(file, bytes);
    const notes: string[] = [];
    expect(await valueOf(runDir, (m) => notes.push(m))).toEqual({ step: 10, w: [10, 10, 10, 10] });
    expect(notes[0]).toMatch(/skipped checkpoint .*step-20: .*model\.safetensors: sha256 does not match the manifest/);
    expect(notes[1]).toMatch(/resuming from the older checkpoint .*step-10 \(step 10\)/);
  });
  it('a truncated latest checkpoint is skipped with a note, not silently', async () => {
    await saveCheckpoint(runDir, state(10));
    await saveCheckpoint(runDir, state(20));
    await truncate(join(checkpointsDir(runDir), 'step-20', 'model.safetensors'), 10);
    const notes: string[] = [];
    expect((await valueOf(runDir, (m) => notes.push(m))).step).toBe(10);
    expect(notes.join('\n')).toMatch(/skipped checkpoint .*step-20: model\.safetensors has 10 bytes, the manifest says \d+ \(truncated\?\)/);
  });
  it('no usable checkpoint at all is null (the caller reports it)', async () => {
    await saveCheckpoint(runDir, state(10));
    await truncate(join(checkpointsDir(runDir), 'step-10', 'model.safetensors'), 3);
    expect(await loadLatestCheckpoint(runDir, { log: () => {} })).toBeNull();
  });
});

describe('what is never written', () => {
  it('requireFinite refuses NaN/Inf weights, naming them, and keeps the last good checkpoint the latest', async () => {
    await saveCheckpoint(runDir, state(10), { requireFinite: true });
    const bad: CheckpointState = { step: 20, epoch: 0, model: new Map([['w', tf.variable(tf.tensor([1, Infinity, NaN, 2]))]]) };
    const err = await saveCheckpoint(runDir, bad, { requireFinite: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MaskSubError);
    expect((err as Error).message).toMatch(/the weights diverged at step 20: NaN or Inf in 'w' \(2 of 4\); not written as a checkpoint/);
    expect(await latestCheckpoint(runDir)).toBe(join(checkpointsDir(runDir), 'step-10'));
  });
  it('ENOSPC while checkpointing is a message naming the folder, and the previous checkpoint stays', async () => {
    await saveCheckpoint(runDir, state(10));
    vi.spyOn(durable, 'writeFileSynced').mockImplementationOnce(async () => {
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    });
    const err = await saveCheckpoint(runDir, state(20)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FileFormatError);
    expect((err as Error).message).toMatch(/checkpoints: cannot write the checkpoint of step 20 \(ENOSPC: no space left on device, write\); the previous checkpoints are intact/);
    expect(await latestCheckpoint(runDir)).toBe(join(checkpointsDir(runDir), 'step-10'));
  });
});
