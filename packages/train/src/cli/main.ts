#!/usr/bin/env node
/**
 * The masksub command line, thin over the library:
 *   masksub train --config run.yaml [--resume <run>] [flags]
 *   masksub compare --config run.yaml          (baseline and MaskSub side by side)
 *   masksub eval --model <dir> --data <spec>
 *   masksub verify --model <dir> --reference <file.safetensors> [--weights <file>]
 *   masksub inspect <dir or file>
 *   masksub report <run> [<run> ...]
 *   masksub study --config studies/<name>.yaml  (a grid over seeds, resumable, aggregated)
 *   masksub recipes [<name>]                   (the named recipes; one resolved)
 *   masksub bench [--quick]
 */
import { Command, CommanderError, Option } from 'commander';
import { realpathSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BACKEND_NAMES, DEFAULT_TOLERANCES, LOSS_KINDS, MASK_DROP_KINDS, OPTIMIZER_KINDS, VARIANTS, folderFile, formatInspectReport, formatVerifyReport, initBackend, inspectCheckpoint, listAdapters, loadPretrained, readConfig, MaskSubError, OptionError, textCapabilityOf, verifyModel } from '@masksub/core';
import { configToYaml, parseRunConfig, readConfigFile, setPath, type RunConfig } from '../config.js';
import { listRecipes, readRecipe } from '../recipes.js';
import { openDataSpec } from '../data/spec.js';
import { preprocessForModel } from '../model-preprocess.js';
import { evaluate } from '../evaluate.js';
import { writeReport } from '../report/report.js';
import { PERCENT_METRICS } from '../report/metrics.js';
import { limitDataset } from '../subset.js';
import { RESOLVED_CONFIG, readRunConfig, resolveLearningRate, trainRun, type TrainRunResult } from '../trainer.js';
import { readStudy } from '../study/schema.js';
import { runStudy } from '../study/run.js';
import { evaluateText, isImageTextConfig, parseGlueSpec, taskKindOf } from '../tasks/index.js';
import { readGlueTask } from '../data/glue.js';
import { loadPlugins } from './plugins.js';
import { checkResumeChanges, configChanges, describeChanges } from '../run-guard.js';
import { runImageTextEval, runZeroShot } from '../tasks/zero-shot-run.js';

const log = (m: string) => process.stderr.write(`${m}\n`);
const ARCH_HELP = 'timm architecture of a lone .pth without config.json (e.g. resnet50, deit3_base_patch16_224)';

/** Flags that map onto config keys (the file's values are overridden). */
const CONFIG_FLAGS: [flag: string, key: string, parse: (v: string) => unknown, help: string][] = [
  ['--recipe <name>', 'recipe', String, 'a named recipe underneath the config file and flags (masksub recipes lists them)'],
  ['--model <dir>', 'model', String, 'checkpoint folder, or a config.json to train from scratch'],
  ['--weights <file>', 'weights', String, 'explicit weights file (safetensors, ONNX or .pth)'],
  ['--arch <name>', 'arch', String, ARCH_HELP],
  ['--data <spec>', 'data.train', String, 'training data (webdataset:, folder:, idx:, mnist:, fashion-mnist:)'],
  ['--eval-data <spec>', 'data.eval', String, 'evaluation data'],
  ['--steps <n>', 'train.steps', Number, 'optimizer steps'],
  ['--epochs <n>', 'train.epochs', Number, 'epochs (when --steps is not given)'],
  ['--batch-size <n>', 'train.batch_size', Number, 'batch size'],
  ['--lr <x>', 'optimizer.lr', Number, 'peak learning rate'],
  ['--optimizer <kind>', 'optimizer.kind', String, OPTIMIZER_KINDS.join(' | ')],
  ['--loss <kind>', 'train.loss', String, LOSS_KINDS.join(' | ')],
  ['--variant <v>', 'masksub.variant', String, VARIANTS.join(' | ')],
  ['--drop <kind>', 'masksub.drop', String, MASK_DROP_KINDS.join(' | ')],
  ['--ratio <r>', 'masksub.ratio', Number, 'drop ratio in [0, 1)'],
  ['--seed <n>', 'train.seed', Number, 'seed of every random stream'],
  ['--run-dir <dir>', 'run.dir', String, 'run folder'],
  ['--backend <name>', 'run.backend', String, BACKEND_NAMES.join(' | ')],
];

