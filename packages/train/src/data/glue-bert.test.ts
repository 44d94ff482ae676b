/**
 * End to end on real text: a fixture-size BERT (hidden 32, 2 layers) over the bert-base-uncased
 * vocabulary, MaskSub steps (withMaskSub + core's AdamW) on 64 SST-2 sentences with [MASK]
 * drawn from the tokenizer's ids; and STS-B pairs as regression (problem_type from num_labels 1,
 * MSE). The training loss must go down, and steps must not leak tensors.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, expect, it } from 'vitest';
import { Rng, createOptimizer, initBackend, tf, withMaskSub, type Batch } from '@masksub/core';
import { BertModel, bertRelaxedLoss, loadBertTokenizer, specialTokensOf, tokenizeBatch, type PreTrainedTokenizer } from '@masksub/bert';
import { describeShared, fixturePath, sharedPath } from '../../../core/src/testing/shared.js';
import { readGlueTask } from './glue.js';

function fixtureSizedConfig(numLabels: number): Record<string, unknown> {
  const config = JSON.parse(readFileSync(fixturePath('bert', 'config.json'), 'utf8')) as Record<string, unknown>;
  // Same sizes as the fixture, over BERT's real vocabulary and with room for sentence pairs.
  return { ...config, vocab_size: 30522, max_position_embeddings: 64, num_labels: numLabels };
}

describeShared('data/glue', 'BERT MaskSub training on GLUE text', () => {
  let tokenizer: PreTrainedTokenizer;

  beforeAll(async () => {
    // wasm: the backend training runs on.
    await initBackend({ prefer: 'wasm', log: () => {} });
    expect(tf.getBackend()).toBe('wasm');
    tokenizer = await loadBertTokenizer(sharedPath('data/tokenizers/bert-base-uncased'));
  });

  /** `steps` MaskSub updates on one batch; the masked-LM-style sub pass draws its own [MASK]s. */
  function train(model: BertModel, batch: Batch, steps: number, loss?: ReturnType<typeof bertRelaxedLoss>) {
    const trainer = withMaskSub(model, { ratio: 0.15, seed: 7, ...(loss ? { loss } : {}) });
    const optimizer = createOptimizer({ kind: 'adamw', weightDecay: 0.01 }, model.params.trainable());
    const history: { lossMain: number; lossSub: number }[] = [];
    let tensorsAfterFirst = 0;
    for (let step = 0; step < steps; step++) {
      const r = trainer.step(batch, optimizer, 3e-3, step);
      history.push({ lossMain: r.lossMain, lossSub: r.lossSub });
      if (step === 0) tensorsAfterFirst = tf.memory().numTensors; // optimizer slots now exist
    }
    expect(tf.memory().numTensors).toBe(tensorsAfterFirst);
    optimizer.dispose();
    return history;
  }

  it('SST-2: 64 sentences, 20 MaskSub steps lower the main and the sub loss', async () => {
    const rows = (await readGlueTask(sharedPath('data/glue'), 'SST-2', 'train')).slice(0, 64);
    expect(rows.length).toBe(64);
    const enc = tokenizeBatch(tokenizer, rows.map((r) => r.text_a), 32);
    const labels = tf.tensor1d(rows.map((r) => r.label), 'int32');
    const model = new BertModel(fixtureSizedConfig(2), { rng: new Rng(1), specialTokens: specialTokensOf(tokenizer) });
    expect(model.specialTokens?.maskTokenId).toBe(103);
    const batch: Batch = { inputs: { ...enc }, targets: { labels } };
    // The drawn sub view really masks ~15% of the real tokens with [MASK] = 103.
    const mask = model.dropOperator('token-masking').sample(batch.inputs, 0.15, new Rng(3));
    if (mask.kind !== 'token-masking') throw new Error('wrong kind');
    const real = enc.attention_mask.sum().dataSync()[0] - 2 * 64;
    const masked = mask.masked.reduce((a, v) => a + v, 0);
    expect(masked / real).toBeGreaterThan(0.1);
    expect(masked / real).toBeLessThan(0.25);
    expect(Array.from(mask.maskedIds).filter((v, i) => mask.masked[i] && v !== 103)).toEqual([]);

    const history = train(model, batch, 20);
    const first = history[0];
    const last = history[history.length - 1];
    expect(last.lossMain).toBeLessThan(first.lossMain * 0.5);
    expect(last.lossSub).toBeLessThan(first.lossSub);
    expect(history.every((h) => Number.isFinite(h.lossMain) && Number.isFinite(h.lossSub))).toBe(true);
    tf.dispose([...Object.values(enc), labels]);
    model.dispose();
  });

  it('STS-B: num_labels 1 is a regression head; 20 MSE MaskSub steps halve the loss', async () => {
    const rows = (await readGlueTask(sharedPath('data/glue'), 'STS-B', 'train')).slice(0, 32);
    const enc = tokenizeBatch(tokenizer, rows.map((r) => [r.text_a, r.text_b!] as const), 40);
    expect(enc.token_type_ids.max().dataSync()[0]).toBe(1);
    const scores = tf.tensor1d(rows.map((r) => r.label), 'float32');
    const model = new BertModel(fixtureSizedConfig(1), { rng: new Rng(2), specialTokens: specialTokensOf(tokenizer) });
    const loss = bertRelaxedLoss(model.cfg);
    const batch: Batch = { inputs: { ...enc }, targets: { labels: scores } };
    const history = train(model, batch, 20, loss);
    expect(history[history.length - 1].lossMain).toBeLessThan(history[0].lossMain * 0.5);
    // The sub pass ran on a different (masked) input: a fresh model's prediction hardly depends
    // on the text yet, so the sub-to-main MSE is tiny but not zero.
    expect(history.every((h) => h.lossSub > 0 && Number.isFinite(h.lossSub))).toBe(true);
    tf.dispose([...Object.values(enc), scores]);
    model.dispose();
  });
});
