/** @masksub/core: the sub-model contract, withMaskSub, the adapter registry, checkpoint I/O, backends. */
export { tf } from './tf.js';
// The tfjs-free part (errors, seeded RNG, medians), also its own entry: @masksub/core/base.
export * from './base.js';
export * from './model.js';
export * from './nn.js';
export * from './contract/drop.js';
export * from './contract/loss.js';
export * from './contract/schedule.js';
export * from './contract/text.js';
export * from './masksub.js';
export * from './registry.js';
export * from './layers-model.js';
export * from './backend/index.js';
export * from './io/index.js';
export * from './pretrained.js';
export * from './config-overrides.js';
export * from './verify.js';
export * from './memory.js';
export * from './optim/index.js';
export * from './bench/matmul.js';
