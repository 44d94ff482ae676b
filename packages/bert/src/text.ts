/**
 * BERT's text capability (core's TextCapability): the trainer's text tasks load the checkpoint
 * folder's (or data.tokenizer's) WordPiece tokenizer through it and never import this package.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { FileFormatError, tf, type ModelInputs, type TextCapability, type TextEncodeOptions, type TextInput, type TextTokenizer } from '@masksub/core';
import { loadBertTokenizer, tokenizeBatch } from './tokenizer.js';

/** The files of a BERT tokenizer folder, in the order HF writes them; a fine-tuned folder copies those present. */
export const BERT_TOKENIZER_FILES = ['tokenizer.json', 'vocab.txt', 'tokenizer_config.json', 'special_tokens_map.json'] as const;

function hasTokenizer(dir: string): boolean {
  return existsSync(join(dir, 'tokenizer.json')) || existsSync(join(dir, 'vocab.txt'));
}

export const bertTextCapability: TextCapability = {
  hasTokenizer,
  async loadTokenizer(dir: string): Promise<TextTokenizer> {
    const source = resolve(dir);
    if (!hasTokenizer(source)) throw new FileFormatError(source, 'has no tokenizer: expected tokenizer.json or vocab.txt (set data.tokenizer to a folder with one)');
    const tokenizer = await loadBertTokenizer(source);
    const files = BERT_TOKENIZER_FILES.map((f) => join(source, f)).filter((f) => existsSync(f));
    return {
      source,
      files,
      encode(texts: readonly TextInput[], options: TextEncodeOptions): ModelInputs {
        const enc = tokenizeBatch(tokenizer, texts, options.maxLength);
        if (options.padding === 'max_length') return { ...enc };
        // Pad to the batch's longest row: the same tokens as max_length padding, fewer columns.
        const longest = Math.max(...(enc.attention_mask.sum(1).dataSync() as Int32Array));
        if (longest === options.maxLength) return { ...enc };
        const out: ModelInputs = {};
        for (const [name, t] of Object.entries(enc) as [string, tf.Tensor2D][]) {
          out[name] = tf.slice(t, [0, 0], [t.shape[0], longest]);
          t.dispose();
        }
        return out;
      },
    };
  },
};
