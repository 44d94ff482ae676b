/**
 * `masksub eval --zero-shot` end to end on a tiny random CLIP folder (tokenizer files copied in)
 * and the first CIFAR-10 test images: the printed top-1 / top-5 / loss are those of the library
 * (checked against a host computation in zero-shot.test.ts); a folder without tokenizer files and
 * a model without a text tower are errors with exit code 2.
 */
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { Rng, saveModel, tf } from '@masksub/core';
import { ClipModel } from '@masksub/clip';
import { describeShared, sharedPath } from '../../../core/src/testing/shared.js';
import { masksub } from '../../../core/src/testing/parity.js';
import { runZeroShot } from './zero-shot-run.js';

const tmp = mkdtempSync(join(tmpdir(), 'masksub-zs-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describeShared('data/cifar10', 'masksub eval --zero-shot', () => {
  it('prints the library result; missing tokenizer -> exit 2 naming --tokenizer', async () => {
    await tf.setBackend('cpu');
    const model = new ClipModel(
      {
        model_type: 'clip',
        architectures: ['CLIPModel'],
        projection_dim: 16,
        text_config: { vocab_size: 49408, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 16, eos_token_id: 49407 },
        vision_config: { image_size: 32, patch_size: 8, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32 },
      },
      { rng: new Rng(2) },
    );
    const bare = join(tmp, 'bare');
    saveModel(model, bare);
    const dir = join(tmp, 'clip');
    saveModel(model, dir);
    copyFileSync(sharedPath('data/tokenizers/clip/bpe_simple_vocab_16e6.txt.gz'), join(dir, 'bpe_simple_vocab_16e6.txt.gz'));
    model.dispose();
    const data = `webdataset:${sharedPath('data/cifar10/test-000000.tar.gz')}`;
    const lib = await runZeroShot({ model: dir, data, templates: 'cifar', batchSize: 16, limit: 24, log: () => undefined });
    expect(lib.count).toBe(24);
    expect(lib.classes).toBe(10);
    expect(lib.templates).toBe(18);
    const r = masksub('eval', '--zero-shot', '--model', dir, '--data', data, '--limit', '24', '--batch-size', '16', '--templates', 'cifar', '--backend', 'cpu');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`zero-shot top-1 ${lib.metrics.top1.toFixed(2)}%  top-5 ${lib.metrics.top5.toFixed(2)}%  loss ${lib.loss.toFixed(4)}  (24 images, 10 classes, 18 templates)`);
    const missing = masksub('eval', '--zero-shot', '--model', bare, '--data', data, '--limit', '4', '--backend', 'cpu');
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/--tokenizer.*holds no tokenizer files/);
  });
});
