/**
 * Image-text data: `.txt` captions from WebDataset shards (plain and gzipped) carried into the
 * loader's batches beside their images, class names and templates, and the errors that name the
 * shard, key, file or option.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileFormatError, OptionError, Rng } from '@masksub/core';
import { describeShared, sharedPath } from '../../../core/src/testing/shared.js';
import { DataLoader } from './loader.js';
import { explicitPreprocessSpec } from './preprocess.js';
import { buildTar } from './tar-writer.js';
import {
  CaptionedWebDataset,
  TEMPLATE_SETS,
  captionSourceFor,
  defaultClassFile,
  readCaptionedShard,
  readClassNames,
  resolveTemplates,
  templateCaptions,
} from './image-text.js';

const dir = mkdtempSync(join(tmpdir(), 'masksub-image-text-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const COLOURS = ['red', 'green', 'blue', 'white', 'black', 'gray'];

/** A shard of 6 tiny PNGs whose pixel value encodes the sample, each with a `.txt` caption. */
async function captionShard(name: string, options: { skipCaptionOf?: number; gzip?: boolean; captionFirst?: boolean } = {}): Promise<string> {
  const members: { name: string; data: Buffer }[] = [];
  for (let i = 0; i < COLOURS.length; i++) {
    const key = `pair_${String(i).padStart(3, '0')}`;
    const png = await sharp(Buffer.alloc(4 * 4 * 3, i * 40), { raw: { width: 4, height: 4, channels: 3 } }).png().toBuffer();
    const txt = { name: `${key}.txt`, data: Buffer.from(`  a ${COLOURS[i]} square\n`) };
    const img = { name: `${key}.png`, data: png };
    if (options.skipCaptionOf === i) members.push(img);
    else members.push(...(options.captionFirst ? [txt, img] : [img, txt]));
  }
  const tar = buildTar(members);
  const path = join(dir, name);
  writeFileSync(path, options.gzip ? gzipSync(tar) : tar);
  return path;
}

describe('templates and class names', () => {
  it('built-in sets, lists and single templates; each needs exactly one {}', () => {
    expect(resolveTemplates(undefined)).toEqual(['a photo of a {}.']);
    expect(resolveTemplates('cifar')).toHaveLength(18);
    expect(resolveTemplates('cifar')).toEqual([...TEMPLATE_SETS.cifar]);
    expect(resolveTemplates('itap of a {}.')).toEqual(['itap of a {}.']);
    expect(resolveTemplates(['a {}.', 'the {}!'])).toEqual(['a {}.', 'the {}!']);
    expect(() => resolveTemplates('imagenet')).toThrow(OptionError);
    expect(() => resolveTemplates('imagenet')).toThrow(/data\.templates.*neither a template set \(simple, cifar\)/);
    expect(() => resolveTemplates(['a {} and a {}'], '--templates')).toThrow(/--templates.*exactly one '\{\}'/);
    expect(() => resolveTemplates([])).toThrow(/no templates/);
  });

  it('class files: one name a line; blank, repeated or miscounted names name the file (and the key)', () => {
    const good = join(dir, 'classes.txt');
    writeFileSync(good, 'cat\r\ndog\nbird\n\n');
    expect(readClassNames(good)).toEqual(['cat', 'dog', 'bird']);
    expect(() => readClassNames(good, { count: 10, key: 'num_labels' })).toThrow(FileFormatError);
    expect(() => readClassNames(good, { count: 10, key: 'num_labels' })).toThrow(new RegExp(`${good}.*3 class names, but num_labels is 10`));
    const blank = join(dir, 'blank.txt');
    writeFileSync(blank, 'cat\n\ndog\n');
    expect(() => readClassNames(blank)).toThrow(/blank.txt.*line 2 is blank/);
    const dup = join(dir, 'dup.txt');
    writeFileSync(dup, 'cat\ndog\ncat\n');
    expect(() => readClassNames(dup)).toThrow(/'cat' appears on lines 1 and 3/);
    expect(() => readClassNames(join(dir, 'absent.txt'))).toThrow(/absent.txt.*cannot read/);
  });

  it('template captions: a seeded template per sample; a label without a class name names the class file and the sample key', () => {
    const classes = { names: ['cat', 'dog'], source: 'classes.txt' };
    const templates = ['a photo of a {}.', 'a blurry photo of a {}.', 'a bad photo of the {}.'];
    const labels = Int32Array.from([0, 1, 1, 0, 1, 0, 0, 1]);
    const keys = [...labels].map((_, i) => `k${i}`);
    const a = templateCaptions(labels, keys, classes, templates, new Rng(3));
    expect(a).toEqual(templateCaptions(labels, keys, classes, templates, new Rng(3)));
    expect(a.every((c, i) => c.endsWith(`${classes.names[labels[i]]}.`))).toBe(true);
    expect(new Set(a).size).toBeGreaterThan(2); // several templates were drawn
    expect(templateCaptions(labels, keys, classes, templates)).toEqual([...labels].map((l) => `a photo of a ${classes.names[l]}.`));
    expect(() => templateCaptions([0, 2], ['k0', 'k1'], classes, templates)).toThrow(/classes.txt.*sample 'k1' has label 2, but the file names 2 classes/);
  });
});

