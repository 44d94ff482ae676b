/** Run-folder reporting: metrics.jsonl, the progress display, SVG plots and report.md. */
export { METRICS_FILE, MetricsWriter, formatRecord, parseMetrics, readMetrics } from './metrics.js';
export type { EvalEntry, EvalRecord, MetricsRecord, MetricsWriterOptions, ParsedMetrics, TrainEntry, TrainRecord } from './metrics.js';
export { TrainingProgress, formatDuration, formatProgressLine } from './progress.js';
export type { ProgressOptions, ProgressStream, ProgressUpdate } from './progress.js';
export { AXIS, SERIES, accuracySpec, comparisonSpec, learningRateSpec, lossSpec, renderSvg, smooth, svgToPng } from './plots.js';
export type { PlotOptions, RunMetrics } from './plots.js';
export { PLOTS_DIR, REPORT_FILE, evaluationTable, summarizeRun, summaryTable, writeReport } from './report.js';
export type { ReportOptions, ReportResult, RunSummary } from './report.js';
export { syntheticMetrics } from './synthetic.js';
export type { SyntheticRunOptions } from './synthetic.js';
