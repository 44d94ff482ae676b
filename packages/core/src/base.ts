/**
 * `@masksub/core/base`: the errors, the seeded RNG and the medians, without TensorFlow.js.
 *
 * The data pipeline (decoding, augmentation, the loader's worker thread) needs only these; the
 * package's main entry loads tfjs and its backends (~0.7 s), which a loader worker would
 * otherwise pay before its first batch. The classes are the main entry's own (both re-export
 * the same modules), so `instanceof` holds across the two.
 */
export * from './errors.js';
export * from './rng.js';
export * from './stats.js';
export { folderFile, folderSubfolder, requiredFolderFile } from './io/contained-path.js';
