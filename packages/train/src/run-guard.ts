/**
 * What protects a run folder from the user's own slips: a fresh run never overwrites an existing
 * one (unless --force, and then only a masksub run folder), and a resumed run continues the
 * recipe it was started with: a changed flag or an edited config.resolved.yaml is refused,
 * except for the keys that change only where and how the run reports.
 */
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { OptionError } from '@masksub/core';

/** What a masksub run writes into its folder (all of it goes on --force, nothing else does). */
export const RUN_OUTPUTS = ['checkpoints', 'model', 'model-ema', 'metrics.jsonl', 'report.md', 'plots', 'config.resolved.yaml'] as const;

/** Config keys a resume may change: they do not alter the weights a run reaches. */
export const SAFE_ON_RESUME: readonly string[] = ['run.dir', 'run.backend', 'run.quiet', 'run.log_every', 'run.model_format'];

/**
 * Refuse to start a fresh run in a folder that holds anything, unless `force`: then the outputs of
 * the previous masksub run there are removed (a folder that is not a masksub run is never emptied).
 */
export function prepareFreshRunDir(runDir: string, force: boolean, resolvedConfigName: string): void {
  if (!existsSync(runDir)) return;
  const entries = readdirSync(runDir);
  if (entries.length === 0) return;
  const isRun = entries.includes(resolvedConfigName) || entries.includes('checkpoints');
  if (!force) {
    throw new OptionError(
      'run.dir',
      `${runDir} is not empty${isRun ? ' (it holds a masksub run)' : ''}: continue it with --resume ${runDir}, replace it with --force, or choose another --run-dir`,
    );
  }
  if (!isRun) throw new OptionError('run.dir', `${runDir} is not empty and is not a masksub run folder: --force only replaces a run; choose another --run-dir`);
  for (const name of RUN_OUTPUTS) rmSync(join(runDir, name), { recursive: true, force: true });
}

export interface ConfigChange {
  key: string;
  from: unknown;
  to: unknown;
}

/** Leaf-by-leaf differences between two config objects, as dotted keys. */
export function configChanges(from: unknown, to: unknown, prefix = ''): ConfigChange[] {
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (isObject(from) && isObject(to)) {
    const keys = [...new Set([...Object.keys(from), ...Object.keys(to)])].sort();
    return keys.flatMap((k) => configChanges(from[k], to[k], prefix ? `${prefix}.${k}` : k));
  }
  return JSON.stringify(from) === JSON.stringify(to) ? [] : [{ key: prefix || '(root)', from, to }];
}

const show = (v: unknown) => (v === undefined ? '(unset)' : JSON.stringify(v));

/**
 * Split changes into the safe ones (returned, to be applied and announced) and the rest, which
 * are refused at once, all listed. `what` says where the changes come from.
 */
export function checkResumeChanges(changes: ConfigChange[], what: string): ConfigChange[] {
  const unsafe = changes.filter((c) => !SAFE_ON_RESUME.includes(c.key));
  if (unsafe.length) {
    throw new OptionError(
      'resume',
      `${what} would change the recipe of the run being resumed: ${unsafe.map((c) => `${c.key} ${show(c.from)} -> ${show(c.to)}`).join(', ')}. ` +
        `A resumed run continues its stored recipe; start a new run (another --run-dir) to change it. Only ${SAFE_ON_RESUME.join(', ')} may change on resume`,
    );
  }
  return changes;
}

export function describeChanges(changes: ConfigChange[]): string {
  return changes.map((c) => `${c.key} ${show(c.from)} -> ${show(c.to)}`).join(', ');
}
