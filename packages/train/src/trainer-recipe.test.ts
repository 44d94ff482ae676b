/**
 * The recipe around the step (issue 10 items 8, 10, 11, 12, 15 and model_config): in-process
 * runs of a 2-layer ViT on MNIST, a few steps each, on the cpu backend.
 */
import '@masksub/vit';
import '@masksub/swin';
import '@masksub/resnet';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadPretrained, OptionError, parseSafetensors } from '@masksub/core';
import { parseRunConfig, type RunConfigInput } from './config.js';
import { trainRun } from './trainer.js';

const tmp = mkdtempSync(join(tmpdir(), 'masksub-recipe-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const vitConfig = {
  model_type: 'vit', image_size: 28, patch_size: 7, num_channels: 1, hidden_size: 16, num_hidden_layers: 2,
  num_attention_heads: 2, intermediate_size: 32, hidden_act: 'gelu', layer_norm_eps: 1e-6, num_labels: 10,
};
const modelFile = join(tmp, 'vit.json');
writeFileSync(modelFile, JSON.stringify(vitConfig));

let runs = 0;
/** A run config on top of the tiny setup; `over` replaces whole sections' keys. */
function config(over: Partial<RunConfigInput> & { train?: Partial<NonNullable<RunConfigInput['train']>> } = {}) {
  const input: RunConfigInput = {
    model: modelFile,
    data: { train: 'mnist:train', train_limit: 64, mean: [0.13], std: [0.31] },
    optimizer: { lr: 0.003 },
    ...over,
    train: { batch_size: 8, steps: 4, seed: 3, ...over.train },
    run: { dir: join(tmp, `run-${runs++}`), log_every: 1, checkpoint_every: 2, quiet: true, backend: 'cpu', ...over.run },
  };
  return parseRunConfig(input);
}
function trainLines(dir: string): Record<string, number>[] {
  return readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.type === 'train');
}
const quiet = { log: () => undefined, stream: { write: () => true } as unknown as NodeJS.WritableStream };

describe('BCE target threshold from the run config (item 8)', () => {
  it('binarises the smoothed targets of the main loss (timm target_threshold)', async () => {
    const first = async (extra: object) => {
      const c = config({ augment: { label_smoothing: 0.1 }, train: { loss: 'bce', steps: 1, ...extra } });
      await trainRun(c, quiet);
      return trainLines(c.run.dir)[0];
    };
    const soft = await first({});
    const hard = await first({ bce_target_thresh: 0.05 });
    // Same weights and batch at step 1 (deterministic cpu run): only the target differs (0.91/0.01
    // smoothed vs 1/0); near-zero logits make the difference small but far above float noise.
    expect(Math.abs(hard.loss_main - soft.loss_main)).toBeGreaterThan(1e-5);
  });
  it('is refused by name when the loss is not BCE', async () => {
    const run = trainRun(config({ train: { loss: 'ce', bce_target_thresh: 0.2 } }), quiet);
    await expect(run).rejects.toThrow(OptionError);
    await expect(trainRun(config({ train: { loss: 'ce', bce_target_thresh: 0.2 } }), quiet)).rejects.toThrow(/train\.bce_target_thresh/);
  });
});

describe('loss check before the update (item 12)', () => {
  // Plain SGD at lr 1e8 on the tiny ViT: updates 1 and 2 are finite, update 3's loss is NaN.
  const diverging = (checkpointEvery: number) =>
    config({ optimizer: { kind: 'sgd', lr: 1e8, weight_decay: 0 }, masksub: { variant: 'none' }, train: { steps: 8 }, run: { checkpoint_every: checkpointEvery } });
  const readCheckpoint = (dir: string, name: string) => ({
    model: readFileSync(join(dir, 'checkpoints', name, 'model.safetensors')),
    state: JSON.parse(readFileSync(join(dir, 'checkpoints', name, 'state.json'), 'utf8')) as Record<string, unknown>,
  });

  it('skips the diverged update, stops naming the cause, and leaves the checkpoint of the last finite step', async () => {
    const a = diverging(100);
    const failure = await trainRun(a, quiet).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(OptionError);
    expect((failure as OptionError).option).toBe('optimizer.lr');
    expect(String((failure as Error).message)).toMatch(/update 3 diverged: the loss is NaN.*skipped.*step 2.*learning rate is too high.*bad data/s);
    // No regular checkpoint was due (every 100): the run wrote the last finite state itself.
    expect(readFileSync(join(a.run.dir, 'checkpoints', 'latest'), 'utf8').trim()).toBe('step-2');
    expect(readdirSync(join(a.run.dir, 'checkpoints')).filter((d) => d.startsWith('step-'))).toEqual(['step-2']);
    expect(trainLines(a.run.dir).map((l) => l.step)).toEqual([1, 2]);

    // It is the exact state after update 2: the same bytes and stream positions as a run that
    // checkpointed step 2 on schedule (and that too stops at update 3 without a step-3 checkpoint).
    const b = diverging(1);
    await expect(trainRun(b, quiet)).rejects.toThrow(/update 3 diverged/);
    expect(readdirSync(join(b.run.dir, 'checkpoints')).filter((d) => d.startsWith('step-')).sort()).toEqual(['step-1', 'step-2']);
    const ours = readCheckpoint(a.run.dir, 'step-2');
    const scheduled = readCheckpoint(b.run.dir, 'step-2');
    expect(ours.model.equals(scheduled.model)).toBe(true);
    expect(ours.state.rng).toEqual(scheduled.state.rng);
    expect(ours.state.dataLoader).toEqual(scheduled.state.dataLoader);
  });
});

