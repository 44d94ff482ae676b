/**
 * A bench script's bad option, as the CLI reports one: `error: <message>` from commander, exit
 * code 2, no stack trace.
 */
import type { Command } from 'commander';

export function usageError(program: Command, message: string): never {
  return program.error(`error: ${message}`, { exitCode: 2 });
}
