/**
 * `masksub verify` on the BERT fixture: core's verify replays the fixture's [MASK]ed input_ids
 * (input.masked_input_ids) with the CE recipe; logits, loss halves and all 41 gradients pass the
 * default tolerances, from safetensors and from ONNX weights, programmatically and via the CLI.
 */
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { loadPretrained, tf, verifyModel } from '@masksub/core';
import { describeShared, fixturePath } from '../../core/src/testing/shared.js';
import './index.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const cli = join(repo, 'packages/core/src/cli/main.ts');

function masksub(...args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', '--conditions=source', cli, ...args], { cwd: repo, encoding: 'utf8', timeout: 120_000 });
}

describeShared('fixtures/hf-tiny/bert', 'masksub verify on the BERT fixture', () => {
  it('verifyModel: every row within the default tolerances', async () => {
    await tf.setBackend('cpu');
    const { model } = await loadPretrained(fixturePath('bert'), { log: () => {} });
    const report = verifyModel(model, fixturePath('bert', 'reference.safetensors'));
    expect(report.rows.every((r) => r.recipe === 'ce')).toBe(true);
    expect(report.rows.length).toBe(5);
    expect(report.ok, JSON.stringify(report.rows)).toBe(true);
    model.dispose();
  });

  it('the CLI verifies the safetensors and the ONNX weights', () => {
    for (const weights of [[], ['--weights', fixturePath('bert', 'model.onnx')]]) {
      const r = masksub('verify', '--model', fixturePath('bert'), '--reference', fixturePath('bert', 'reference.safetensors'), ...weights);
      expect(r.status, r.stderr).toBe(0);
      for (const q of ['main logits', 'sub logits', 'loss main', 'loss sub', 'gradients \\(41']) expect(r.stdout).toMatch(new RegExp(`ok\\s+ce\\s+${q}`));
      expect(r.stdout).toMatch(/all within tolerance/);
    }
  });
});
