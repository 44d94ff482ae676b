#!/usr/bin/env node
/**
 * Builds masksub's optional native GEMM addon (build/Release/masksub_native.node) with node-gyp.
 *
 * Runs from `pnpm install` and must never fail it: without a compiler, on another CPU
 * architecture, or offline without Node headers, masksub simply keeps tfjs' XNNPACK matmuls.
 * Prints exactly one line saying whether it built; node-gyp's output goes to build.log beside
 * this file. MASKSUB_NATIVE=0 skips the build.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const logPath = join(here, 'build.log');
const say = (msg) => console.log(`masksub native gemm: ${msg}`);

/** node-gyp's CLI: a resolvable package first, then the copy bundled with npm. */
function findNodeGyp() {
  try {
    return createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js');
  } catch {
    // not a dependency here; fall through to npm's bundled copy
  }
  const prefix = dirname(dirname(process.execPath));
  const candidates = [
    join(prefix, 'lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js'),
    '/usr/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js',
    '/usr/local/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js',
  ];
  return candidates.find((p) => existsSync(p)) ?? null;
}

/**
 * Node's own headers when they are installed beside the binary (distribution packages put them
 * in <prefix>/include/node): node-gyp otherwise downloads them, which fails offline.
 */
function findNodeDir() {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  const prefix = dirname(dirname(process.execPath));
  return existsSync(join(prefix, 'include/node/node_api.h')) ? prefix : null;
}

function main() {
  if (process.env.MASKSUB_NATIVE === '0') return say('skipped (MASKSUB_NATIVE=0)');
  if (process.arch !== 'x64') return say(`skipped (needs x86-64 with AVX2/FMA, this is ${process.arch})`);
  const gyp = findNodeGyp();
  if (gyp === null) return say('not built (node-gyp not found); using XNNPACK matmuls');
  const args = [gyp, 'rebuild'];
  const nodedir = findNodeDir();
  if (nodedir !== null) args.push(`--nodedir=${nodedir}`);
  const run = spawnSync(process.execPath, args, { cwd: here, encoding: 'utf8', timeout: 300_000 });
  const log = `${run.stdout ?? ''}${run.stderr ?? ''}${run.error ? `\n${run.error.message}` : ''}`;
  try {
    mkdirSync(here, { recursive: true });
    writeFileSync(logPath, log);
  } catch {
    // the log is a convenience; a read-only tree must not fail the install
  }
  const built = run.status === 0 && existsSync(join(here, 'build/Release/masksub_native.node'));
  if (built) return say('built (build/Release/masksub_native.node)');
  const reason = log.split('\n').find((l) => /error|not found|ERR!/.test(l))?.trim() ?? `exit ${run.status}`;
  say(`not built (${reason.slice(0, 160)}; see ${logPath}); using XNNPACK matmuls`);
}

try {
  main();
} catch (e) {
  say(`not built (${e instanceof Error ? e.message : String(e)}); using XNNPACK matmuls`);
}
process.exitCode = 0;
