/**
 * Text capabilities a model package offers the trainer without the trainer importing it: a
 * tokenizer loaded from a checkpoint (or tokenizer) folder that turns texts into the model's
 * input tensors. @masksub/train discovers it on the adapter with `textCapabilityOf`, so text tasks
 * (GLUE classification/regression, CLIP's caption side, zero-shot prompts) stay architecture-free.
 */
import type { ModelInputs } from '../model.js';

/** One text, or a (text_a, text_b) pair encoded as a pair (BERT: [CLS] a [SEP] b [SEP], types 0/1). */
export type TextInput = string | readonly [string, string];

export interface TextEncodeOptions {
  /** Truncate each row (both texts together, longest first) to this many tokens, specials included. */
  maxLength: number;
  /**
   * 'longest': pad to the longest row of this batch (what training and evaluation use);
   * 'max_length': pad every row to maxLength (fixed shapes, e.g. CLIP's 77-token text tower).
   */
  padding?: 'longest' | 'max_length';
}

/** A tokenizer bound to the files it was loaded from. */
export interface TextTokenizer {
  /** The folder the tokenizer files were read from. */
  readonly source: string;
  /**
   * Absolute paths of the tokenizer files (tokenizer.json, vocab.txt, tokenizer_config.json, ...)
   * a fine-tuned folder must carry to be used again with this tokenizer.
   */
  readonly files: readonly string[];
  /** Encode a batch as the model's named int32 inputs (e.g. input_ids, attention_mask, token_type_ids); the caller owns the tensors. */
  encode(texts: readonly TextInput[], options: TextEncodeOptions): ModelInputs;
}

/** What an adapter (or model) offers when its architecture reads text. */
export interface TextCapability {
  /**
   * The tokenizer in `dir`; throws a FileFormatError naming the folder when it holds no tokenizer
   * files. Never downloads.
   */
  loadTokenizer(dir: string): Promise<TextTokenizer>;
  /** True when `dir` holds tokenizer files this capability can read (no parsing). */
  hasTokenizer(dir: string): boolean;
}

/** The text capability of an adapter or model, when it has one. */
export function textCapabilityOf(x: unknown): TextCapability | undefined {
  if (x === null || typeof x !== 'object') return undefined;
  const t = (x as { text?: unknown }).text;
  if (t === null || typeof t !== 'object') return undefined;
  const c = t as Partial<TextCapability>;
  return typeof c.loadTokenizer === 'function' && typeof c.hasTokenizer === 'function' ? (c as TextCapability) : undefined;
}