/** The fine-tuned folder's tensors. */
function weightsOf(dir: string, folder = 'model') {
  return parseSafetensors(readFileSync(join(dir, folder, 'model.safetensors')), folder);
}

/** Copies a finished run folder without its last checkpoint and final model: a run killed after its previous checkpoint. */
function killedCopy(dir: string, lastCheckpoint: string): string {
  const copy = `${dir}-killed`;
  cpSync(dir, copy, { recursive: true });
  rmSync(join(copy, 'checkpoints', lastCheckpoint), { recursive: true });
  rmSync(join(copy, 'model'), { recursive: true });
  rmSync(join(copy, 'model-ema'), { recursive: true, force: true });
  return copy;
}

describe('gradient accumulation (item 11)', () => {
  it('one update over 2 micro-batches of 4 equals one update over a batch of 8, up to float order', async () => {
    const recipe = { optimizer: { kind: 'sgd' as const, lr: 0.05, momentum: 0.9, weight_decay: 0.01, clip_grad: 0.5 }, masksub: { variant: 'none' as const } };
    const large = config({ ...recipe, train: { batch_size: 8, steps: 3 } });
    const micro = config({ ...recipe, train: { batch_size: 4, accum_steps: 2, steps: 3 } });
    const single = config({ ...recipe, train: { batch_size: 4, steps: 3 } });
    for (const c of [large, micro, single]) await trainRun(c, quiet);
    const a = weightsOf(large.run.dir);
    const b = weightsOf(micro.run.dir);
    const c = weightsOf(single.run.dir);
    let maxDiff = 0;
    let maxOther = 0;
    for (const [name, t] of a) {
      const u = b.get(name)!.data as Float32Array;
      const v = c.get(name)!.data as Float32Array;
      (t.data as Float32Array).forEach((x, i) => {
        maxDiff = Math.max(maxDiff, Math.abs(x - u[i]));
        maxOther = Math.max(maxOther, Math.abs(x - v[i]));
      });
    }
    expect(maxDiff).toBeLessThan(1e-6);
    // The same steps on batches of 4 without accumulation land far away.
    expect(maxOther).toBeGreaterThan(1e-3);
    // Steps count updates; the logged loss is the mean over the micro-batches (the large batch's loss).
    const la = trainLines(large.run.dir);
    const lb = trainLines(micro.run.dir);
    expect(lb.map((l) => l.step)).toEqual([1, 2, 3]);
    expect(lb.map((l) => l.epoch)).toEqual(la.map((l) => l.epoch));
    lb.forEach((l, i) => expect(l.loss).toBeCloseTo(la[i].loss, 5));
    expect(lb.map((l) => l.lr)).toEqual(la.map((l) => l.lr));
    // Epochs become updates: 64 images in micro-batches of 4 are 16 micro-batches, 8 updates an epoch.
    const byEpochs = config({ ...recipe, train: { batch_size: 4, accum_steps: 2, steps: undefined, epochs: 0.25 } });
    expect((await trainRun(byEpochs, quiet)).steps).toBe(2);
  });

  it('a run with accumulation killed after a checkpoint resumes to the same weights, bit for bit', async () => {
    const c = config({ augment: { mixup: 0.2, cutmix: 1 }, train: { batch_size: 4, accum_steps: 2, steps: 4 }, run: { checkpoint_every: 2 } });
    await trainRun(c, quiet);
    const killed = killedCopy(c.run.dir, 'step-4');
    await trainRun({ ...c, run: { ...c.run, dir: killed } }, { ...quiet, resume: true });
    expect(readFileSync(join(killed, 'model', 'model.safetensors')).equals(readFileSync(join(c.run.dir, 'model', 'model.safetensors')))).toBe(true);
    expect(trainLines(killed).map((l) => l.loss)).toEqual(trainLines(c.run.dir).map((l) => l.loss));
  });
});

