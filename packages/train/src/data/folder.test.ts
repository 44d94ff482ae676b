import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { ImageFolderDataset } from './folder.js';
import { openDataSpec } from './spec.js';

const root = mkdtempSync(join(tmpdir(), 'masksub-folder-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('image folder', () => {
  it('sorts classes and files, decodes PNG (RGB, and gray as equal RGB) and ignores other files', async () => {
    for (const cls of ['zebra', 'Ant', 'cat']) mkdirSync(join(root, cls));
    const rgb = await sharp(Buffer.alloc(3 * 2 * 3, 200), { raw: { width: 3, height: 2, channels: 3 } }).png().toBuffer();
    const grayPng = await sharp(Buffer.alloc(4 * 4, 50), { raw: { width: 4, height: 4, channels: 1 } }).toColourspace('b-w').png().toBuffer();
    writeFileSync(join(root, 'cat', 'b.png'), rgb);
    writeFileSync(join(root, 'cat', 'a.PNG'), grayPng);
    writeFileSync(join(root, 'cat', 'notes.txt'), 'x');
    writeFileSync(join(root, 'zebra', 'z.png'), rgb);
    writeFileSync(join(root, 'Ant', 'q.png'), rgb);
    const ds = await ImageFolderDataset.open(root);
    expect(ds.classes).toEqual(['Ant', 'cat', 'zebra']); // code-unit order, as Python's sorted()
    expect(ds.size).toBe(4);
    const samples = await Promise.all([0, 1, 2, 3].map((i) => ds.get(i)));
    expect(samples.map((s) => s.label)).toEqual([0, 1, 1, 2]);
    // sharp outputs gray files as sRGB: three equal channels.
    expect(samples[1]).toMatchObject({ height: 4, width: 4, channels: 3 });
    expect(Array.from(samples[1].pixels.subarray(0, 3))).toEqual([50, 50, 50]);
    expect(samples[2]).toMatchObject({ height: 2, width: 3, channels: 3 });
    expect((await openDataSpec(`folder:${root}`)).size).toBe(4);
  });

  it('rejects a folder without class directories, naming it', async () => {
    const empty = join(root, 'zebra');
    await expect(ImageFolderDataset.open(empty)).rejects.toThrow(/zebra: no class sub-directories/);
  });
});

describe('image folder symlinks', () => {
  it('reads class folders and images linked inside the root, and refuses those that lead out of it', async () => {
    const base = mkdtempSync(join(tmpdir(), 'masksub-folder-links-'));
    try {
      const png = await sharp(Buffer.alloc(2 * 2 * 3, 90), { raw: { width: 2, height: 2, channels: 3 } }).png().toBuffer();
      const data = join(base, 'data');
      for (const dir of [join(data, 'cat'), join(data, 'store'), join(base, 'outside')]) mkdirSync(dir, { recursive: true });
      writeFileSync(join(data, 'store', 'kept.png'), png);
      writeFileSync(join(base, 'outside', 'private.png'), png);
      // Inside: a class folder that is a link to another folder of the root, and a linked image.
      symlinkSync(join(data, 'store'), join(data, 'dog'));
      symlinkSync(join(data, 'store', 'kept.png'), join(data, 'cat', 'linked.png'));
      const ds = await ImageFolderDataset.open(data);
      expect(ds.classes).toEqual(['cat', 'dog', 'store']);
      expect(ds.size).toBe(3);
      expect((await ds.get(0)).label).toBe(0);
      // Out: an image linked to a file elsewhere, then a class folder linked to a folder elsewhere.
      symlinkSync(join(base, 'outside', 'private.png'), join(data, 'cat', 'private.png'));
      await expect(ImageFolderDataset.open(data)).rejects.toThrow(/cat\/private\.png: leads outside the folder .*private\.png; refused/);
      rmSync(join(data, 'cat', 'private.png'));
      symlinkSync(join(base, 'outside'), join(data, 'bird'));
      await expect(ImageFolderDataset.open(data)).rejects.toThrow(/data\/bird: leads outside the folder/);
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });
});
