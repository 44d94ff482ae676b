/** The name table: hub checkpoint names of HF BertForSequenceClassification -> parameters and layouts. */
import type { ParamSpec } from '@masksub/core';
import type { BertConfig } from './config.js';

export function bertParamSpecs(c: BertConfig): ParamSpec[] {
  const d = c.hiddenSize;
  // BertPreTrainedModel._init_weights: normal(0, initializer_range = 0.02) for Linear and
  // Embedding, zeros for biases, ones/zeros for LayerNorm.
  const w = 0.02;
  const specs: ParamSpec[] = [
    { name: 'bert.embeddings.word_embeddings.weight', shape: [c.vocabSize, d], layout: 'identity', init: { normal: w } },
    { name: 'bert.embeddings.position_embeddings.weight', shape: [c.maxPositionEmbeddings, d], layout: 'identity', init: { normal: w } },
    { name: 'bert.embeddings.token_type_embeddings.weight', shape: [c.typeVocabSize, d], layout: 'identity', init: { normal: w } },
  ];
  const lin = (name: string, out: number, inp: number): void => {
    specs.push({ name: `${name}.weight`, shape: [out, inp], layout: 'linear', init: { normal: w } });
    specs.push({ name: `${name}.bias`, shape: [out], layout: 'identity', init: 'zeros' });
  };
  const norm = (name: string): void => {
    specs.push({ name: `${name}.weight`, shape: [d], layout: 'identity', init: 'ones' });
    specs.push({ name: `${name}.bias`, shape: [d], layout: 'identity', init: 'zeros' });
  };
  norm('bert.embeddings.LayerNorm');
  for (let i = 0; i < c.numHiddenLayers; i++) {
    const l = `bert.encoder.layer.${i}`;
    for (const proj of ['query', 'key', 'value']) lin(`${l}.attention.self.${proj}`, d, d);
    lin(`${l}.attention.output.dense`, d, d);
    norm(`${l}.attention.output.LayerNorm`);
    lin(`${l}.intermediate.dense`, c.intermediateSize, d);
    lin(`${l}.output.dense`, d, c.intermediateSize);
    norm(`${l}.output.LayerNorm`);
  }
  lin('bert.pooler.dense', d, d);
  lin('classifier', c.numLabels, d);
  return specs;
}

/**
 * Tensors a hub file may carry that a sequence classifier does not use: the pre-training heads
 * of BertForPreTraining / BertForMaskedLM checkpoints (bert-base-uncased itself) and the
 * position_ids buffer older exports saved.
 */
export function bertIgnoredWeights(name: string): boolean {
  return /^cls\.(predictions|seq_relationship)\./.test(name) || /(^|\.)embeddings\.position_ids$/.test(name);
}

/** The classification head, re-initialised when fine-tuning to another label count. */
export function bertHeadWeights(name: string): boolean {
  return name.startsWith('classifier.');
}

/**
 * Other spellings -> hub names. Checkpoints converted from the original TF BERT name LayerNorm's
 * parameters gamma/beta (transformers renames them on load); a bare BertModel saves its tensors
 * without the `bert.` prefix. transformers 5 keeps BERT's hub module names (the fixture's
 * name_map is the identity), so there is no transformers-5 table as for ViT.
 */
export function bertAliases(c: BertConfig): Record<string, string> {
  const out: Record<string, string> = {};
  for (const spec of bertParamSpecs(c)) {
    const hub = spec.name;
    const variants = [hub];
    if (hub.startsWith('bert.')) variants.push(hub.slice('bert.'.length));
    for (const v of variants) {
      if (v !== hub) out[v] = hub;
      if (v.includes('LayerNorm.')) out[v.replace(/LayerNorm\.weight$/, 'LayerNorm.gamma').replace(/LayerNorm\.bias$/, 'LayerNorm.beta')] = hub;
    }
  }
  return out;
}