describe('WebDataset shards with .txt captions', () => {
  let plain: string;
  let gz: string;
  beforeAll(async () => {
    plain = await captionShard('pairs-000000.tar');
    gz = await captionShard('pairs-000001.tar.gz', { gzip: true, captionFirst: true });
  });

  it('reads image + trimmed caption per key, in either member order, plain or gzipped', async () => {
    for (const shard of [plain, gz]) {
      const got: { key: string; caption: string; label: number }[] = [];
      for await (const s of readCaptionedShard(shard)) got.push({ key: s.key, caption: s.caption, label: s.label });
      expect(got.map((g) => g.caption)).toEqual(COLOURS.map((c) => `a ${c} square`));
      expect(got[2].key).toBe('pair_002');
      expect(got.every((g) => g.label === -1)).toBe(true);
    }
  });

  it('a missing caption is an error naming the shard and the key, at open time', async () => {
    const bad = await captionShard('missing.tar', { skipCaptionOf: 3 });
    await expect(CaptionedWebDataset.open([bad])).rejects.toThrow(FileFormatError);
    await expect(CaptionedWebDataset.open([bad])).rejects.toThrow(/missing.tar.*sample 'pair_003' has no caption \(pair_003.txt\)/);
  });

  it('the loader carries each caption beside its image, shuffled or not, and reproducibly', async () => {
    const ds = await CaptionedWebDataset.open([plain, gz], { shuffleBuffer: 4 });
    expect(ds.size).toBe(12);
    const preprocess = explicitPreprocessSpec({ size: 4, mean: [0, 0, 0], std: [1, 1, 1] });
    for (const shuffle of [false, true]) {
      const loader = new DataLoader(ds, { batchSize: 5, preprocess, shuffle, seed: 7 });
      const seen: string[] = [];
      for await (const b of loader.epochBatches()) {
        expect(b.captions).toHaveLength(b.labels.length);
        for (let i = 0; i < b.labels.length; i++) {
          // The image's pixel value (i * 40 / 255 after rescaling) tells which caption it owns.
          const n = Math.round((b.images[i * 3 * 16] * 255) / 40);
          expect(b.captions![i]).toBe(`a ${COLOURS[n]} square`);
          expect(b.keys[i]).toBe(`pair_${String(n).padStart(3, '0')}`);
        }
        seen.push(...b.captions!);
      }
      expect(seen).toHaveLength(12);
      if (shuffle) {
        const again: string[] = [];
        for await (const b of new DataLoader(ds, { batchSize: 5, preprocess, shuffle, seed: 7 }).epochBatches()) again.push(...b.captions!);
        expect(again).toEqual(seen);
        expect(seen).not.toEqual([...COLOURS, ...COLOURS].map((c) => `a ${c} square`));
      }
    }
  });

  it('caption source: .txt shards -> text; templates with them are an error; no captions and no class file -> error', async () => {
    expect(await captionSourceFor(`webdataset:${plain}`)).toEqual({ kind: 'text' });
    await expect(captionSourceFor(`webdataset:${plain}`, { templates: 'cifar' })).rejects.toThrow(/data\.templates.*carries .txt captions/);
    const clsOnly = join(dir, 'cls-only', 'x.tar');
    mkdirSync(join(dir, 'cls-only'));
    writeFileSync(clsOnly, buildTar([{ name: 'a.png', data: Buffer.from('x') }, { name: 'a.cls', data: Buffer.from('0') }]));
    await expect(captionSourceFor(`webdataset:${clsOnly}`)).rejects.toThrow(/data\.classes.*has no captions/);
    writeFileSync(join(dir, 'cls-only', 'classes.txt'), 'cat\ndog\n');
    const src = await captionSourceFor(`webdataset:${clsOnly}`, { templates: 'cifar' });
    expect(src).toMatchObject({ kind: 'templates', classNames: ['cat', 'dog'], classFile: join(dir, 'cls-only', 'classes.txt') });
    await expect(captionSourceFor(`webdataset:${clsOnly}`, { expectedClasses: { count: 3, key: 'num_labels' } })).rejects.toThrow(/classes.txt.*2 class names, but num_labels is 3/);
  });
});

describeShared('data/cifar10', 'CIFAR-10 as image-text data (classes.txt + templates)', () => {
  it('finds classes.txt beside the shards and captions by class name', async () => {
    const spec = `webdataset:${sharedPath('data/cifar10/test-000000.tar.gz')}`;
    expect(defaultClassFile(spec)).toBe(sharedPath('data/cifar10/classes.txt'));
    const src = await captionSourceFor(spec, { templates: 'cifar' });
    if (src.kind !== 'templates') throw new Error('expected template captions');
    expect(src.classNames).toEqual(['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']);
    expect(src.templates).toHaveLength(18);
    expect(templateCaptions([3], ['test_cat_0000'], { names: src.classNames, source: src.classFile }, src.templates)).toEqual(['a photo of a cat.']);
  });
});