function parseSetValue(v: string): unknown {
  if (v === 'true') return true;
  if (v === 'false') return false;
  if (v === 'null') return null;
  if (v !== '' && !Number.isNaN(Number(v))) return Number(v);
  if (v.startsWith('[') || v.startsWith('{')) return JSON.parse(v);
  return v;
}

/**
 * The config file (if any), then the flags and --set values on top, unvalidated; `flagged` maps
 * each key a flag set to that flag as typed, so errors can name it.
 */
export function rawConfig(opts: Record<string, unknown>, flagged = new Map<string, string>()): Record<string, unknown> {
  const raw: Record<string, unknown> = opts.config ? readConfigFile(String(opts.config)) : {};
  for (const [flag, key, parse] of CONFIG_FLAGS) {
    const name = camel(flag.split(' ')[0].slice(2));
    if (opts[name] === undefined) continue;
    setPath(raw, key, parse(String(opts[name])));
    flagged.set(key, `${flag.split(' ')[0]} ${String(opts[name])}`);
  }
  for (const kv of (opts.set as string[] | undefined) ?? []) {
    const eq = kv.indexOf('=');
    if (eq < 1) throw new OptionError('set', `'${kv}': expected key=value`);
    let value: unknown;
    try {
      value = parseSetValue(kv.slice(eq + 1));
    } catch (e) {
      throw new OptionError('set', `'${kv}': the value is not valid JSON (${(e as Error).message})`);
    }
    setPath(raw, kv.slice(0, eq), value);
    flagged.set(kv.slice(0, eq), `--set ${kv}`);
  }
  if (opts.quiet) setPath(raw, 'run.quiet', true);
  return raw;
}

/**
 * Where the value of a config key came from: the flag that set it (or set an object holding
 * it, `--set masksub={...}`), else `fallback` (the config file, or the stored run config).
 */
export function configSource(flagged: ReadonlyMap<string, string>, fallback: string): (key: string) => string {
  return (key) => {
    for (const [k, flag] of flagged) if (key === k || key.startsWith(`${k}.`)) return flag;
    return fallback;
  };
}

/** Every leaf of a nested object as [dotted key, value]. */
function leaves(o: Record<string, unknown>, prefix = ''): [string, unknown][] {
  return Object.entries(o).flatMap(([k, v]) =>
    typeof v === 'object' && v !== null && !Array.isArray(v) ? leaves(v as Record<string, unknown>, `${prefix}${k}.`) : [[`${prefix}${k}`, v] as [string, unknown]],
  );
}

/**
 * The stored config of a run being resumed, with the flags given on top: only keys that do not
 * change the recipe (backend, quiet, log cadence) may differ; anything else is refused, listed.
 */
function resumeConfig(runDir: string, opts: Record<string, unknown>): RunConfig {
  const stored = readRunConfig(runDir);
  const merged = JSON.parse(JSON.stringify(stored)) as Record<string, unknown>;
  const flagged = new Map<string, string>();
  for (const [key, value] of leaves(rawConfig(opts, flagged))) setPath(merged, key, value);
  setPath(merged, 'run.dir', runDir);
  const config = parseRunConfig(merged, configSource(flagged, join(runDir, RESOLVED_CONFIG)));
  const changes = checkResumeChanges(
    configChanges(stored, config).filter((c) => c.key !== 'run.dir'),
    'the flags given with --resume',
  );
  if (changes.length) log(`resume: applying ${describeChanges(changes)}`);
  return config;
}

/** A positive integer flag value, or an OptionError naming the flag. */
function positiveIntFlag(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new OptionError(flag, `expected a positive integer, got '${value}'`);
  return n;
}

