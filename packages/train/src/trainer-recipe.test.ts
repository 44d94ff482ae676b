/**
 * The recipe around the step (issue 10 items 8, 10, 11, 12, 15 and model_config): in-process
 * runs of a 2-layer ViT on MNIST, a few steps each, on the cpu backend.
 */
import '@masksub/vit';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { OptionError } from '@masksub/core';
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
