/**
 * CLIP's byte-level BPE tokenizer through @huggingface/transformers' CLIPTokenizer, from a local
 * folder: a hub tokenizer.json (+ tokenizer_config.json), or OpenAI's `bpe_simple_vocab_16e6.txt.gz`
 * / HF's `merges.txt` (+ `vocab.json`), from which the tokenizer.json HF's CLIPTokenizerFast
 * ships is rebuilt. `tokenizeCaptions` turns captions into the padded `input_ids` /
 * `attention_mask` the model takes.
 */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { FileFormatError, OptionError, folderFile, tf } from '@masksub/core';

export const CLIP_SPECIAL_TOKENS = { bos: '<|startoftext|>', eos: '<|endoftext|>' } as const;

/** OpenAI's simple_tokenizer.py uses the first 49152 - 256 - 2 merges of the 262,144 in the file. */
const OPENAI_MERGE_COUNT = 49152 - 256 - 2;

/** The regex HF's CLIPTokenizerFast splits words with (OpenAI's `pat`, minus the special tokens' escapes). */
const WORD_PATTERN = "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";

/** GPT-2/CLIP's reversible byte -> printable character table, in its canonical order. */
function byteCharacters(): string[] {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const bytes = [...printable];
  const chars = printable.map((b) => String.fromCodePoint(b));
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!printable.includes(b)) {
      bytes.push(b);
      chars.push(String.fromCodePoint(256 + n++));
    }
  }
  return chars;
}

/**
 * The tokenizer.json of HF's CLIPTokenizerFast for a merge list ("a b" per merge): the vocabulary
 * is the 256 byte characters, the same with `</w>`, one token per merge, then the two special
 * tokens (49,408 for OpenAI's merges), exactly as simple_tokenizer.py builds it.
 */
export function clipTokenizerJson(merges: readonly string[], vocab?: Readonly<Record<string, number>>): Record<string, unknown> {
  let table: Record<string, number>;
  if (vocab) {
    table = { ...vocab };
  } else {
    const base = byteCharacters();
    const tokens = [...base, ...base.map((c) => `${c}</w>`), ...merges.map((m) => m.replace(' ', '')), CLIP_SPECIAL_TOKENS.bos, CLIP_SPECIAL_TOKENS.eos];
    table = Object.fromEntries(tokens.map((t, i) => [t, i]));
  }
  const bos = table[CLIP_SPECIAL_TOKENS.bos];
  const eos = table[CLIP_SPECIAL_TOKENS.eos];
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(bos, CLIP_SPECIAL_TOKENS.bos), special(eos, CLIP_SPECIAL_TOKENS.eos)],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Lowercase' }] },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: WORD_PATTERN }, behavior: 'Removed', invert: true },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: { type: 'RobertaProcessing', sep: [CLIP_SPECIAL_TOKENS.eos, eos], cls: [CLIP_SPECIAL_TOKENS.bos, bos], trim_offsets: false, add_prefix_space: false },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: CLIP_SPECIAL_TOKENS.eos,
      continuing_subword_prefix: '',
      end_of_word_suffix: '</w>',
      fuse_unk: false,
      byte_fallback: false,
      vocab: table,
      merges: [...merges],
    },
  };
}

/** HF's tokenizer_config.json for openai/clip-vit-*: EOS doubles as padding and unknown token. */
const DEFAULT_TOKENIZER_CONFIG = {
  tokenizer_class: 'CLIPTokenizer',
  bos_token: CLIP_SPECIAL_TOKENS.bos,
  eos_token: CLIP_SPECIAL_TOKENS.eos,
  pad_token: CLIP_SPECIAL_TOKENS.eos,
  unk_token: CLIP_SPECIAL_TOKENS.eos,
  do_lower_case: true,
  model_max_length: 77,
};

export interface ClipTokenizer {
  /** Token ids with `<|startoftext|>` ... `<|endoftext|>`. */
  encode(text: string): number[];
  /** Text back from ids (special tokens dropped). */
  decode(ids: readonly number[]): string;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly padTokenId: number;
  /** The context length captions are padded to by default (77 for OpenAI CLIP). */
  readonly modelMaxLength: number;
  /** Where it was read from. */
  readonly source: string;
}

function readJson(path: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new FileFormatError(path, `not valid JSON (${(e as Error).message})`);
  }
}

/** Merge lines of a merges file: skips the `#version` header; `limit` keeps the first ones. */
function parseMerges(text: string, path: string, limit?: number): string[] {
  const lines = text.split('\n');
  const start = lines[0]?.includes('#version') ? 1 : 0;
  const merges: string[] = [];
  for (let i = start; i < lines.length && (limit === undefined || merges.length < limit); i++) {
    const line = lines[i].trimEnd();
    if (!line) continue;
    if (line.split(' ').length !== 2) throw new FileFormatError(path, `line ${i + 1} is not a merge 'a b': ${JSON.stringify(line.slice(0, 40))}`);
    merges.push(line);
  }
  if (merges.length === 0) throw new FileFormatError(path, 'holds no merges');
  return merges;
}

