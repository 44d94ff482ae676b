/**
 * `masksub verify` on the BERT fixture: core's verify replays the fixture's [MASK]ed input_ids
 * (input.masked_input_ids) with the CE recipe; logits, loss halves and all 41 gradients pass the
 * default tolerances, from safetensors and from ONNX weights, programmatically and via the CLI.
 */
import { expect, it } from 'vitest';
import { loadPretrained, tf, verifyModel } from '@masksub/core';
import { describeShared, fixturePath } from '../../core/src/testing/shared.js';
import { masksub, quiet } from '../../core/src/testing/parity.js';
import './index.js';

describeShared('fixtures/hf-tiny/bert', 'masksub verify on the BERT fixture', () => {
  it('verifyModel: every row within the default tolerances', async () => {
    await tf.setBackend('cpu');
    const { model } = await loadPretrained(fixturePath('bert'), quiet);
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
