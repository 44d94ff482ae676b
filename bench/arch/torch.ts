/**
 * Runs a PyTorch reference step script under Debian's python3 (when torch imports) and returns its
 * JSON line plus the process's peak RSS above its RSS after importing torch (ru_maxrss), so
 * masksub's and PyTorch's step memory are measured the same way: growth over the pre-step process.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

const PYTHON = '/usr/bin/python3';

/** A reference step script of the shared folder (../shared/bench: ViT, ResNet-20, BERT). */
export const sharedScript = (name: string): string => resolve(import.meta.dirname, '../../../shared/bench', name);
/** A PyTorch script of this bench (bench/torch: the Swin and CLIP twins, the ViT twin, shared_pairs.py). */
export const benchScript = (name: string): string => resolve(import.meta.dirname, '../torch', name);

/** Why PyTorch is unavailable, or null when it can run (`reads`: other files the script needs). */
export function torchUnavailable(script: string, ...reads: string[]): string | null {
  for (const file of [script, ...reads]) if (!existsSync(file)) return `${file} not found`;
  if (!existsSync(PYTHON)) return `${PYTHON} not found`;
  const probe = spawnSync(PYTHON, ['-c', 'import torch'], { encoding: 'utf8' });
  return probe.status === 0 ? null : 'torch does not import (apt-get install python3-torch libopenblas0-pthread)';
}

// argv[1] is the script, the rest its arguments; the script's JSON line, then ours (peak RSS and
// the parameter count of the script's model, read from its globals).
const WRAPPER = `
import json, os, resource, runpy, sys
import torch
page = os.sysconf('SC_PAGE_SIZE')
base = int(open('/proc/self/statm').read().split()[1]) * page
sys.argv = sys.argv[1:]
g = runpy.run_path(sys.argv[0], run_name='__main__')
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
# The scripts name their model m; not every one prints its parameter count.
m = g.get('m')
params = sum(p.numel() for p in m.parameters()) if isinstance(m, torch.nn.Module) else None
print(json.dumps({'peak_rss_mib': (peak - base) / 2**20, 'params': params}))
`;

export interface TorchRun {
  result: Record<string, unknown>;
  peakRssMiB: number;
}

export function runTorch(script: string, args: string[]): TorchRun {
  const out = execFileSync(PYTHON, ['-c', WRAPPER, script, ...args, '--threads', '2'], {
    encoding: 'utf8',
    env: { ...process.env, OMP_WAIT_POLICY: 'PASSIVE', OPENBLAS_NUM_THREADS: '2' },
  });
  const lines = out.trim().split('\n');
  const own = JSON.parse(lines.pop()!) as { peak_rss_mib: number; params: number | null };
  const result = JSON.parse(lines.pop()!) as Record<string, unknown>;
  if (result.params === undefined && own.params !== null) result.params = own.params;
  return { result, peakRssMiB: own.peak_rss_mib };
}