/** The tokenizer.json / tokenizer_config.json pair for a folder, in the order the files are tried. */
function readTokenizerFiles(dir: string): { json: Record<string, unknown>; config: Record<string, unknown>; source: string } {
  // Files found by name in an untrusted folder: folderFile refuses symlinks out of it.
  const configPath = folderFile(dir, 'tokenizer_config.json');
  const config = { ...DEFAULT_TOKENIZER_CONFIG, ...(configPath !== undefined ? readJson(configPath) : {}) };
  const tokenizerJson = folderFile(dir, 'tokenizer.json');
  if (tokenizerJson !== undefined) return { json: readJson(tokenizerJson), config, source: tokenizerJson };
  const merges = folderFile(dir, 'merges.txt');
  if (merges !== undefined) {
    const vocabPath = folderFile(dir, 'vocab.json');
    const vocab = vocabPath !== undefined ? (readJson(vocabPath) as Record<string, number>) : undefined;
    return { json: clipTokenizerJson(parseMerges(readFileSync(merges, 'utf8'), merges), vocab), config, source: merges };
  }
  const openai = folderFile(dir, 'bpe_simple_vocab_16e6.txt.gz');
  if (openai !== undefined) {
    let text: string;
    try {
      text = gunzipSync(readFileSync(openai)).toString('utf8');
    } catch (e) {
      throw new FileFormatError(openai, `not a gzip file (${(e as Error).message})`);
    }
    return { json: clipTokenizerJson(parseMerges(text, openai, OPENAI_MERGE_COUNT)), config, source: openai };
  }
  throw new FileFormatError(dir, 'no CLIP tokenizer here: expected tokenizer.json, merges.txt (+ vocab.json) or bpe_simple_vocab_16e6.txt.gz');
}

/** A CLIP tokenizer from a local folder (nothing is downloaded). */
export async function loadClipTokenizer(dir: string): Promise<ClipTokenizer> {
  const { json, config, source } = readTokenizerFiles(dir);
  // Imported here, not at the top: registering the adapter should not load transformers.js.
  const { CLIPTokenizer } = await import('@huggingface/transformers');
  const tok = new CLIPTokenizer(json, config);
  const id = (token: string, role: string): number => {
    const v = tok.convert_tokens_to_ids(token);
    if (typeof v !== 'number') throw new FileFormatError(source, `the ${role} token ${token} is not in the vocabulary`);
    return v;
  };
  const bosTokenId = id(String(config.bos_token), 'bos');
  const eosTokenId = id(String(config.eos_token), 'eos');
  const padTokenId = id(String(config.pad_token), 'pad');
  const max = Number(config.model_max_length);
  return {
    encode: (text) => tok.encode(text),
    decode: (ids) => tok.decode([...ids], { skip_special_tokens: true }),
    bosTokenId,
    eosTokenId,
    padTokenId,
    // Some hub configs store a huge sentinel (1e30) for "no limit": fall back to CLIP's 77.
    modelMaxLength: Number.isInteger(max) && max > 0 && max < 1e6 ? max : 77,
    source,
  };
}

export interface TokenizeOptions {
  /** Context length (default: the tokenizer's, 77 for OpenAI CLIP; must fit the model's max_position_embeddings). */
  maxLength?: number;
  /** 'max_length' (default; every batch the same shape, as CLIP was trained) or 'longest' in the batch. */
  padding?: 'max_length' | 'longest';
}

export interface CaptionBatch {
  /** int32 [B, L]; padded with the pad token. */
  input_ids: tf.Tensor2D;
  /** int32 [B, L]; 1 for real tokens. */
  attention_mask: tf.Tensor2D;
}

/**
 * Captions -> padded `input_ids` / `attention_mask`. A caption longer than the context is cut as
 * OpenAI's `clip.tokenize(truncate=True)` does: its last token becomes `<|endoftext|>`, so the
 * text is still pooled at an EOS token.
 */
export function tokenizeCaptions(tokenizer: ClipTokenizer, captions: readonly string[], options: TokenizeOptions = {}): CaptionBatch {
  const maxLength = options.maxLength ?? tokenizer.modelMaxLength;
  if (!Number.isInteger(maxLength) || maxLength < 2) throw new OptionError('maxLength', `must be an integer >= 2 (room for the start and end tokens), got ${maxLength}`);
  if (captions.length === 0) throw new OptionError('captions', 'no captions to tokenize');
  const encoded = captions.map((c) => {
    const ids = tokenizer.encode(c);
    if (ids.length <= maxLength) return ids;
    const cut = ids.slice(0, maxLength);
    cut[maxLength - 1] = tokenizer.eosTokenId;
    return cut;
  });
  const length = options.padding === 'longest' ? Math.max(...encoded.map((e) => e.length)) : maxLength;
  const ids = new Int32Array(captions.length * length).fill(tokenizer.padTokenId);
  const mask = new Int32Array(captions.length * length);
  encoded.forEach((e, b) => {
    ids.set(e, b * length);
    mask.fill(1, b * length, b * length + e.length);
  });
  return {
    input_ids: tf.tensor2d(ids, [captions.length, length], 'int32'),
    attention_mask: tf.tensor2d(mask, [captions.length, length], 'int32'),
  };
}
