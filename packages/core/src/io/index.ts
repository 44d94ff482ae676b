/** Checkpoint I/O: safetensors, ONNX (named, anonymous, quantized, folded), HF folders, inspection. */
export type { DType, HostTensor, TensorMap, TypedData } from './types.js';
export { numel, toFloat32 } from './types.js';
export type { SafetensorsMetadata, WriteSafetensorsOptions } from './safetensors.js';
export {
  bfloat16ToFloat32,
  float16ToFloat32,
  float32ToBfloat16,
  float32ToFloat16,
  parseSafetensors,
  readSafetensors,
  readSafetensorsMetadata,
  serializeSafetensors,
  streamSafetensors,
  writeFileAtomic,
  writeFileAtomicWith,
  MAX_SAFETENSORS_BUFFER_BYTES,
  writeSafetensors,
} from './safetensors.js';
export type { AliasTable, Finding, FindingKind, InitializerRecord, OnnxReport, OnnxWeights, ReadOnnxOptions, Resolution } from './onnx.js';
export { decodeOnnxModel, isAnonymous, parseOnnxWeights, readOnnxWeights } from './onnx.js';
export type { CheckpointLocation, DiscoverOptions, HfConfig, ReadWeightsResult, WeightsFormat, WeightsReport } from './hf-folder.js';
export { WEIGHT_CANDIDATES, discoverCheckpoint, formatOfFile, locateWeights, readConfig, readShardedSafetensors, readWeights } from './hf-folder.js';
export type { InspectedTensor, InspectReport } from './inspect.js';
export { formatInspectReport, inspectCheckpoint } from './inspect.js';
export { folderFile, folderSubfolder, requiredFolderFile } from './contained-path.js';
export { permute, transpose2d } from './permute.js';
export type { PthReadResult } from './pth.js';
export { ForbiddenGlobalError, STATE_DICT_KEYS, parsePth, readPth } from './pth.js';
export type { TimmInterpolation, TimmPreprocessing } from './timm-config.js';
export { TIMM_DEFAULT_CROP_PCT, TIMM_INTERPOLATIONS, timmPreprocessing } from './timm-config.js';
export type { PthWriteOptions } from './pth-write.js';
export { serializePth, writePth } from './pth-write.js';
