/**
 * The CLIP BPE tokenizer from OpenAI's merges file (../shared/data/tokenizers/clip): ids of known
 * captions, padding/truncation as OpenAI's clip.tokenize, and the other folder layouts.
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileFormatError, tf } from '@masksub/core';
import { describeShared, sharedPath } from '../../core/src/testing/shared.js';
import { clipText, clipTokenizerJson, loadClipTokenizer, tokenizeCaptions, type ClipTokenizer } from './index.js';

const tmp = mkdtempSync(join(tmpdir(), 'masksub-clip-tok-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describeShared('data/tokenizers/clip', 'CLIP tokenizer from bpe_simple_vocab_16e6.txt.gz', () => {
  let tok: ClipTokenizer;
  beforeAll(async () => {
    tok = await loadClipTokenizer(sharedPath('data/tokenizers/clip'));
  });

  it('refuses a tokenizer folder whose merges file is a symlink out of it, and lists only files inside', async () => {
    const dir = join(tmp, 'linked');
    mkdirSync(dir);
    symlinkSync(sharedPath('data/tokenizers/clip/bpe_simple_vocab_16e6.txt.gz'), join(dir, 'bpe_simple_vocab_16e6.txt.gz'));
    await expect(loadClipTokenizer(dir)).rejects.toThrow(/bpe_simple_vocab_16e6\.txt\.gz: leads outside the folder/);
    await expect(clipText.loadTokenizer(dir)).rejects.toThrow(FileFormatError);
    rmSync(join(dir, 'bpe_simple_vocab_16e6.txt.gz'));
    copyFileSync(sharedPath('data/tokenizers/clip/bpe_simple_vocab_16e6.txt.gz'), join(dir, 'bpe_simple_vocab_16e6.txt.gz'));
    expect((await clipText.loadTokenizer(dir)).files).toEqual([join(dir, 'bpe_simple_vocab_16e6.txt.gz')]);
  });

  it('gives the ids OpenAI CLIP gives', () => {
    // 'a</w>' is 256 + 64 (the 65th byte character), 'photo</w>' and 'cat</w>' come from merges;
    // these are the ids of openai/clip-vit-base-patch32's tokenizer for this caption.
    expect(tok.encode('a photo of a cat')).toEqual([49406, 320, 1125, 539, 320, 2368, 49407]);
    expect(tok.bosTokenId).toBe(49406);
    expect(tok.eosTokenId).toBe(49407);
    expect(tok.padTokenId).toBe(49407);
    expect(tok.modelMaxLength).toBe(77);
    // Lower case, whitespace collapsed, punctuation split off.
    expect(tok.encode('A  PHOTO of a cat')).toEqual(tok.encode('a photo of a cat'));
    expect(tok.encode('a cat!').slice(1, -1)).toEqual([320, 2368, 256]); // '!</w>': 256 + 0
    expect(tok.decode(tok.encode('a photo of a cat'))).toBe('a photo of a cat');
  });

  it('pads to the context with EOS and a 0 mask; truncation keeps EOS last', () => {
    const batch = tokenizeCaptions(tok, ['a photo of a cat', 'a dog', 'cat '.repeat(100)], { maxLength: 10 });
    expect(batch.input_ids.shape).toEqual([3, 10]);
    expect(batch.input_ids.dtype).toBe('int32');
    const ids = batch.input_ids.arraySync();
    const mask = batch.attention_mask.arraySync();
    expect(ids[0]).toEqual([49406, 320, 1125, 539, 320, 2368, 49407, 49407, 49407, 49407]);
    expect(mask[0]).toEqual([1, 1, 1, 1, 1, 1, 1, 0, 0, 0]);
    expect(mask[1].reduce((a, b) => a + b, 0)).toBe(4);
    expect(ids[2][0]).toBe(49406);
    expect(ids[2][9]).toBe(49407);
    expect(ids[2].slice(1, 9)).toEqual(new Array(8).fill(2368));
    expect(mask[2]).toEqual(new Array(10).fill(1));
    tf.dispose([batch.input_ids, batch.attention_mask]);
    const longest = tokenizeCaptions(tok, ['a cat', 'a photo of a cat'], { padding: 'longest' });
    expect(longest.input_ids.shape).toEqual([2, 7]);
    const full = tokenizeCaptions(tok, ['a cat']);
    expect(full.input_ids.shape).toEqual([1, 77]);
    tf.dispose([longest.input_ids, longest.attention_mask, full.input_ids, full.attention_mask]);
    expect(() => tokenizeCaptions(tok, ['a'], { maxLength: 1 })).toThrow(/maxLength/);
    expect(() => tokenizeCaptions(tok, [])).toThrow(/captions/);
  });
});

describe('CLIP tokenizer folders', () => {
  it('reads merges.txt (HF slow layout) and tokenizer.json (HF fast layout)', async () => {
    // A tiny merge table: 'c a', 'ca t</w>' gives 'cat</w>' one id.
    const dir = join(tmp, 'tiny');
    rmSync(dir, { recursive: true, force: true });
    const { mkdirSync } = await import('node:fs');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'merges.txt'), '#version: 0.2\nc a\nca t</w>\n');
    const slow = await loadClipTokenizer(dir);
    // 512 byte tokens, then the merges: 'ca' 512, 'cat</w>' 513, then BOS 514, EOS 515.
    expect(slow.encode('cat')).toEqual([514, 513, 515]);
    expect(slow.source).toMatch(/merges\.txt$/);
    const fast = join(tmp, 'fast');
    mkdirSync(fast, { recursive: true });
    writeFileSync(join(fast, 'tokenizer.json'), JSON.stringify(clipTokenizerJson(['c a', 'ca t</w>'])));
    writeFileSync(join(fast, 'tokenizer_config.json'), JSON.stringify({ model_max_length: 16 }));
    const t2 = await loadClipTokenizer(fast);
    expect(t2.encode('cat cat')).toEqual([514, 513, 513, 515]);
    expect(t2.modelMaxLength).toBe(16);
  });

  it('names the folder when there is no tokenizer, and the file when it is broken', async () => {
    await expect(loadClipTokenizer(join(tmp, 'nowhere'))).rejects.toThrow(/nowhere.*tokenizer\.json/);
    const bad = join(tmp, 'bad');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(bad, { recursive: true });
    writeFileSync(join(bad, 'merges.txt'), 'not a merge line at all\n');
    await expect(loadClipTokenizer(bad)).rejects.toThrow(/merges\.txt.*line 1/);
  });
});
