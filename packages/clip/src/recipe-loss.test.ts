/** withMaskSub trains CLIP on its similarity matrix without being told. */
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { tf, withMaskSub, type ForwardOptions, type ModelInputs } from '@masksub/core';
import { describeShared, fixturePath } from '../../core/src/testing/shared.js';
import { ClipModel } from './index.js';

describeShared('fixtures/hf-tiny/clip', 'CLIP recipe loss', () => {
  it('is the contrastive relaxed loss by default; an explicit loss still wins', () => {
    const model = new ClipModel(JSON.parse(readFileSync(fixturePath('clip', 'config.json'), 'utf8')));
    expect(withMaskSub(model).loss.kind).toBe('contrastive');
    expect(withMaskSub(model, { loss: 'ce' }).loss.kind).toBe('ce');
    model.dispose();
  });
});

describeShared('fixtures/hf-tiny/clip', 'CLIP text noise', () => {
  it('both passes of a step embed the texts with the same noise, and each step draws new noise', async () => {
    await tf.setBackend('cpu');
    const config = JSON.parse(readFileSync(fixturePath('clip', 'config.json'), 'utf8'));
    const model = new ClipModel({ ...config, text_config: { ...config.text_config, attention_dropout: 0.5 } });
    const ids = tf.tensor2d([[1, 5, 7, 63]], [1, 4], 'int32');
    const text = (stepSeed: number) => tf.tidy(() => model.textFeatures({ input_ids: ids }, { training: true, stepSeed }).dataSync());
    expect(text(7)).toEqual(text(7));
    expect(text(7)).not.toEqual(text(8));
    // withMaskSub hands every text embedding of one step the same stepSeed, and a new one next
    // step: both passes' forward() calls; with SharedBranch the text tower runs once per step
    // (one forward, one backward with both passes' gradients).
    const size = Number(config.vision_config.image_size);
    const pixels = tf.randomNormal([2, 3, size, size], 0, 1, 'float32', 3);
    const twoIds = tf.tensor2d([[1, 5, 63, 0], [1, 9, 11, 63]], [2, 4], 'int32');
    const textFeatures = model.textFeatures.bind(model);
    for (const shareBranch of [true, false]) {
      const seen: (number | undefined)[] = [];
      model.textFeatures = (inputs: ModelInputs, options?: ForwardOptions) => {
        seen.push(options?.stepSeed);
        return textFeatures(inputs, options);
      };
      const trainer = withMaskSub(model, { seed: 5, shareBranch });
      for (let step = 0; step < 2; step++) {
        const r = trainer.computeGradients({ inputs: { pixel_values: pixels, input_ids: twoIds }, targets: { labels: tf.tensor1d([0, 1], 'int32') } }, step);
        tf.dispose([r.mainLogits, r.subLogits!, ...r.grads.values()]);
      }
      if (shareBranch) {
        expect(seen, 'shareBranch true: one text forward per step').toHaveLength(2);
        expect(seen[0]).not.toBe(seen[1]);
      } else {
        expect(seen, 'shareBranch false: one text forward per pass').toHaveLength(4);
        expect(seen[0]).toBe(seen[1]);
        expect(seen[2]).toBe(seen[3]);
        expect(seen[0]).not.toBe(seen[2]);
      }
    }
    tf.dispose([ids, pixels, twoIds]);
    model.dispose();
  });
});
