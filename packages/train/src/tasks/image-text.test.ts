/**
 * The contrastive task's pieces on hand-computed cases: retrieval recalls (both directions, ties,
 * several images per caption) and the caption groups a batch's targets carry (exact caption text
 * for `.txt` captions, the class for template captions).
 */
import { describe, expect, it } from 'vitest';
import { Rng } from '@masksub/core';
import type { ImageBatch } from '../data/types.js';
import { batchCaptions, retrievalRecalls } from './image-text.js';

function batch(labels: number[], captions?: string[]): ImageBatch {
  return { images: new Float32Array(0), shape: [labels.length, 3, 1, 1], labels: Int32Array.from(labels), keys: labels.map((_, i) => `k${i}`), captions };
}

describe('retrievalRecalls', () => {
  it('image -> text and text -> image R@1 / R@5 over distinct captions', () => {
    // 4 images, 3 captions; image 0 and 1 are captioned by caption 0, image 2 by 1, image 3 by 2.
    const sim = [
      0.9, 0.1, 0.0, // image 0: own caption first
      0.2, 0.5, 0.1, // image 1: caption 1 above its own (rank 2)
      0.3, 0.8, 0.3, // image 2: own first
      0.4, 0.4, 0.4, // image 3: ties with its own count in its favour (rank 1)
    ];
    const r = retrievalRecalls(sim, 4, 3, Int32Array.from([0, 0, 1, 2]));
    expect(r.i2t_r1).toBe(75); // images 0, 2, 3
    expect(r.i2t_r5).toBe(100);
    // caption 0: its best image (0, 0.9) is top; caption 1: image 2 (0.8) top; caption 2: image 3 (0.4) above 0.3.
    expect(r.t2i_r1).toBe(100);
    const worse = retrievalRecalls([0.1, 0.9, 0.2, 0.8], 2, 2, Int32Array.from([0, 1]));
    // image 0 prefers caption 1, image 1 its own; caption 0's image (0.1) is below image 1 (0.2),
    // caption 1's image (0.8) below image 0 (0.9): no text finds its image first.
    expect(worse).toEqual({ i2t_r1: 50, i2t_r5: 100, t2i_r1: 0, t2i_r5: 100 });
  });

  it('R@5 misses when five or more captions score strictly higher', () => {
    const u = 7;
    const sim = Array.from({ length: u }, (_, j) => (j === 6 ? 0 : 1 - j / 10));
    expect(retrievalRecalls(sim, 1, u, Int32Array.from([6])).i2t_r5).toBe(0);
    expect(retrievalRecalls(sim, 1, u, Int32Array.from([4])).i2t_r5).toBe(100);
    expect(retrievalRecalls(sim, 1, u, Int32Array.from([5])).i2t_r5).toBe(0);
  });
});

describe('batchCaptions: the caption groups of the contrastive targets', () => {
  it('.txt captions group by exact text', () => {
    const r = batchCaptions(batch([-1, -1, -1, -1], ['a dog', 'a cat', 'a dog', 'a dog.']), { kind: 'text' }, 'shards');
    expect(r.captions).toEqual(['a dog', 'a cat', 'a dog', 'a dog.']);
    expect([...r.groups]).toEqual([0, 1, 0, 2]);
  });

  it('template captions group by class, whatever template each sample drew', () => {
    const source = { kind: 'templates' as const, classNames: ['cat', 'dog'], classFile: 'classes.txt', templates: ['a photo of a {}.', 'a blurry photo of the {}.'] };
    const r = batchCaptions(batch([1, 0, 1, 1, 0, 1]), source, 'cifar', new Rng(3));
    expect([...r.groups]).toEqual([1, 0, 1, 1, 0, 1]);
    r.captions.forEach((c, i) => expect(c).toMatch(i === 1 || i === 4 ? /(a photo of a|a blurry photo of the) cat\.$/ : / dog\.$/));
    // Evaluation (no rng): the first template.
    expect(batchCaptions(batch([0, 1]), source, 'cifar').captions).toEqual(['a photo of a cat.', 'a photo of a dog.']);
    // A label the class file does not name: the file and the sample's key.
    expect(() => batchCaptions(batch([0, 2]), source, 'cifar')).toThrow(/classes\.txt.*sample 'k1' has label 2/);
  });

  it('a .txt source whose batch has no captions is an error naming the data', () => {
    expect(() => batchCaptions(batch([0, 1]), { kind: 'text' }, 'my shards')).toThrow(/my shards: the batch carries no captions/);
  });
});
