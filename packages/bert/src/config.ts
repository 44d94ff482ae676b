/** The HF BERT config.json fields this adapter reads (BertConfig defaults), validated. */
import { FileFormatError, type HFConfig } from '@masksub/core';

/** What the head is trained for (HF `problem_type`): picks the loss, as BertForSequenceClassification does. */
export type ProblemType = 'single_label_classification' | 'multi_label_classification' | 'regression';

export interface BertConfig {
  vocabSize: number;
  hiddenSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  intermediateSize: number;
  hiddenAct: string;
  layerNormEps: number;
  maxPositionEmbeddings: number;
  typeVocabSize: number;
  padTokenId: number;
  numLabels: number;
  /** Explicit `problem_type`, or undefined: then HF decides from num_labels and the label dtype. */
  problemType: ProblemType | undefined;
  hiddenDropoutProb: number;
  attentionProbsDropoutProb: number;
  /** Dropout before the classifier: `classifier_dropout`, else hidden_dropout_prob (as HF). */
  classifierDropout: number;
  /**
   * Special token ids when the config carries them (`mask_token_id`, `cls_token_id`, ...).
   * BertConfig itself has none: they usually come from the tokenizer (see tokenizer.ts).
   */
  maskTokenId: number | undefined;
  clsTokenId: number | undefined;
  sepTokenId: number | undefined;
}

const PROBLEM_TYPES: readonly ProblemType[] = ['single_label_classification', 'multi_label_classification', 'regression'];

export function parseBertConfig(raw: HFConfig, source = 'config.json'): BertConfig {
  const int = (key: string, dflt: number, min = 1): number => {
    const v = raw[key] ?? dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new FileFormatError(source, `'${key}' must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    return v;
  };
  const prob = (key: string, dflt: number): number => {
    const v = raw[key] ?? dflt;
    if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw new FileFormatError(source, `'${key}' must be a probability in [0, 1], got ${JSON.stringify(v)}`);
    return v;
  };
  const optionalId = (key: string): number | undefined => {
    const v = raw[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new FileFormatError(source, `'${key}' must be a token id >= 0, got ${JSON.stringify(v)}`);
    return v;
  };
  const modelType = raw.model_type ?? 'bert';
  if (modelType !== 'bert') throw new FileFormatError(source, `model_type '${modelType}' is not bert`);
  const positionType = raw.position_embedding_type ?? 'absolute';
  if (positionType !== 'absolute') throw new FileFormatError(source, `position_embedding_type '${String(positionType)}' is not supported (only 'absolute')`);
  const hiddenSize = int('hidden_size', 768);
  const numAttentionHeads = int('num_attention_heads', 12);
  if (hiddenSize % numAttentionHeads) throw new FileFormatError(source, `hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numAttentionHeads}`);
  const id2label = raw.id2label as Record<string, string> | undefined;
  const numLabels = typeof raw.num_labels === 'number' ? raw.num_labels : id2label ? Object.keys(id2label).length : 2;
  if (!Number.isInteger(numLabels) || numLabels < 1) throw new FileFormatError(source, `'num_labels' must be a positive integer, got ${JSON.stringify(numLabels)}`);
  const problemType = raw.problem_type ?? undefined;
  if (problemType !== undefined && problemType !== null && !PROBLEM_TYPES.includes(problemType as ProblemType)) {
    throw new FileFormatError(source, `'problem_type' must be one of ${PROBLEM_TYPES.join(', ')}, got ${JSON.stringify(problemType)}`);
  }
  const hiddenDropoutProb = prob('hidden_dropout_prob', 0.1);
  const classifierDropout = raw.classifier_dropout === null || raw.classifier_dropout === undefined ? hiddenDropoutProb : prob('classifier_dropout', 0);
  const layerNormEps = raw.layer_norm_eps ?? 1e-12;
  if (typeof layerNormEps !== 'number' || !(layerNormEps > 0)) throw new FileFormatError(source, `'layer_norm_eps' must be a number > 0, got ${JSON.stringify(layerNormEps)}`);
  const vocabSize = int('vocab_size', 30522);
  const cfg: BertConfig = {
    vocabSize,
    hiddenSize,
    numHiddenLayers: int('num_hidden_layers', 12),
    numAttentionHeads,
    intermediateSize: int('intermediate_size', 3072),
    hiddenAct: typeof raw.hidden_act === 'string' ? raw.hidden_act : 'gelu',
    layerNormEps,
    maxPositionEmbeddings: int('max_position_embeddings', 512),
    typeVocabSize: int('type_vocab_size', 2),
    padTokenId: int('pad_token_id', 0, 0),
    numLabels,
    problemType: (problemType ?? undefined) as ProblemType | undefined,
    hiddenDropoutProb,
    attentionProbsDropoutProb: prob('attention_probs_dropout_prob', 0.1),
    classifierDropout,
    maskTokenId: optionalId('mask_token_id'),
    clsTokenId: optionalId('cls_token_id'),
    sepTokenId: optionalId('sep_token_id'),
  };
  for (const key of ['maskTokenId', 'clsTokenId', 'sepTokenId', 'padTokenId'] as const) {
    const id = cfg[key];
    if (id !== undefined && id >= vocabSize) throw new FileFormatError(source, `${key} ${id} is outside the vocabulary (vocab_size ${vocabSize})`);
  }
  return cfg;
}
