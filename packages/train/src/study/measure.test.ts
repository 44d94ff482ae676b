/**
 * The measurement pass on an image-text contrastive study (a tiny random CLIPModel over a
 * byte-level CLIP tokenizer without merges, 514 tokens, 2 settings x 2 seeds, 2 steps on 32 CIFAR-10 test images captioned by
 * templates over classes.txt): every summary has finite clean and drop contrastive losses that
 * differ, a rerun of the measurement with the same seed gives the identical numbers, a new seed
 * other drop numbers and the same clean ones; measure keys the contrastive loss cannot use fail
 * naming the study file and setting (a batch of one pair before training, a text-only drop kind).
 *
 * Not the real CLIP vocabulary: building its tokenizer from the 49k merges takes about 2 s, and a
 * study loads it twice a cell (training, measurement). Not the hf-tiny CLIP fixture either: its
 * 64-token vocabulary fits no CLIP tokenizer (the byte characters alone are 512 tokens).
 */
import { clipTokenizerJson } from '@masksub/clip';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { describeShared, sharedPath } from '../../../core/src/testing/shared.js';
import { studyCells } from './cells.js';
import { measureTrainLoss } from './measure.js';
import { runStudy } from './run.js';
import { readStudy } from './schema.js';
import { readSummary } from './summary.js';

const tmp = mkdtempSync(join(tmpdir(), 'masksub-measure-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const provenance = { commit: 'test', dirty: false, machine: 'test machine', date: '2026-01-01T00:00:00.000Z' };
const quiet = { log: () => undefined, train: { stream: { write: () => true } as unknown as NodeJS.WritableStream }, provenance };

const TINY_CLIP = {
  model_type: 'clip',
  architectures: ['CLIPModel'],
  projection_dim: 16,
  // The tokenizer below: 512 byte tokens, then <|startoftext|> 512 and <|endoftext|> 513.
  text_config: { vocab_size: 514, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 16, eos_token_id: 513 },
  vision_config: { image_size: 32, patch_size: 8, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32 },
};

describeShared('data/cifar10', 'the measurement pass of an image-text contrastive study (tiny CLIP)', () => {
  const tokenizer = join(tmp, 'tokenizer');
  mkdirSync(tokenizer, { recursive: true });
  writeFileSync(join(tokenizer, 'tokenizer.json'), JSON.stringify(clipTokenizerJson([])));
  const shard = sharedPath('data/cifar10/test-000000.tar.gz');

  function setup(name: string, measure: string): string {
    const dir = join(tmp, name);
    writeFileSync(join(tmp, 'clip.json'), JSON.stringify(TINY_CLIP));
    writeFileSync(
      join(tmp, 'base.yaml'),
      `model: ${join(tmp, 'clip.json')}
data: { train: "webdataset:${shard}", train_limit: 32, eval: "webdataset:${shard}", eval_limit: 8, tokenizer: ${tokenizer}, mean: [0.49, 0.48, 0.45], std: [0.25, 0.24, 0.26] }
optimizer: { lr: 0.003, warmup_steps: 1, weight_decay: 0 }
train: { batch_size: 8, steps: 2 }
run: { log_every: 1, eval_every: 2, checkpoint_every: 2, quiet: true, backend: wasm }
`,
    );
    const file = join(tmp, `${name}.yaml`);
    writeFileSync(
      file,
      `base: ${join(tmp, 'base.yaml')}
seeds: [0, 1]
results: ${join(dir, 'results')}
runs: ${join(dir, 'runs')}
measure: ${measure}
settings:
  - name: baseline
    set: { masksub.variant: none, masksub.main_weight: 1 }
  - name: masksub
    set: { masksub.variant: masksub, masksub.drop: token-removal }
`,
    );
    return file;
  }

  it('gives every cell finite clean and drop contrastive losses that differ, replayable with the seed', async () => {
    const study = readStudy(setup('grid', '{ drop: token-removal, ratio: 0.5, samples: 20, batch_size: 8, seed: 3 }'));
    const result = await runStudy(study, quiet);
    expect(result.trained.sort()).toEqual(['baseline/seed-0', 'baseline/seed-1', 'masksub/seed-0', 'masksub/seed-1']);
    const cells = studyCells(study);
    for (const cell of cells) {
      const s = readSummary(cell.summaryPath).train_loss;
      expect(Number.isFinite(s.clean), cell.id).toBe(true);
      expect(Number.isFinite(s.drop), cell.id).toBe(true);
      // Two full batches of 8 pairs out of 20 samples: the partial batch of 4 is left out.
      expect(s.samples).toBe(16);
      expect(s.drop_kind).toBe('token-removal');
      // Removing half the image tokens changes the similarity matrix and so the loss.
      expect(s.drop, cell.id).not.toBeCloseTo(s.clean, 6);
    }
    // Replay: the same model, samples and mask seed give the identical numbers.
    const [cell] = cells;
    const summary = readSummary(cell.summaryPath).train_loss;
    const again = await measureTrainLoss(cell.config, cell.setting.measure);
    expect(again.clean).toBe(summary.clean);
    expect(again.drop).toBe(summary.drop);
    // Another mask seed: other masks (so another drop loss), the same clean loss.
    const reseeded = await measureTrainLoss(cell.config, { ...cell.setting.measure, seed: 4 });
    expect(reseeded.clean).toBe(summary.clean);
    expect(reseeded.drop).not.toBe(summary.drop);
  }, 60_000);

  it('refuses a one-pair measurement batch before training, naming the study file, setting and key', async () => {
    const file = setup('one-pair', '{ drop: token-removal, ratio: 0.5, samples: 16, batch_size: 1 }');
    const study = readStudy(file);
    const error = await runStudy(study, quiet).catch((e: unknown) => e);
    expect(String(error)).toMatch(new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}, setting 'baseline'.*measure\\.batch_size.*at least 2 image-text pairs`));
    const result = await runStudy(study, { ...quiet, aggregateOnly: true });
    expect(result.aggregate.cells.complete, 'nothing trained').toBe(0);
  });

  it('names the study file and setting when the model has no such drop operator (a text drop on CLIP)', async () => {
    const file = setup('text-drop', '{ drop: token-masking, ratio: 0.5, samples: 8, batch_size: 8 }');
    const study = readStudy(file);
    const error = await runStudy(study, { ...quiet, only: ['baseline'], maxCells: 1 }).catch((e: unknown) => e);
    expect(String(error)).toMatch(/text-drop\.yaml, setting 'baseline' \(measure: drop token-masking\).*CLIP offers token-removal and zero-fill/);
  }, 30_000);
});
