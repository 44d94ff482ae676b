/**
 * How BERT parameters group for the optimizer: the embeddings (word, position, token type and
 * their LayerNorm) are layer 0, encoder layer i is layer i + 1, the pooler and the classifier
 * come last. Weight decay as HF's run_glue / Trainer: none on biases and LayerNorm weights (the
 * 1-D parameters); the embedding tables decay.
 */
import { blockIndex, layeredParamGroups, type ParamGroups } from '@masksub/core';

export function bertParamGroups(numLayers: number): ParamGroups {
  return layeredParamGroups({
    numLayers,
    embedding: (n) => n.startsWith('bert.embeddings.'),
    block: (n) => blockIndex(/^bert\.encoder\.layer\.(\d+)\./, n),
  });
}
