/**
 * Tokenization with transformers.js from local files: the fixture's tokenizer.json reproduces
 * the fixture's input_ids / attention_mask / token_type_ids from sentences.json (singles and
 * pairs, padded to 14); a tokenizer built from vocab.txt alone encodes the same; bert-base-uncased
 * from the shared vocab.txt gives the known BERT ids.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { FileFormatError, readSafetensors, tf, toFloat32 } from '@masksub/core';
import { describeShared, fixturePath, sharedPath } from '../../core/src/testing/shared.js';
import { bertTextCapability, longestFirstLengths, loadBertTokenizer, specialTokensFromFolder, specialTokensOf, tokenizeBatch, type PreTrainedTokenizer, type TextInput } from './index.js';

describeShared('fixtures/hf-tiny/bert', 'BERT tokenization (fixture tokenizer)', () => {
  let sentences: TextInput[];
  let expected: Record<string, number[]>;

  beforeAll(() => {
    const json = JSON.parse(readFileSync(fixturePath('bert', 'sentences.json'), 'utf8')) as { sentences: (string | [string, string])[] };
    sentences = json.sentences;
    const ref = readSafetensors(fixturePath('bert', 'reference.safetensors'));
    expected = {};
    for (const k of ['input_ids', 'attention_mask', 'token_type_ids']) expected[k] = Array.from(toFloat32(ref.get(`input.${k}`)!));
  });

  const check = (tok: PreTrainedTokenizer) => {
    const enc = tokenizeBatch(tok, sentences, 14);
    for (const k of ['input_ids', 'attention_mask', 'token_type_ids'] as const) {
      expect(enc[k].dtype).toBe('int32');
      expect(enc[k].shape).toEqual([4, 14]);
      expect(Array.from(enc[k].dataSync()), k).toEqual(expected[k]);
    }
    tf.dispose(Object.values(enc));
  };

  it('tokenizer.json through AutoTokenizer reproduces the fixture inputs', async () => {
    const tok = await loadBertTokenizer(fixturePath('bert'));
    check(tok);
    expect(specialTokensOf(tok)).toEqual({ maskTokenId: 4, specialIds: [0, 2, 3] });
  });

  it('a tokenizer built from vocab.txt alone encodes the same', async () => {
    // A folder with only vocab.txt + tokenizer_config.json is what the original BERT release ships.
    const { mkdtempSync, copyFileSync, rmSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'masksub-bert-vocab-'));
    copyFileSync(fixturePath('bert', 'vocab.txt'), join(dir, 'vocab.txt'));
    try {
      const tok = await loadBertTokenizer(dir);
      check(tok);
      expect(specialTokensOf(tok).maskTokenId).toBe(4);
      // Truncation keeps [CLS] ... [SEP] and the length.
      const short = tokenizeBatch(tok, ['the movie was very good !', ['not bad , but boring', 'the story was fun']], 6);
      const ids = short.input_ids.arraySync();
      expect(ids[0]).toEqual([2, 5, 8, 10, 13, 3]);
      // HF's longest_first: a budget of 3 content tokens over (5, 4) pieces: 1 each, the odd one to the longer.
      expect(ids[1]).toEqual([2, 12, 15, 3, 5, 3]);
      expect(short.token_type_ids.arraySync()[1]).toEqual([0, 0, 0, 0, 1, 1]);
      tf.dispose(Object.values(short));
      const pair8 = tokenizeBatch(tok, [['not bad , but boring', 'the story was fun']], 8);
      // (5, 4) pieces into 5: the longer keeps 3, the shorter 2 (as the Rust tokenizer).
      expect(pair8.input_ids.arraySync()[0]).toEqual([2, 12, 15, 30, 3, 5, 29, 3]);
      tf.dispose(Object.values(pair8));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('rejects bad arguments, naming them', async () => {
    const tok = await loadBertTokenizer(fixturePath('bert'));
    expect(() => tokenizeBatch(tok, [], 8)).toThrow(/texts/);
    expect(() => tokenizeBatch(tok, ['a'], 1)).toThrow(/maxLength/);
    await expect(loadBertTokenizer(fixturePath('bert', 'nowhere'))).rejects.toThrow(/nowhere.*neither tokenizer\.json nor vocab\.txt/);
  });
});

describe('longest-first truncation lengths (tokenizers truncation.rs)', () => {
  it('shrinks only the longer side while the shorter fits in half, else halves', () => {
    expect(longestFirstLengths(3, 2, 10)).toEqual([3, 2]);
    expect(longestFirstLengths(2, 9, 6)).toEqual([2, 4]);
    expect(longestFirstLengths(9, 2, 6)).toEqual([4, 2]);
    expect(longestFirstLengths(7, 8, 5)).toEqual([2, 3]);
    expect(longestFirstLengths(8, 7, 5)).toEqual([3, 2]);
    expect(longestFirstLengths(12, undefined, 5)).toEqual([5, 0]);
  });
});

describeShared('data/tokenizers/bert-base-uncased', 'BERT tokenization (bert-base-uncased vocab.txt)', () => {
  it('gives the ids of the real BERT vocabulary, with [MASK] 103', async () => {
    const tok = await loadBertTokenizer(sharedPath('data/tokenizers/bert-base-uncased'));
    const enc = tokenizeBatch(tok, ['Hello, World!', ['The cat sat.', 'unaffable']], 12);
    // [CLS] hello , world ! [SEP]  /  [CLS] the cat sat . [SEP] una ##ffa ##ble [SEP]
    expect(enc.input_ids.arraySync()).toEqual([
      [101, 7592, 1010, 2088, 999, 102, 0, 0, 0, 0, 0, 0],
      [101, 1996, 4937, 2938, 1012, 102, 14477, 20961, 3468, 102, 0, 0],
    ]);
    expect(enc.token_type_ids.arraySync()[1]).toEqual([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0]);
    expect(specialTokensOf(tok)).toEqual({ maskTokenId: 103, specialIds: [0, 101, 102] });
    tf.dispose(Object.values(enc));
  });
  it('refuses a tokenizer folder whose files are symlinks out of it (they would be read and copied into the fine-tuned folder)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'masksub-tok-'));
    try {
      symlinkSync(sharedPath('data/tokenizers/bert-base-uncased/vocab.txt'), join(dir, 'vocab.txt'));
      await expect(loadBertTokenizer(dir)).rejects.toThrow(/vocab\.txt: leads outside the folder/);
      await expect(bertTextCapability.loadTokenizer(dir)).rejects.toThrow(FileFormatError);
      expect(() => specialTokensFromFolder(dir)).toThrow(/vocab\.txt: leads outside the folder/);
      // A copy inside the folder is what the fine-tuned folder gets, and loads.
      rmSync(join(dir, 'vocab.txt'));
      copyFileSync(sharedPath('data/tokenizers/bert-base-uncased/vocab.txt'), join(dir, 'vocab.txt'));
      symlinkSync(join(dir, 'vocab.txt'), join(dir, 'special_tokens_map.json'));
      const text = await bertTextCapability.loadTokenizer(dir);
      expect(text.files).toEqual([join(dir, 'vocab.txt'), join(dir, 'special_tokens_map.json')]);
      rmSync(join(dir, 'special_tokens_map.json'));
      symlinkSync(sharedPath('data/tokenizers/bert-base-uncased/tokenizer_config.json'), join(dir, 'special_tokens_map.json'));
      await expect(bertTextCapability.loadTokenizer(dir)).rejects.toThrow(/special_tokens_map\.json: leads outside the folder/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

