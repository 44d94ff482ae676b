/**
 * Runs a bench case in a child process of its own and returns the JSON line it prints last.
 * Why a process per case: the wasm heap only grows, so in one long process every later case's
 * RSS reading would be the high-water mark of the largest case before it (bench/arch/big.ts,
 * bench/arch/arch-case.ts). The child uses the same node and loader as this process (tsx with
 * --conditions=source rides in execArgv); its stderr (progress lines) goes straight to ours, as
 * it is written: a case runs for minutes, and buffered lines would only appear at its end.
 */
import { spawnSync } from 'node:child_process';

export type ChildResult<T> = { ok: true; value: T } | { ok: false; why: string };

export function runChildJson<T>(script: string, args: string[], timeoutMs: number): ChildResult<T> {
  const child = spawnSync(process.execPath, [...process.execArgv, script, ...args], {
    encoding: 'utf8',
    timeout: timeoutMs,
    maxBuffer: 1 << 24,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const last = child.stdout?.trim().split('\n').pop() ?? '';
  if (child.status === 0 && last.startsWith('{')) return { ok: true, value: JSON.parse(last) as T };
  const why = child.error
    ? `${child.error.message}${child.signal ? ` (${child.signal})` : ''}`
    : `exit ${child.status ?? child.signal} (its error is in the lines above)`;
  return { ok: false, why };
}
