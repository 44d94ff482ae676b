/**
 * WordPiece tokenization with transformers.js, from local files only: a folder with
 * tokenizer.json (as HF saves it) loads through AutoTokenizer; a folder with only vocab.txt (the
 * original BERT release, /work/shared/data/tokenizers/bert-base-uncased) gets the tokenizer.json
 * that transformers' BertTokenizerFast converter would write, built in memory.
 */
import { readFileSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { AutoTokenizer, BertTokenizer, env, type PreTrainedTokenizer } from '@huggingface/transformers';
import { FileFormatError, OptionError, folderFile, tf, type TextInput } from '@masksub/core';
import type { SpecialTokens } from './model.js';

export type { PreTrainedTokenizer } from '@huggingface/transformers';

/** A single text, or a (text_a, text_b) pair encoded as [CLS] a [SEP] b [SEP] with token types 0/1 (core's type). */
export type { TextInput } from '@masksub/core';

export interface EncodedBatch {
  /** [B, maxLength] int32 */
  input_ids: tf.Tensor2D;
  /** [B, maxLength] int32, 1 = real token, 0 = padding */
  attention_mask: tf.Tensor2D;
  /** [B, maxLength] int32, 0 = first segment, 1 = second */
  token_type_ids: tf.Tensor2D;
}

interface TokenizerConfigFile {
  do_lower_case?: boolean;
  unk_token?: string;
  cls_token?: string;
  sep_token?: string;
  pad_token?: string;
  mask_token?: string;
  model_max_length?: number;
  [key: string]: unknown;
}

function readJson(path: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new FileFormatError(path, `cannot read as JSON: ${(e as Error).message}`);
  }
}

/**
 * The tokenizer.json of a BERT WordPiece vocabulary (what tokenizers' BertConverter produces):
 * BertNormalizer (clean text, CJK split, lower case -> accents stripped), BertPreTokenizer,
 * WordPiece with '##' continuations, [CLS] A [SEP] (B [SEP]) template with type ids 0/1.
 */
export function bertTokenizerJson(vocab: readonly string[], config: TokenizerConfigFile, source = 'vocab.txt'): Record<string, unknown> {
  const ids = new Map<string, number>();
  vocab.forEach((token, i) => {
    if (!ids.has(token)) ids.set(token, i);
  });
  const tokenId = (token: string): number => {
    const id = ids.get(token);
    if (id === undefined) throw new FileFormatError(source, `special token '${token}' is not in the vocabulary`);
    return id;
  };
  const unk = config.unk_token ?? '[UNK]';
  const cls = config.cls_token ?? '[CLS]';
  const sep = config.sep_token ?? '[SEP]';
  const pad = config.pad_token ?? '[PAD]';
  const mask = config.mask_token ?? '[MASK]';
  const specials = [pad, unk, cls, sep, mask];
  const lowercase = config.do_lower_case ?? true;
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials
      .map((content) => ({ id: tokenId(content), content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }))
      .sort((a, b) => a.id - b.id),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: cls, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: sep, type_id: 0 } }],
      pair: [
        { SpecialToken: { id: cls, type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: sep, type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } },
        { SpecialToken: { id: sep, type_id: 1 } },
      ],
      special_tokens: {
        [cls]: { id: cls, ids: [tokenId(cls)], tokens: [cls] },
        [sep]: { id: sep, ids: [tokenId(sep)], tokens: [sep] },
      },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: unk, continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab: Object.fromEntries(ids) },
  };
}

/**
 * A BERT tokenizer from a local folder, never the network. tokenizer.json + tokenizer_config.json
 * go through AutoTokenizer (env.allowRemoteModels = false, env.localModelPath = the parent
 * folder); vocab.txt (+ optional tokenizer_config.json) through `bertTokenizerJson`.
 */
