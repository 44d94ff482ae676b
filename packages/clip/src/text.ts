/**
 * CLIP's text capability for the trainer (which never imports this package): a tokenizer read
 * from a checkpoint or tokenizer folder, encoding captions as `input_ids` / `attention_mask`,
 * and the tokenizer files a fine-tuned folder must carry: core's TextCapability, which the train
 * package finds on the adapter's `text` property (textCapabilityOf).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { OptionError, folderFile, type TextCapability, type TextTokenizer } from '@masksub/core';
import { loadClipTokenizer, tokenizeCaptions } from './tokenizer.js';

/** Files a CLIP tokenizer folder may hold; the ones present are copied into fine-tuned folders. */
export const CLIP_TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.json', 'merges.txt', 'bpe_simple_vocab_16e6.txt.gz'] as const;
const READABLE = ['tokenizer.json', 'merges.txt', 'bpe_simple_vocab_16e6.txt.gz'];

export interface ClipTextTokenizer extends TextTokenizer {
  /** The context length of the tokenizer (77 for OpenAI CLIP). */
  readonly modelMaxLength: number;
}

export const clipText: TextCapability & { loadTokenizer(dir: string): Promise<ClipTextTokenizer> } = {
  hasTokenizer(dir: string): boolean {
    return READABLE.some((f) => existsSync(join(dir, f)));
  },
  async loadTokenizer(dir: string): Promise<ClipTextTokenizer> {
    const tok = await loadClipTokenizer(dir);
    return {
      source: dir,
      // Copied into the fine-tuned folder: folderFile refuses one that is a symlink out of this folder.
      files: CLIP_TOKENIZER_FILES.map((f) => folderFile(dir, f)).filter((p): p is string => p !== undefined),
      modelMaxLength: tok.modelMaxLength,
      encode(texts, options) {
        const captions = texts.map((t) => {
          if (typeof t !== 'string') throw new OptionError('texts', 'CLIP encodes single captions, not text pairs');
          return t;
        });
        return { ...tokenizeCaptions(tok, captions, { maxLength: Math.min(options.maxLength, tok.modelMaxLength), padding: options.padding }) };
      },
    };
  },
};
