/**
 * Cells: one (setting, seed) of a study, an ordinary run folder with its resolved run config,
 * and the summary file that marks it complete.
 */
import { join } from 'node:path';
import { OptionError } from '@masksub/core';
import { parseRunConfig, readConfigFile, setPath, type RunConfig } from '../config.js';
import type { Study, StudySetting } from './schema.js';

export const CELLS_DIR = 'cells';

export interface Cell {
  /** `<setting>/seed-<n>`: also the relative path of the run folder and the summary. */
  id: string;
  setting: StudySetting;
  seed: number;
  runDir: string;
  summaryPath: string;
  config: RunConfig;
}

export function cellId(setting: string, seed: number): string {
  return `${setting}/seed-${seed}`;
}

/**
 * Everything of a run config that decides its result: the whole config but the `run` block
 * (where the folder is and how it reports). A summary written under another recipe is stale.
 */
export function recipeOf(config: RunConfig): Omit<RunConfig, 'run'> {
  const { run: _run, ...recipe } = config;
  return recipe;
}

/** Stable JSON (sorted keys), for comparing recipes across processes and machines. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** Leaf values by dotted path (arrays are leaves). */
function leaves(value: unknown, prefix = '', out = new Map<string, string>()): Map<string, string> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) if (v !== undefined) leaves(v, prefix ? `${prefix}.${k}` : k, out);
  } else {
    out.set(prefix, canonicalJson(value));
  }
  return out;
}

/**
 * Config keys whose values differ between two recipes. Keys present in only one are not
 * compared: a later schema that adds a key with a default (or drops a default) must not
 * invalidate summaries written before it; a value both give differently does.
 */
export function recipeDifferences(a: unknown, b: unknown): string[] {
  const la = leaves(a);
  const lb = leaves(b);
  return [...la.keys()].filter((k) => lb.has(k) && lb.get(k) !== la.get(k));
}

/** Resolve every cell's run config up front, so a bad key fails before hours of training. */
export function studyCells(study: Study): Cell[] {
  const base = readConfigFile(study.base);
  const cells: Cell[] = [];
  for (const setting of study.settings) {
    for (const seed of study.seeds) {
      const raw = structuredClone(base) as Record<string, unknown>;
      for (const [k, v] of Object.entries(study.set)) setPath(raw, k, v);
      for (const [k, v] of Object.entries(setting.set)) setPath(raw, k, v);
      if (Object.hasOwn(study.set, 'train.seed') || Object.hasOwn(setting.set, 'train.seed')) {
        throw new OptionError('train.seed', `${study.source}: setting '${setting.name}' sets train.seed; list seeds under 'seeds'`);
      }
      const id = cellId(setting.name, seed);
      const runDir = join(study.runs, setting.name, `seed-${seed}`);
      setPath(raw, 'train.seed', seed);
      setPath(raw, 'run.dir', runDir);
      setPath(raw, 'run.quiet', true);
      const config = parseRunConfig(raw, `${study.source} (base ${study.base}, setting '${setting.name}')`);
      cells.push({ id, setting, seed, runDir, summaryPath: join(study.results, CELLS_DIR, setting.name, `seed-${seed}.json`), config });
    }
  }
  return cells;
}