export async function loadBertTokenizer(dir: string): Promise<PreTrainedTokenizer> {
  const folder = resolve(dir);
  // Files found by name in an untrusted folder: folderFile refuses symlinks out of it.
  const configPath = folderFile(folder, 'tokenizer_config.json');
  const config = (configPath !== undefined ? readJson(configPath) : {}) as TokenizerConfigFile;
  if (folderFile(folder, 'tokenizer.json') !== undefined) {
    env.allowRemoteModels = false;
    env.allowLocalModels = true;
    const previous = env.localModelPath;
    env.localModelPath = `${dirname(folder)}/`;
    try {
      return await AutoTokenizer.from_pretrained(basename(folder));
    } finally {
      env.localModelPath = previous;
    }
  }
  const vocabPath = folderFile(folder, 'vocab.txt');
  if (vocabPath === undefined) throw new FileFormatError(folder, 'has neither tokenizer.json nor vocab.txt');
  const lines = readFileSync(vocabPath, 'utf8').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const vocab = lines.map((l) => l.replace(/\r$/, ''));
  // BERT's own names for the special tokens unless the config renames them (transformers.js
  // learns e.g. the [MASK] id from the config, not from tokenizer.json).
  const defaults = { model_max_length: 512, do_lower_case: true, unk_token: '[UNK]', cls_token: '[CLS]', sep_token: '[SEP]', pad_token: '[PAD]', mask_token: '[MASK]' };
  return new BertTokenizer(bertTokenizerJson(vocab, config, vocabPath), { ...defaults, ...config });
}

/** [MASK] and the ids token masking must leave alone ([CLS], [SEP], [PAD]) for this tokenizer. */
export function specialTokensOf(tokenizer: PreTrainedTokenizer): SpecialTokens {
  const mask = tokenizer.mask_token_id;
  if (mask === undefined || mask === null) throw new OptionError('tokenizer', 'has no [MASK] token: token masking needs one');
  const cls = tokenizer.convert_tokens_to_ids(tokenizer.config?.cls_token ?? '[CLS]');
  const specialIds = [tokenizer.pad_token_id, cls, tokenizer.sep_token_id].filter((v): v is number => typeof v === 'number' && v >= 0);
  return { maskTokenId: mask, specialIds: [...new Set(specialIds)] };
}

/**
 * The special-token ids a checkpoint folder's tokenizer files define, read synchronously (model
 * construction is synchronous): `tokenizer.json` (added_tokens, then the model vocabulary), else
 * `vocab.txt` (id = line number). Undefined when the folder has neither or no [MASK] token.
 * Token names follow tokenizer_config.json when it renames them.
 */
export function specialTokensFromFolder(dir: string): SpecialTokens | undefined {
  const names = { mask: '[MASK]', cls: '[CLS]', sep: '[SEP]', pad: '[PAD]' };
  const configPath = folderFile(dir, 'tokenizer_config.json');
  if (configPath !== undefined) {
    try {
      const c = JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>;
      for (const key of ['mask', 'cls', 'sep', 'pad'] as const) {
        const v = c[`${key}_token`];
        if (typeof v === 'string') names[key] = v;
        else if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') names[key] = (v as { content: string }).content;
      }
    } catch (e) {
      throw new FileFormatError(configPath, `invalid JSON: ${(e as Error).message}`);
    }
  }
  const ids = new Map<string, number>();
  const jsonPath = folderFile(dir, 'tokenizer.json');
  const vocabPath = jsonPath === undefined ? folderFile(dir, 'vocab.txt') : undefined;
  if (jsonPath !== undefined) {
    let json: { added_tokens?: { id: number; content: string }[]; model?: { vocab?: Record<string, number> } };
    try {
      json = JSON.parse(readFileSync(jsonPath, 'utf8')) as typeof json;
    } catch (e) {
      throw new FileFormatError(jsonPath, `invalid JSON: ${(e as Error).message}`);
    }
    for (const [token, id] of Object.entries(json.model?.vocab ?? {})) ids.set(token, id);
    for (const t of json.added_tokens ?? []) ids.set(t.content, t.id);
  } else if (vocabPath !== undefined) {
    readFileSync(vocabPath, 'utf8').split('\n').forEach((token, i) => {
      const t = token.replace(/\r$/, '');
      if (!ids.has(t)) ids.set(t, i);
    });
  } else {
    return undefined;
  }
  const mask = ids.get(names.mask);
  if (mask === undefined) return undefined;
  const specialIds = [names.pad, names.cls, names.sep].map((n) => ids.get(n)).filter((v): v is number => v !== undefined);
  return { maskTokenId: mask, specialIds: [...new Set(specialIds)] };
}

