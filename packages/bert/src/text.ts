/**
 * BERT's text capability (core's TextCapability): the trainer's text tasks load the checkpoint
 * folder's (or data.tokenizer's) WordPiece tokenizer through it and never import this package.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { FileFormatError, folderFile, type ModelInputs, type TextCapability, type TextEncodeOptions, type TextInput, type TextTokenizer } from '@masksub/core';
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
    // Copied into the fine-tuned folder: folderFile refuses one that is a symlink out of this folder.
    const files = BERT_TOKENIZER_FILES.map((f) => folderFile(source, f)).filter((f): f is string => f !== undefined);
    return {
      source,
      files,
      encode(texts: readonly TextInput[], options: TextEncodeOptions): ModelInputs {
        const enc = tokenizeBatch(tokenizer, texts, options.maxLength, { padding: options.padding ?? 'longest' });
        return { ...enc };
      },
    };
  },
};
