/** Training data: sources, decoding, preprocessing, augmentation and the resumable loader. */
export * from './types.js';
export { readTarMembers, indexTar, parseTarHeader, isGzip, type TarMember, type TarEntry, type TarHeader } from './tar.js';
export { buildTar, type TarInput } from './tar-writer.js';
export { decodeImage, decodeSample } from './decode.js';
export { WebDatasetStream, IndexedWebDataset, openWebDataset, expandBraces, splitMemberName, readShardSamples, type WebDatasetOptions } from './webdataset.js';
export { ImageFolderDataset } from './folder.js';
export { IdxImageDataset, readIdx, parseIdx, openIdxFolder, openMnistData, resolveMnistDataDir, idxSplitFiles, type IdxArray, type IdxSplit } from './idx.js';
export { resizeImage, cropImage, flipHorizontal, resampleFromPil, type Resample } from './resample.js';
export {
  preprocessSpecFromHf,
  loadPreprocessorConfig,
  explicitPreprocessSpec,
  applyGeometry,
  centerCropImage,
  writeNormalizedCHW,
  preprocessImage,
  outputSize,
  IMAGENET_MEAN,
  IMAGENET_STD,
  type PreprocessSpec,
  type ExplicitPreprocessOptions,
  type Size2D,
} from './preprocess.js';
export {
  augmentImage,
  randomResizedCropBox,
  mixBatch,
  mixupTargets,
  cutmixBox,
  sampleBeta,
  sampleGamma,
  type AugmentOptions,
  type MixupOptions,
  type MixResult,
  type CutBox,
} from './augment.js';
export { DataLoader, deriveRng, type DataLoaderOptions } from './loader.js';
export { parseDataSpec, openDataSpec, type DataSpec } from './spec.js';
export { readGlueTask, glueTaskName, glueNumLabels, type GlueTask, type GlueRow } from './glue.js';
export * as imageOps from './image-ops.js';
export { randAugment, parseRandAugment, applyRandAugmentOp, RAND_AUGMENT_OPS, RAND_AUGMENT_INCREASING_OPS, AUGMENT_INTERPOLATIONS, type RandAugmentConfig, type RandAugmentOptions, type AugmentInterpolation } from './randaugment.js';
export { randomErase, RANDOM_ERASING_MODES, type RandomErasingOptions, type RandomErasingMode } from './random-erasing.js';
export { threeAugment, THREE_AUGMENT_OPS } from './three-augment.js';
export { colorJitter, colorJitterStrength, type ColorJitterStrength } from './color-jitter.js';
export { repeatedOrder, repeatedEpochSize, type RepeatedAugmentation } from './repeat-sampler.js';
export { applyRecipeAugment, recipeLoaderOptions, type RecipeAugmentOptions } from './recipe-augment.js';