describe('model EMA (item 10)', () => {
  const decay = 0.9;
  const emaRun = (over: Parameters<typeof config>[0] = {}) =>
    config({
      ...over,
      data: { train: 'mnist:train', train_limit: 64, eval: 'mnist:test', eval_limit: 16, mean: [0.13], std: [0.31] },
      train: { ema_decay: decay, steps: 4, ...over.train },
      run: { checkpoint_every: 2, eval_every: 2, ...over.run },
    });

  it('follows ema = decay * ema + (1 - decay) * w after every update, is evaluated as ema_*, and is saved as model-ema/', async () => {
    // With SGD and no momentum, the EMA after 2 updates is checked against the checkpoints' weights:
    // e2 = d^2 w0 + d (1 - d) w1 + (1 - d) w2.
    const c = emaRun({ optimizer: { kind: 'sgd', lr: 0.1, weight_decay: 0 }, train: { steps: 2 }, run: { checkpoint_every: 1, keep_checkpoints: 3 } });
    const r = await trainRun(c, quiet);
    const ckpt = (n: number, file: string) => parseSafetensors(readFileSync(join(c.run.dir, 'checkpoints', `step-${n}`, file)), file);
    const w1 = ckpt(1, 'model.safetensors');
    const e1 = ckpt(1, 'ema.safetensors');
    const w2 = ckpt(2, 'model.safetensors');
    const e2 = ckpt(2, 'ema.safetensors');
    let worst = 0;
    for (const [name, t] of w2) {
      const expected = (e1.get(name)!.data as Float32Array).map((e, i) => Math.fround(Math.fround(e * decay) + Math.fround((t.data as Float32Array)[i] * Math.fround(1 - decay))));
      const got = e2.get(name)!.data as Float32Array;
      got.forEach((g, i) => (worst = Math.max(worst, Math.abs(g - expected[i]))));
      expect(w1.has(name)).toBe(true);
    }
    expect(worst).toBeLessThan(1e-6);
    // The EMA lags: it is not the live model.
    const name = [...w2.keys()].find((n) => n.endsWith('classifier.bias'))!;
    expect(Array.from(e2.get(name)!.data as Float32Array)).not.toEqual(Array.from(w2.get(name)!.data as Float32Array));
    // The saved EMA folder is the step-2 EMA (a 1-D tensor: checkpoints keep the internal layout), loadable like model/ (same side files).
    const saved = weightsOf(c.run.dir, 'model-ema');
    expect(Array.from(saved.get(name)!.data as Float32Array)).toEqual(Array.from(e2.get(name)!.data as Float32Array));
    expect(readdirSync(join(c.run.dir, 'model-ema')).sort()).toEqual(readdirSync(join(c.run.dir, 'model')).sort());
    expect(r.emaModelDir).toBe(join(c.run.dir, 'model-ema'));
    const reloaded = await loadPretrained(r.emaModelDir!, { log: () => undefined });
    expect(Array.from(reloaded.model.params.get(name).dataSync())).toEqual(Array.from(e2.get(name)!.data as Float32Array));
    reloaded.model.dispose();
    // Eval lines carry the EMA model's metrics beside the live ones.
    const evals = readFileSync(join(c.run.dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.type === 'eval');
    expect(evals.length).toBeGreaterThan(0);
    for (const e of evals) for (const k of ['top1', 'top5', 'loss']) expect(typeof e[`ema_${k}`]).toBe('number');
    expect(r.finalEma?.metrics.top1).toBe(evals.at(-1).ema_top1);
    expect(r.finalEma?.metrics.loss).not.toBe(r.final?.metrics.loss);
  });

  it('a killed and resumed run with EMA equals an uninterrupted one, EMA included, bit for bit', async () => {
    const c = emaRun({ augment: { mixup: 0.2, cutmix: 1 } });
    await trainRun(c, quiet);
    const killed = killedCopy(c.run.dir, 'step-4');
    await trainRun({ ...c, run: { ...c.run, dir: killed } }, { ...quiet, resume: true });
    for (const folder of ['model', 'model-ema']) {
      expect(readFileSync(join(killed, folder, 'model.safetensors')).equals(readFileSync(join(c.run.dir, folder, 'model.safetensors')))).toBe(true);
    }
    const evalLines = (dir: string) => readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.type === 'eval').map(({ time: _t, ...rest }) => rest);
    expect(evalLines(killed)).toEqual(evalLines(c.run.dir));
  });
});

describe('layer-wise lr decay from the model\'s parameter groups (item 13)', () => {
  it('trains a Swin (which threw before: no num_hidden_layers) and a ResNet (silently 1 before) with optimizer.layer_decay', async () => {
    const swin = join(tmp, 'swin.json');
    writeFileSync(swin, JSON.stringify({ model_type: 'swin', image_size: 28, patch_size: 7, num_channels: 1, embed_dim: 8, depths: [1, 1], num_heads: [2, 2], window_size: 2, num_labels: 10 }));
    const resnet = join(tmp, 'resnet.json');
    // 8 x 8 inputs: convolutions on the pure-JS cpu backend are slow.
    writeFileSync(resnet, JSON.stringify({ model_type: 'resnet_cifar', depth: 8, num_classes: 10, num_channels: 1, image_size: 8 }));
    for (const [model, imageSize] of [[swin, 28], [resnet, 8]] as const) {
      const data = { train: 'mnist:train', train_limit: 64, mean: [0.13], std: [0.31], image_size: imageSize };
      const r = await trainRun(config({ model, data, optimizer: { lr: 0.003, layer_decay: 0.65 }, train: { steps: 1 } }), quiet);
      expect(r.steps).toBe(1);
    }
  });
});
