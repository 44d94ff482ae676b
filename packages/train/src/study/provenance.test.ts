import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { currentProvenance } from './run.js';

const repo = mkdtempSync(join(tmpdir(), 'masksub-provenance-'));
afterAll(() => rmSync(repo, { recursive: true, force: true }));
const git = (...args: string[]) => execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', ...args], { cwd: repo, encoding: 'utf8' });

describe('currentProvenance', () => {
  it("does not count the study's own results folder as uncommitted changes, and counts everything else", () => {
    git('init', '-q');
    mkdirSync(join(repo, 'docs/results/s'), { recursive: true });
    writeFileSync(join(repo, 'code.ts'), 'a\n');
    writeFileSync(join(repo, 'docs/results/s/README.md'), 'old\n');
    git('add', '.');
    git('commit', '-qm', 'init');
    const head = git('rev-parse', 'HEAD').trim();
    expect(currentProvenance({ cwd: repo, exclude: ['docs/results/s'] })).toMatchObject({ commit: head, dirty: false });
    // A finished cell rewrites the report: still the clean commit.
    writeFileSync(join(repo, 'docs/results/s/README.md'), 'new\n');
    expect(currentProvenance({ cwd: repo, exclude: ['docs/results/s'] }).dirty).toBe(false);
    expect(currentProvenance({ cwd: repo }).dirty).toBe(true);
    // A change to the code is uncommitted, from the repository root or from a sub-folder.
    writeFileSync(join(repo, 'code.ts'), 'b\n');
    expect(currentProvenance({ cwd: repo, exclude: ['docs/results/s'] }).dirty).toBe(true);
    expect(currentProvenance({ cwd: join(repo, 'docs'), exclude: ['results/s'] }).dirty).toBe(true);
  });
});
