/** @masksub/train: the trainer and the `masksub` command line over @masksub/core. */
export * from './data/index.js';
export * from './checkpoint/index.js';
export * from './report/index.js';
export * from './config.js';
export * from './evaluate.js';
export * from './subset.js';
export * from './trainer.js';
export * from './model-preprocess.js';
export * from './study/index.js';