function resolveConfig(opts: Record<string, unknown>): RunConfig {
  const flagged = new Map<string, string>();
  const raw = rawConfig(opts, flagged);
  const config = parseRunConfig(raw, configSource(flagged, opts.config ? String(opts.config) : 'flags'));
  if (config.optimizer.blr !== undefined) {
    log(`optimizer.lr from optimizer.blr: ${config.optimizer.blr} * ${config.train.batch_size * config.train.accum_steps} / 256 = ${resolveLearningRate(config)} (batch_size * accum_steps / 256)`);
  } else if (config.optimizer.lr === undefined) {
    log(`optimizer.lr is not set: ${resolveLearningRate(config)} (the ${taskKindOf(config)} default for ${config.model.endsWith('.json') ? 'training from scratch' : 'fine-tuning a pretrained checkpoint'}; --lr sets it)`);
  }
  return config;
}

function camel(s: string): string {
  return s.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

function withConfigFlags(cmd: Command): Command {
  cmd.option('--config <file>', 'run configuration (YAML)');
  for (const [flag, , , help] of CONFIG_FLAGS) cmd.option(flag, help);
  cmd.option('--set <key=value...>', 'override any config key, e.g. --set optimizer.weight_decay=0.05');
  cmd.option('--quiet', 'plain log lines instead of a progress bar');
  return cmd;
}

function summaryLine(name: string, r: TrainRunResult): string {
  const f = r.final;
  const ema = r.finalEma ? `\n${'  EMA'.padEnd(10)} ${r.finalEma.summary}  (${r.emaModelDir})` : '';
  return `${name.padEnd(10)} ${f ? f.summary : 'no evaluation data'}  (${r.steps} steps, ${r.examplesPerSecond.toFixed(1)} ${r.unit}/s, ${r.runDir})${ema}`;
}

export async function main(argv: string[]): Promise<void> {
  const program = new Command('masksub').description('MaskSub fine-tuning for TensorFlow.js model-zoo checkpoints').option('--plugin <pkg...>', 'extra architecture packages to load');
  // Commander's own usage errors (unknown option or command, a missing argument) would exit 1,
  // the code of a run that failed; thrown instead, they exit 2 as every other bad input below.
  // (Set before the subcommands are added: they inherit it.)
  program.exitOverride();
  const plugins = async () => {
    const r = await loadPlugins((program.opts().plugin as string[] | undefined) ?? []);
    if (r.loaded.length === 0) log(`no architecture packages found (looked for ${r.missing.join(', ')})`);
  };

  withConfigFlags(program.command('train').description('fine-tune a checkpoint, with or without MaskSub'))
    .option('--resume <run>', 'continue a run folder from its last checkpoint')
    .option('--force', 'start afresh in a run folder that holds a previous run (its checkpoints, metrics and model are removed)')
    .action(async (opts: Record<string, unknown>) => {
      await plugins();
      if (opts.resume && opts.force) throw new OptionError('force', '--force starts a run afresh and cannot be combined with --resume');
      const config = opts.resume ? resumeConfig(String(opts.resume), opts) : resolveConfig(opts);
      const r = await trainRun(config, { resume: Boolean(opts.resume), force: Boolean(opts.force), log });
      console.log(summaryLine(config.masksub.variant, r));
      console.log(`model saved to ${r.modelDir}; report: ${join(r.runDir, 'report.md')}`);
    });

  withConfigFlags(program.command('compare').description('run the same recipe as a baseline and with MaskSub, and report them side by side')).action(
    async (opts: Record<string, unknown>) => {
      await plugins();
      const base = resolveConfig(opts);
      const results: [string, TrainRunResult][] = [];
      for (const variant of ['none', base.masksub.variant === 'none' ? 'masksub' : base.masksub.variant] as const) {
        const name = variant === 'none' ? 'baseline' : variant;
        // The baseline is the plain recipe: loss weights set for MaskSub do not apply to it.
        const masksub = variant === 'none' ? { ...base.masksub, variant, main_weight: undefined, sub_weight: undefined } : { ...base.masksub, variant };
        const config: RunConfig = { ...base, masksub, run: { ...base.run, dir: join(base.run.dir, name) } };
        log(`\n== ${name} ==`);
        results.push([name, await trainRun(config, { log })]);
      }
      await writeReport(results.map(([, r]) => r.runDir), { outDir: base.run.dir, title: 'Baseline vs MaskSub' });
      console.log('\nresults (same data, recipe, seed and steps):');
      for (const [name, r] of results) console.log(summaryLine(name, r));
      const key = results[0][1].metric;
      const [b, m] = results.map(([, r]) => (key ? r.final?.metrics[key] : undefined));
      if (key && b !== undefined && m !== undefined) {
        const percent = PERCENT_METRICS.has(key);
        const diff = m - b;
        console.log(`MaskSub - baseline ${key === 'top1' ? 'top-1' : key}: ${(diff >= 0 ? '+' : '') + diff.toFixed(percent ? 2 : 4)}${percent ? ' points' : ''}`);
      }
      console.log(`report: ${join(base.run.dir, 'report.md')}`);
    },
  );

  program
    .command('eval')
    .description('metrics of a checkpoint on a dataset: top-1 / top-5 and loss for images, the GLUE metrics for glue: specs, retrieval recalls (and zero-shot accuracies) for an image-text folder')
    .requiredOption('--model <dir>', 'checkpoint folder')
    .requiredOption('--data <spec>', 'evaluation data')
    .option('--weights <file>', 'explicit weights file')
    .option('--arch <name>', ARCH_HELP)
    .option('--batch-size <n>', 'batch size', '64')
    .option('--limit <n>', 'first N samples only')
    .option('--mean <list>', 'normalisation mean, comma-separated')
    .option('--std <list>', 'normalisation std, comma-separated')
    .option('--backend <name>', BACKEND_NAMES.join(' | '))
    .option('--zero-shot', 'zero-shot classification with an image-text model (CLIP): prompts over class names')
    .option('--classes <file>', 'zero-shot: class names, one a line (default: classes.txt beside the data, or the folder names)')
    .option('--templates <set or template...>', "zero-shot and image-text: 'simple', 'cifar' or templates with '{}' (default simple)")
    .option('--tokenizer <dir>', 'text and zero-shot: tokenizer folder (default: the model folder)')
    .option('--max-length <n>', 'text: longest row in tokens', '128')
    .action(async (opts: Record<string, string | undefined>) => {
      const limit = positiveIntFlag('limit', opts.limit);
      const batchSize = positiveIntFlag('batch-size', opts.batchSize)!;
      await plugins();
      await initBackend({ prefer: opts.backend as 'wasm' | 'cpu' | 'tensorflow' | undefined, log });
      const glue = parseGlueSpec(opts.data!, 'data');
      if (glue) {
        const { model, adapter, dir } = await loadPretrained(opts.model!, { weights: opts.weights, log });
        const text = textCapabilityOf(adapter);
        if (!text) throw new MaskSubError(`${opts.model}: the ${adapter.name} model takes no text; glue: data needs a text model`);
        const tokenizer = await text.loadTokenizer(opts.tokenizer ?? dir);
        const rows = await readGlueTask(glue.dir, glue.task, glue.split);
        const r = await evaluateText(model, glue.task, limit ? rows.slice(0, limit) : rows, tokenizer, batchSize, positiveIntFlag('max-length', opts.maxLength)!);
        console.log(r.summary);
        model.dispose();
        return;
      }
      const list = (s: string | undefined) => s?.split(',').map(Number);
      if (opts.zeroShot) {
        const templates = opts.templates as string | string[] | undefined;
        const z = await runZeroShot({ model: opts.model!, data: opts.data!, weights: opts.weights, classes: opts.classes, templates: Array.isArray(templates) && templates.length === 1 ? templates[0] : templates, tokenizer: opts.tokenizer, batchSize: Number(opts.batchSize), limit: opts.limit ? Number(opts.limit) : undefined, mean: list(opts.mean), std: list(opts.std), log });
        console.log(`zero-shot top-1 ${z.metrics.top1.toFixed(2)}%  top-5 ${z.metrics.top5.toFixed(2)}%  loss ${z.loss.toFixed(4)}  (${z.count} images, ${z.classes} classes, ${z.templates} templates)`);
        return;
      }
      const modelConfig = folderFile(opts.model!, 'config.json');
      if (modelConfig !== undefined && isImageTextConfig(readConfig(modelConfig))) {
        // An image-text folder (CLIPModel): what contrastive training logs for an eval split.
        const templates = opts.templates as string | string[] | undefined;
        const r = await runImageTextEval({ model: opts.model!, data: opts.data!, weights: opts.weights, classes: opts.classes, templates: Array.isArray(templates) && templates.length === 1 ? templates[0] : templates, tokenizer: opts.tokenizer, batchSize, limit, mean: list(opts.mean), std: list(opts.std), log });
        console.log(r.summary);
        return;
      }
      const { model, dir } = await loadPretrained(opts.model!, { weights: opts.weights, arch: opts.arch, log });
      const preprocess = await preprocessForModel(model, dir, { mean: list(opts.mean), std: list(opts.std) });
      const data = limitDataset(await openDataSpec(opts.data!, { numClasses: model.numClasses }), limit);
      const r = await evaluate(model, data, preprocess, batchSize);
      if (r.count === 0) throw new OptionError('data', `${data.description} holds no samples to evaluate`);
      console.log(`top-1 ${r.top1.toFixed(2)}%  top-5 ${r.top5.toFixed(2)}%  loss ${r.loss.toFixed(4)}  (${r.count} images)`);
    });

  program
    .command('verify')
    .description('compare logits, MaskSub losses and gradients with a PyTorch reference (fixture format)')
    .requiredOption('--model <dir>', 'checkpoint folder')
    .requiredOption('--reference <file>', 'reference.safetensors')
    .option('--weights <file>', 'explicit weights file (e.g. <dir>/model.onnx)')
    .option('--arch <name>', ARCH_HELP)
    .option('--tol-logits <x>', 'max abs error of logits', String(DEFAULT_TOLERANCES.logits))
    .option('--tol-loss <x>', 'max abs error of each loss half', String(DEFAULT_TOLERANCES.loss))
    .option('--tol-grad <x>', 'max relative error of gradients', String(DEFAULT_TOLERANCES.gradRelative))
    .option('--tol-grad-abs <x>', 'gradient differences below this count as float noise', String(DEFAULT_TOLERANCES.gradAbsolute))
    .option('--backend <name>', BACKEND_NAMES.join(' | '), 'cpu')
    .action(async (opts: Record<string, string | undefined>) => {
      await plugins();
      await initBackend({ prefer: opts.backend as 'wasm' | 'cpu' | 'tensorflow', log });
      const { model } = await loadPretrained(opts.model!, { weights: opts.weights, arch: opts.arch, log });
      const report = verifyModel(model, opts.reference!, { logits: Number(opts.tolLogits), loss: Number(opts.tolLoss), gradRelative: Number(opts.tolGrad), gradAbsolute: Number(opts.tolGradAbs) });
      console.log(formatVerifyReport(report));
      if (!report.ok) process.exitCode = 1;
    });

  program
    .command('inspect')
    .description('the format, tensors, resolution of anonymous ONNX weights, and parameter count')
    .argument('<path>', 'checkpoint folder or weights file')
    .option('--weights <file>', 'explicit weights file')
    .option('--arch <name>', `${ARCH_HELP}: also build it and place every tensor`)
    .action(async (path: string, opts: Record<string, string | undefined>) => {
      await plugins();
      console.log(formatInspectReport(inspectCheckpoint(path, { weights: opts.weights })));
      if (opts.arch) {
        // the same loader train/eval/verify use: an error names what does not fit
        const { model, adapter, config } = await loadPretrained(path, { weights: opts.weights, arch: opts.arch, log });
        console.log(`--arch ${opts.arch}: ${adapter.name} model, ${model.params.count().toLocaleString('en-US')} parameters, ${model.numClasses} classes; every tensor of the file placed (config ${JSON.stringify(config)})`);
        model.dispose();
      }
    });

  program
    .command('report')
    .description('write report.md and plots for one run, or a comparison of several')
    .argument('<runs...>', 'run folders')
    .option('--out <dir>', 'where to write the report')
    .action(async (runs: string[], opts: { out?: string }) => {
      const r = await writeReport(runs.length === 1 ? runs[0] : runs, { outDir: opts.out });
      console.log(`report: ${r.reportPath}`);
    });

  program
    .command('study')
    .description('run every cell (setting x seed) of a study without a summary, then aggregate: table, plots, results.json')
    .requiredOption('--config <file>', 'study file (YAML), e.g. studies/table-a5.yaml')
    .option('--only <settings...>', 'run only these settings (the others are still aggregated)')
    .option('--max-cells <n>', 'train at most this many cells in this process')
    .option('--aggregate-only', 'aggregate the existing cell summaries without training')
    .action(async (opts: { config: string; only?: string[]; maxCells?: string; aggregateOnly?: boolean }) => {
      await plugins();
      const study = readStudy(opts.config);
      const maxCells = opts.maxCells === undefined ? undefined : Number(opts.maxCells);
      if (maxCells !== undefined && !(Number.isInteger(maxCells) && maxCells >= 0)) throw new MaskSubError(`--max-cells: expected a non-negative integer, got '${opts.maxCells}'`);
      const r = await runStudy(study, { only: opts.only, maxCells, aggregateOnly: opts.aggregateOnly, command: `masksub study --config ${opts.config}`, log });
      console.log(`${study.name}: trained ${r.trained.length}, skipped ${r.skipped.length} complete, ${r.busy.length} busy; ${r.aggregate.cells.complete}/${r.aggregate.cells.total} cells complete`);
      console.log(`report: ${join(study.results, 'README.md')}`);
    });

  program
    .command('recipes')
    .description('list the named recipes (paper Table B.1, GLUE) with their source, or print one resolved as a run config')
    .argument('[name]', 'a recipe to print')
    .action((name: string | undefined) => {
      if (name === undefined) {
        const recipes = listRecipes();
        const width = Math.max(...recipes.map((r) => r.name.length));
        for (const r of recipes) console.log(`${r.name.padEnd(width)}  ${r.description}\n${' '.repeat(width)}  source: ${r.source}`);
        console.log('\nuse one with --recipe <name> (or `recipe: <name>` in a config file); the file and flags override its keys');
        return;
      }
      const recipe = readRecipe(name);
      // Every key the recipe leaves alone shows its schema default; model and data are the run's.
      const resolved = parseRunConfig({ recipe: name, model: '<--model>', data: { train: '<--data>' } }, recipe.file);
      console.log(`# ${recipe.name}: ${recipe.description}\n# source: ${recipe.source}\n# file: ${recipe.file}\n${configToYaml(resolved)}`);
    });

  program
    .command('adapters')
    .description('list the registered architecture adapters')
    .action(async () => {
      await plugins();
      for (const a of listAdapters()) console.log(`${a.name}: model_type ${a.modelTypes.join(', ')}`);
    });

  program.addOption(new Option('--debug', 'show stack traces').hideHelp());
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      // Commander has printed its message: --help and --version exit 0; a usage error (the help
      // printed for a missing command included) exits 2.
      process.exitCode = e.exitCode === 0 ? 0 : 2;
    } else if (e instanceof MaskSubError && !program.opts().debug) {
      log(`error: ${e.message}`);
      process.exitCode = 2;
    } else {
      throw e;
    }
  }
}

// Run when executed (also through the npm bin symlink), not when imported.
const invokedDirectly = process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
if (invokedDirectly) await main(process.argv);
