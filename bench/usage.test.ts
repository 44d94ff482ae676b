import { Command, CommanderError } from 'commander';
import { describe, expect, it } from 'vitest';
import { usageError } from './usage.js';

describe('usageError', () => {
  it("reports the message as commander's own errors, with exit code 2", () => {
    let written = '';
    const program = new Command('bench').exitOverride().configureOutput({ writeErr: (s) => (written += s) });
    let thrown: unknown;
    try {
      usageError(program, "--arch: unknown architecture 'nope'");
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(CommanderError);
    expect((thrown as CommanderError).exitCode).toBe(2);
    expect(written).toBe("error: --arch: unknown architecture 'nope'\n");
  });
});
