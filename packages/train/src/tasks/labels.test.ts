import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseRunConfig } from '../config.js';
import { ImageFolderDataset } from '../data/folder.js';
import type { AnyImageDataset } from '../data/types.js';
import { imageLabelNames, labelConfig } from './labels.js';

const tmp = mkdtempSync(join(tmpdir(), 'masksub-labels-'));
const config = (data: Record<string, unknown>) => parseRunConfig({ model: 'm', data, train: { steps: 1 } });
/** A stream dataset stand-in: imageLabelNames only asks whether it is an image folder. */
const shards = { kind: 'stream', numClasses: 3, description: 'shards' } as unknown as AnyImageDataset;

describe('labelConfig', () => {
  it("is HF's id2label / label2id for names that cover the head, nothing otherwise", () => {
    expect(labelConfig(['cat', 'dog'], 2)).toEqual({ id2label: { '0': 'cat', '1': 'dog' }, label2id: { cat: 0, dog: 1 } });
    expect(labelConfig(['cat', 'dog'], 3)).toEqual({});
    expect(labelConfig(undefined, 2)).toEqual({});
  });
});

describe('imageLabelNames', () => {
  it('reads classes.txt beside the shards, and ignores one that names another count of classes', () => {
    const dir = join(tmp, 'shards');
    mkdirSync(dir);
    writeFileSync(join(dir, 'classes.txt'), 'airplane\nbird\ncat\n');
    const c = config({ train: `webdataset:${join(dir, 'train-000000.tar')}` });
    expect(imageLabelNames(c, shards, 3)).toEqual(['airplane', 'bird', 'cat']);
    expect(imageLabelNames(c, shards, 10)).toBeUndefined();
  });

  it('prefers data.classes, takes an image folder its sub-directories, and has none for unnamed data', async () => {
    const names = join(tmp, 'names.txt');
    writeFileSync(names, 'no\nyes\n');
    expect(imageLabelNames(config({ train: 'mnist:train', classes: names }), shards, 2)).toEqual(['no', 'yes']);
    const root = join(tmp, 'folder');
    for (const cls of ['b-rose', 'a-tulip']) {
      mkdirSync(join(root, cls), { recursive: true });
      writeFileSync(join(root, cls, 'x.png'), '');
    }
    const folder = await ImageFolderDataset.open(root);
    expect(imageLabelNames(config({ train: `folder:${root}` }), folder, 2)).toEqual(['a-tulip', 'b-rose']);
    expect(imageLabelNames(config({ train: 'mnist:train' }), shards, 10)).toBeUndefined();
  });
});
