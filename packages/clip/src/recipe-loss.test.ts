/** withMaskSub trains CLIP on its similarity matrix without being told. */
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { withMaskSub } from '@masksub/core';
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
