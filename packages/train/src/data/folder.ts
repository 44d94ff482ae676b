/**
 * An image folder as torchvision's `ImageFolder`: `root/<class>/<file>.jpg|jpeg|png|webp`, classes
 * are the sub-directory names sorted (so indices are stable), files sorted within each class.
 */
import { readdir, readFile } from 'node:fs/promises';
import { statSync, type Dirent } from 'node:fs';
import { extname, join } from 'node:path';
import { FileFormatError, OptionError, folderFile, folderSubfolder } from '@masksub/core/base';
import { decodeSample } from './decode.js';
import type { ImageDataset, ImageSample, RawSample } from './types.js';
import { IMAGE_EXTENSIONS } from './webdataset.js';

/** A class folder: a sub-directory, or a symlink to one inside the root (one leading out is refused). */
function isClassFolder(root: string, e: Dirent): boolean {
  if (e.isDirectory()) return true;
  if (!e.isSymbolicLink() || statSync(join(root, e.name), { throwIfNoEntry: false })?.isDirectory() !== true) return false;
  return folderSubfolder(root, e.name) !== undefined;
}

function isImageFile(name: string): boolean {
  return (IMAGE_EXTENSIONS as readonly string[]).includes(extname(name).slice(1).toLowerCase());
}

/** Byte order (not locale) sorting, like Python's `sorted`. */
function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export class ImageFolderDataset implements ImageDataset {
  readonly kind = 'map' as const;

  private constructor(
    readonly root: string,
    readonly classes: string[],
    private readonly files: { path: string; label: number }[],
  ) {}

  get size(): number {
    return this.files.length;
  }

  get numClasses(): number {
    return this.classes.length;
  }

  get description(): string {
    return `folder ${this.root}`;
  }

  static async open(root: string): Promise<ImageFolderDataset> {
    const entries = await readdir(root, { withFileTypes: true }).catch((e: NodeJS.ErrnoException) => {
      throw new FileFormatError(root, `cannot list image folder: ${e.code ?? e.message}`);
    });
    // The folder is untrusted: a class folder or image that is a symlink must stay inside it.
    const classes = entries.filter((e) => isClassFolder(root, e)).map((e) => e.name).sort(byCodeUnits);
    if (classes.length === 0) throw new FileFormatError(root, 'no class sub-directories (expected root/<class>/*.jpg)');
    const files: { path: string; label: number }[] = [];
    for (const [label, cls] of classes.entries()) {
      const listed = (await readdir(join(root, cls), { withFileTypes: true })).filter((e) => isImageFile(e.name));
      for (const e of listed) if (e.isSymbolicLink()) folderFile(root, join(cls, e.name));
      const names = listed.map((e) => e.name).sort(byCodeUnits);
      for (const name of names) files.push({ path: join(root, cls, name), label });
    }
    if (files.length === 0) throw new FileFormatError(root, `no images (.${IMAGE_EXTENSIONS.join('/.')}) in the class folders`);
    return new ImageFolderDataset(root, classes, files);
  }

  async raw(i: number): Promise<RawSample> {
    const f = this.files[i];
    if (!f) throw new OptionError('index', `${i} is outside 0..${this.size - 1} of ${this.description}`);
    return { kind: 'encoded', key: f.path, bytes: await readFile(f.path), label: f.label };
  }

  async get(i: number): Promise<ImageSample> {
    return decodeSample(await this.raw(i));
  }
}
