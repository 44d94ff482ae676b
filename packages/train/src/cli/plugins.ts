/**
 * Architecture packages are plugins: each registers its adapter when imported. The CLI loads
 * the known @masksub/* packages that are installed in the user's project (resolved from the
 * working directory), plus any named by --plugin or MASKSUB_PLUGINS (comma-separated).
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { MaskSubError } from '@masksub/core';

export const KNOWN_PLUGINS = ['@masksub/vit', '@masksub/resnet', '@masksub/swin', '@masksub/bert', '@masksub/clip'];

export interface PluginLoadResult {
  loaded: string[];
  missing: string[];
}

async function importFrom(name: string, fromDir: string): Promise<boolean> {
  const require = createRequire(join(fromDir, 'noop.js'));
  let resolved: string;
  try {
    resolved = require.resolve(name);
  } catch {
    return false;
  }
  await import(pathToFileURL(resolved).href);
  return true;
}

export async function loadPlugins(explicit: string[] = [], fromDir = process.cwd()): Promise<PluginLoadResult> {
  const fromEnv = (process.env.MASKSUB_PLUGINS ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const loaded: string[] = [];
  const missing: string[] = [];
  for (const name of [...explicit, ...fromEnv]) {
    if (!(await importFrom(name, fromDir))) throw new MaskSubError(`plugin '${name}' cannot be resolved from ${fromDir}; install it (npm i ${name})`);
    loaded.push(name);
  }
  for (const name of KNOWN_PLUGINS) {
    if (loaded.includes(name)) continue;
    if (await importFrom(name, fromDir)) loaded.push(name);
    else missing.push(name);
  }
  return { loaded, missing };
}
