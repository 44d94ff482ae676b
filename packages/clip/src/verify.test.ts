/**
 * `masksub verify` on the CLIP fixture: core's verify replays the fixture's kept patch indices
 * with the contrastive loss. Logits and both loss halves pass core's default tolerances; the
 * gradient row passes everywhere except on the analytically zero k_proj bias gradients, where
 * core's relative check (floored at 1e-5) compares PyTorch's float noise (up to 2e-8) with ours.
 */
import { expect, it } from 'vitest';
import { DEFAULT_TOLERANCES, loadPretrained, tf, verifyModel } from '@masksub/core';
import { describeShared, fixturePath } from '../../core/src/testing/shared.js';
import { masksub, quiet } from '../../core/src/testing/parity.js';
import './index.js';

describeShared('fixtures/hf-tiny/clip', 'masksub verify on the CLIP fixture', () => {
  it('verifyModel: logits, loss halves and all 78 gradients within the default tolerances', async () => {
    await tf.setBackend('cpu');
    const { model } = await loadPretrained(fixturePath('clip'), quiet);
    const report = verifyModel(model, fixturePath('clip', 'reference.safetensors'));
    const row = (q: RegExp) => report.rows.find((r) => q.test(r.quantity));
    for (const q of [/^main logits$/, /^sub logits$/, /^loss main$/, /^loss sub$/]) {
      expect(row(q)?.recipe, String(q)).toBe('contrastive');
      expect(row(q)?.ok, String(q)).toBe(true);
    }
    const grads = row(/^gradients \(78/)!;
    expect(grads?.ok).toBe(true);
    expect(report.ok).toBe(true);
    // Without the absolute term the analytically zero text k_proj biases (noise on both sides)
    // are what fails: the term is needed, and only for them.
    const noAbs = verifyModel(model, fixturePath('clip', 'reference.safetensors'), { ...DEFAULT_TOLERANCES, gradAbsolute: 1e-8 });
    const strict = noAbs.rows.find((r) => /^gradients \(78/.test(r.quantity))!;
    if (!strict.ok) expect(strict.quantity).toMatch(/k_proj\.bias/);
    model.dispose();
  });

  it('the CLI verifies the safetensors and the ONNX weights', () => {
    for (const weights of [[], ['--weights', fixturePath('clip', 'model.onnx')]]) {
      const r = masksub('verify', '--model', fixturePath('clip'), '--reference', fixturePath('clip', 'reference.safetensors'), ...weights);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/ok\s+contrastive\s+main logits/);
      expect(r.stdout).toMatch(/ok\s+contrastive\s+sub logits/);
      expect(r.stdout).toMatch(/ok\s+contrastive\s+loss sub/);
      expect(r.stdout).toMatch(/ok\s+contrastive\s+gradients \(78/);
      expect(r.stdout).toMatch(/all within tolerance/);
    }
  });
});
