/**
 * run.model_format: `source` writes a fine-tune of a `.pth` checkpoint back as that file (the
 * official DeiT-III `{'model': state_dict}` under its own names), with the same weights the
 * default safetensors folder gets from the same run. (A head re-created for other labels keeps its
 * place in the file: vit/src/timm-layout.test.ts.)
 */
import '@masksub/vit';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { loadPretrained, readPth, tf } from '@masksub/core';
import { describeShared, sharedPath } from '../../core/src/testing/shared.js';
import { parseRunConfig } from './config.js';
import { trainRun } from './trainer.js';

const tmp = mkdtempSync(join(tmpdir(), 'masksub-model-format-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const quiet = { log: () => undefined, stream: { write: () => true } as unknown as NodeJS.WritableStream };

describeShared('fixtures/zoo-layouts/deit3', 'run.model_format', () => {
  it("'source' writes the DeiT-III checkpoint.pth back with the fine-tuned weights, the default writes safetensors", async () => {
    const run = (format: 'safetensors' | 'source') =>
      trainRun(
        parseRunConfig({
          model: sharedPath('fixtures/zoo-layouts/deit3'),
          weights: 'checkpoint.pth',
          data: { train: `webdataset:${sharedPath('data/cifar10/train-000000.tar.gz')}`, train_limit: 16 },
          train: { batch_size: 8, steps: 2, seed: 0 },
          run: { dir: join(tmp, format), quiet: true, backend: 'cpu', model_format: format },
        }),
        quiet,
      );
    const plain = await run('safetensors');
    expect(existsSync(join(plain.modelDir, 'model.safetensors'))).toBe(true);
    const source = await run('source');
    expect(existsSync(join(source.modelDir, 'model.safetensors'))).toBe(false);
    const pth = readPth(join(source.modelDir, 'checkpoint.pth'));
    expect(pth.path).toEqual(['model']);
    expect(pth.tensors.get('head.weight')?.shape).toEqual([10, 32]);
    expect(pth.tensors.has('blocks.0.gamma_1')).toBe(true);
    // The fine-tuned weights, not the file it started from.
    const original = readPth(sharedPath('fixtures/zoo-layouts/deit3/checkpoint.pth')).tensors;
    expect([...pth.tensors.keys()].sort()).toEqual([...original.keys()].sort());
    expect(Array.from(pth.tensors.get('head.weight')!.data as Float32Array)).not.toEqual(Array.from(original.get('head.weight')!.data as Float32Array));

    const a = await loadPretrained(plain.modelDir, { log: () => undefined });
    const b = await loadPretrained(source.modelDir, { log: () => undefined });
    expect(b.format).toBe('pth');
    const x = tf.randomNormal([2, 3, 32, 32], 0, 1, 'float32', 7);
    const ya = a.model.forward({ pixel_values: x });
    const yb = b.model.forward({ pixel_values: x });
    expect(ya.shape).toEqual([2, 10]);
    expect(Array.from(yb.dataSync())).toEqual(Array.from(ya.dataSync()));
    tf.dispose([x, ya, yb]);
    a.model.dispose();
    b.model.dispose();
  });
});
