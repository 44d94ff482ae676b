/**
 * A longer run of every parser fuzz property (the suite runs them with fixed seeds and a few
 * hundred runs): safetensors, ONNX protobuf and external data, .pth (core), tar/tar.gz +
 * WebDataset, IDX, run config, checkpoint manifest (train). Not a test: run it by hand or in a
 * nightly job.
 *
 *   pnpm fuzz:soak [--seed N] [--seeds K] [--runs R] [--only <text>]
 *
 * --seed: first seed (default: from the clock, printed so a failure can be replayed);
 * --seeds: how many consecutive seeds per property (default 1); --runs: fast-check runs per seed
 * (default 10000); --only: properties whose name contains the text. Prints one line per
 * property (runs, failures, seconds, RSS growth) and every counterexample; exit code 1 when a
 * property failed or grew RSS past the fuzz budget.
 */
import { parseArgs } from 'node:util';
import { CORE_FUZZ_PROPERTIES, FUZZ_RSS_BUDGET, type FuzzProperty } from '../packages/core/src/testing/fuzz-properties.js';
import { DATA_FUZZ_PROPERTIES } from '../packages/train/src/testing/fuzz-properties.js';

function positiveInt(flag: string, value: string | undefined, dflt: number): number {
  if (value === undefined) return dflt;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) {
    console.error(`--${flag} must be a non-negative integer, got '${value}'`);
    process.exit(2);
  }
  return n;
}

const { values } = parseArgs({ options: { seed: { type: 'string' }, seeds: { type: 'string' }, runs: { type: 'string' }, only: { type: 'string' } } });
const firstSeed = positiveInt('seed', values.seed, Date.now() % 2 ** 31);
const seeds = Math.max(1, positiveInt('seeds', values.seeds, 1));
const numRuns = Math.max(1, positiveInt('runs', values.runs, 10_000));
const properties: FuzzProperty[] = [...CORE_FUZZ_PROPERTIES, ...DATA_FUZZ_PROPERTIES].filter((p) => !values.only || p.name.includes(values.only));
if (properties.length === 0) {
  console.error(`--only '${values.only}' matches no property`);
  process.exit(2);
}

console.log(`fuzz soak: ${properties.length} properties x ${seeds} seed(s) from ${firstSeed} x ${numRuns} runs`);
let failed = 0;
const width = Math.max(...properties.map((p) => p.name.length));
for (const p of properties) {
  const rss = process.memoryUsage().rss;
  const start = Date.now();
  const failures: string[] = [];
  for (let s = 0; s < seeds; s++) {
    const seed = firstSeed + s;
    try {
      await p.run({ seed, numRuns });
    } catch (e) {
      failures.push(`  seed ${seed}: ${(e as Error).message.split('\n').slice(0, 6).join('\n    ')}`);
    }
  }
  const grew = process.memoryUsage().rss - rss;
  const overBudget = grew > FUZZ_RSS_BUDGET;
  if (failures.length || overBudget) failed++;
  const status = failures.length ? 'FAIL' : overBudget ? 'RSS ' : 'ok  ';
  console.log(`${status} ${p.name.padEnd(width)}  ${seeds * numRuns} runs  ${failures.length} failed  ${((Date.now() - start) / 1000).toFixed(1)} s  rss +${(grew / 2 ** 20).toFixed(0)} MiB`);
  for (const f of failures) console.log(f);
}
console.log(failed ? `${failed} of ${properties.length} properties failed` : `all ${properties.length} properties held`);
process.exitCode = failed ? 1 : 0;