/**
 * How many tokens of (a, b) to keep so that a + b <= budget: the "longest_first" rule of HF's
 * fast tokenizers (tokenizers' truncation.rs): only the longer side shrinks while the shorter
 * fits in half; otherwise both get half, the odd token going to the second.
 */
export function longestFirstLengths(n1: number, n2: number | undefined, budget: number): [number, number] {
  if (n2 === undefined) return [Math.min(n1, budget), 0];
  if (n1 + n2 <= budget) return [n1, n2];
  let [short, long] = n1 > n2 ? [n2, n1] : [n1, n2];
  long = short > budget ? short : Math.max(short, budget - short);
  if (short + long > budget) {
    short = Math.floor(budget / 2);
    long = short + (budget % 2);
  }
  return n1 > n2 ? [long, short] : [short, long];
}

/**
 * Encode texts or pairs as BERT inputs: [CLS] a [SEP] (b [SEP]), token types 0 for [CLS] a [SEP]
 * and 1 for b [SEP], truncated longest-first and padded with [PAD] to `maxLength`, as int32
 * tensors the caller owns. The tokenizer does the WordPiece split only: transformers.js cuts the
 * finished sequence on truncation (losing the final [SEP]), HF truncates the texts, so the
 * template is applied here.
 */
export interface TokenizeOptions {
  /**
   * 'max_length' (default): every row padded to maxLength; 'longest': to the batch's longest row
   * (capped at maxLength), decided on the host before any tensor is made.
   */
  padding?: 'max_length' | 'longest';
}

export function tokenizeBatch(tokenizer: PreTrainedTokenizer, texts: readonly TextInput[], maxLength: number, options: TokenizeOptions = {}): EncodedBatch {
  if (texts.length === 0) throw new OptionError('texts', 'is empty');
  const specials = texts.some((t) => typeof t !== 'string') ? 3 : 2;
  if (!Number.isInteger(maxLength) || maxLength < specials) throw new OptionError('maxLength', `must be an integer >= ${specials} ([CLS]/[SEP] need room), got ${maxLength}`);
  const cls = tokenizer.convert_tokens_to_ids(tokenizer.config?.cls_token ?? '[CLS]');
  const sep = tokenizer.sep_token_id;
  const pad = tokenizer.pad_token_id ?? 0;
  if (typeof cls !== 'number' || cls < 0 || typeof sep !== 'number') throw new OptionError('tokenizer', 'has no [CLS]/[SEP] tokens: not a BERT tokenizer');
  const pieces = (text: string): number[] => tokenizer.encode(text, { add_special_tokens: false });
  const n = texts.length;
  const encoded = texts.map((text) => ({ a: pieces(typeof text === 'string' ? text : text[0]), b: typeof text === 'string' ? undefined : pieces(text[1]) }));
  const full = (a: number[], b: number[] | undefined) => a.length + (b ? b.length + 3 : 2);
  const width = options.padding === 'longest' ? Math.min(maxLength, Math.max(...encoded.map(({ a, b }) => full(a, b)))) : maxLength;
  const ids = new Int32Array(n * width).fill(pad);
  const mask = new Int32Array(n * width);
  const types = new Int32Array(n * width);
  encoded.forEach(({ a, b }, row) => {
    const [na, nb] = longestFirstLengths(a.length, b?.length, maxLength - (b ? 3 : 2));
    const seq = [cls, ...a.slice(0, na), sep];
    const typeOf = seq.map(() => 0);
    if (b) {
      const second = [...b.slice(0, nb), sep];
      seq.push(...second);
      typeOf.push(...second.map(() => 1));
    }
    const base = row * width;
    seq.forEach((id, i) => {
      ids[base + i] = id;
      mask[base + i] = 1;
      types[base + i] = typeOf[i];
    });
  });
  return {
    input_ids: tf.tensor2d(ids, [n, width], 'int32'),
    attention_mask: tf.tensor2d(mask, [n, width], 'int32'),
    token_type_ids: tf.tensor2d(types, [n, width], 'int32'),
  };
}
