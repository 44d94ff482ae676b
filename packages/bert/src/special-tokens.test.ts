/** The [MASK] id comes from the checkpoint folder's tokenizer files when loadPretrained builds the model. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildFromConfig, loadPretrained, tf, withMaskSub } from '@masksub/core';
import { describeShared, fixturePath, sharedPath } from '../../core/src/testing/shared.js';
import { BertModel, specialTokensFromFolder } from './index.js';

const quiet = { log: () => {} };

describeShared('fixtures/hf-tiny/bert', 'BERT special tokens from the checkpoint folder', () => {
  it('loadPretrained takes [MASK] = 4 from the fixture tokenizer, so token masking can be drawn', async () => {
    await tf.setBackend('cpu');
    const { model } = await loadPretrained(fixturePath('bert'), quiet);
    const bert = model as BertModel;
    expect(bert.specialTokens?.maskTokenId).toBe(4);
    expect([...(bert.specialTokens?.specialIds ?? [])].sort()).toEqual([0, 2, 3]);
    const ids = tf.tensor2d([[2, 10, 11, 12, 13, 3, 0, 0]], [1, 8], 'int32');
    const mask = tf.tensor2d([[1, 1, 1, 1, 1, 1, 0, 0]], [1, 8], 'int32');
    const r = withMaskSub(bert, { seed: 1 }).computeGradients({ inputs: { input_ids: ids, attention_mask: mask }, targets: { labels: tf.tensor1d([1], 'int32') } });
    expect(r.mask?.kind).toBe('token-masking');
    tf.dispose([ids, mask, r.mainLogits, r.subLogits!, ...r.grads.values()]);
    model.dispose();
  });
});

describe('specialTokensFromFolder', () => {
  const dir = mkdtempSync(join(tmpdir(), 'masksub-bert-special-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads vocab.txt line numbers, follows renamed tokens, and is undefined without tokenizer files', () => {
    expect(specialTokensFromFolder(dir)).toBeUndefined();
    writeFileSync(join(dir, 'vocab.txt'), ['<pad>', '[CLS]', '[SEP]', 'hello', '<mask>', '[MASK]'].join('\n'));
    expect(specialTokensFromFolder(dir)).toEqual({ maskTokenId: 5, specialIds: [1, 2] });
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ mask_token: '<mask>', pad_token: { content: '<pad>' } }));
    expect(specialTokensFromFolder(dir)).toEqual({ maskTokenId: 4, specialIds: [0, 1, 2] });
    writeFileSync(join(dir, 'tokenizer_config.json'), '{ not json');
    expect(() => specialTokensFromFolder(dir)).toThrow(/tokenizer_config\.json: invalid JSON/);
  });
});

describeShared('data/tokenizers/bert-base-uncased', 'special tokens of the real BERT vocabulary', () => {
  it('[MASK] 103, [CLS] 101, [SEP] 102, [PAD] 0 from vocab.txt', () => {
    expect(specialTokensFromFolder(sharedPath('data/tokenizers/bert-base-uncased'))).toEqual({ maskTokenId: 103, specialIds: [0, 101, 102] });
  });
});

describe('special tokens from the run tokenizer (data.tokenizer) when the model folder has none', () => {
  const tok = mkdtempSync(join(tmpdir(), 'masksub-bert-runtok-'));
  afterAll(() => rmSync(tok, { recursive: true, force: true }));
  // A Google-sized vocabulary (30522) whose special tokens are not where Google's are.
  const config = {
    model_type: 'bert', architectures: ['BertForSequenceClassification'], vocab_size: 30522, hidden_size: 8, num_hidden_layers: 1,
    num_attention_heads: 2, intermediate_size: 16, max_position_embeddings: 16, type_vocab_size: 2, num_labels: 2,
  };

  it('buildFromConfig: the tokenizer folder decides; Google layout only without one', async () => {
    await tf.setBackend('cpu');
    writeFileSync(join(tok, 'vocab.txt'), ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'hello'].join('\n'));
    const withTok = buildFromConfig(config, 0, { tokenizerDir: tok }).model as BertModel;
    expect(withTok.specialTokens).toEqual({ maskTokenId: 4, specialIds: [0, 2, 3] });
    withTok.dispose();
    const google = buildFromConfig(config, 0).model as BertModel;
    expect(google.specialTokens?.maskTokenId).toBe(103);
    google.dispose();
    // A tokenizer folder without tokenizer files says nothing: the fallback stays.
    const empty = buildFromConfig(config, 0, { tokenizerDir: join(tok, 'missing') }).model as BertModel;
    expect(empty.specialTokens?.maskTokenId).toBe(103);
    empty.dispose();
  });
});

describeShared('fixtures/hf-tiny/bert', 'the checkpoint folder tokenizer wins over data.tokenizer', () => {
  it('loadPretrained keeps the folder [MASK] = 4 when a run tokenizer is given too', async () => {
    await tf.setBackend('cpu');
    const other = mkdtempSync(join(tmpdir(), 'masksub-bert-other-'));
    writeFileSync(join(other, 'vocab.txt'), ['[MASK]', '[PAD]', '[CLS]', '[SEP]'].join('\n'));
    const { model } = await loadPretrained(fixturePath('bert'), { ...quiet, tokenizerDir: other });
    expect((model as BertModel).specialTokens?.maskTokenId).toBe(4);
    model.dispose();
    rmSync(other, { recursive: true, force: true });
  });
});
