/** `masksub study`: grids of runs over seeds, resumable across sessions, aggregated with error bars. */
export { MEASURE_DROP_KINDS, parseStudy, readStudy, studySchema } from './schema.js';
export type { MeasureDropKind, MeasureSpec, Study, StudyFile, StudyInput, StudySetting } from './schema.js';
export { cellId, canonicalJson, CELLS_DIR, recipeDifferences, recipeOf, studyCells } from './cells.js';
export type { Cell } from './cells.js';
export { measureDropOperator, measureTrainLoss } from './measure.js';
export type { TrainLossMeasurement } from './measure.js';
export { buildSummary, lowerIsBetter, readRunHistory, readSummary, thin, writeSummary } from './summary.js';
export type { CellSummary, EvalPoint, Provenance, RunHistory, TrainPoint } from './summary.js';
export { aggregateStudy, compareStats, comparisonTable, findings, pm, primaryMetric, RULE, SIGNIFICANCE_FACTOR, stat, studyTable } from './aggregate.js';
export type { Comparison, Convergence, SettingResult, Stat, StudyAggregate } from './aggregate.js';
export { bandPoints, lossBandSpec, metricBandSpec } from './plots.js';
export { currentProvenance, machineDescription, readSummaries, runStudy, STUDY_REPORT, STUDY_RESULTS, writeStudyOutputs } from './run.js';
export type { StudyRunOptions, StudyRunResult } from './run.js';
