/**
 * Files a model folder holds or points at (its config, weights, tokenizer and preprocessor files,
 * ONNX external data, safetensors index shards) must stay inside that folder: a downloaded model
 * is untrusted input, and a `location` of `../../secret.txt` or a symlink out of the folder would
 * otherwise copy an arbitrary file's bytes into the weights (and from there into a fine-tuned
 * checkpoint someone shares).
 *
 * One exception keeps the Hugging Face cache working: the files of `<repo>/snapshots/<revision>/`
 * (and of its folders, `onnx/`) are symlinks into `<repo>/blobs/`, and those count as inside.
 */
import { lstatSync, realpathSync, statSync, type Stats } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { FileFormatError } from '../errors.js';

/**
 * Resolve `location` (relative to `root`) to a real path (symlinks followed) and require a regular
 * file inside the real `root`. `referrer` is the file that named the location (it goes first in
 * errors), `what` says which entry it was (e.g. "tensor 'w': external data").
 */
export function resolveInsideFolder(root: string, location: string, referrer: string, what: string): string {
  if (location === '' || location.includes('\0')) {
    throw new FileFormatError(referrer, `${what}: location ${JSON.stringify(location)} is not a file name`);
  }
  if (isAbsolute(location)) {
    throw new FileFormatError(referrer, `${what}: location '${location}' must be relative to the model folder`);
  }
  let realRoot: string;
  try {
    realRoot = realpathSync(root);
  } catch (e) {
    throw new FileFormatError(root, `cannot resolve the model folder (${(e as Error).message})`);
  }
  const target = resolve(root, location);
  let real: string;
  try {
    real = realpathSync(target);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // Refuse an escaping path even when it does not exist, so the message is the same either way.
    if (!isWithin(realRoot, resolve(realRoot, location))) throw outside(referrer, what, location, realRoot);
    throw new FileFormatError(target, `${what}: cannot open file (${code ?? (e as Error).message})`);
  }
  if (!insideFolder(realRoot, real)) throw outside(referrer, what, location, realRoot);
  const st = statSync(real);
  if (!st.isFile()) throw new FileFormatError(target, `${what}: ${notRegularFile(st)}`);
  return real;
}

function notRegularFile(st: Stats): string {
  return `not a regular file (${st.isDirectory() ? 'a folder' : 'a special file'})`;
}

/**
 * `folder/name` when that file exists, undefined when there is none; a file that is a symlink
 * must end inside the folder (as for {@link resolveInsideFolder}) and be a regular file. For the
 * files a folder is searched for by name or listed: config.json, the weights, tokenizer and
 * preprocessor files, a data folder's files. The path returned is the one in the folder (its
 * name says the format; in the Hugging Face cache the target is a hash).
 */
export function folderFile(folder: string, name: string): string | undefined {
  return folderEntry(folder, name, 'file');
}

/**
 * {@link folderFile} for a file the caller requires: its checked path, or the plain
 * `folder/name` when it is absent, for the reader to report missing.
 */
export function requiredFolderFile(folder: string, name: string): string {
  return folderFile(folder, name) ?? join(folder, name);
}

/** {@link folderFile} for a sub-folder (an image folder's class folder, which may be a symlink). */
export function folderSubfolder(folder: string, name: string): string | undefined {
  return folderEntry(folder, name, 'folder');
}

function folderEntry(folder: string, name: string, kind: 'file' | 'folder'): string | undefined {
  const path = join(folder, name);
  try {
    // lstat: a dangling symlink is present (and refused below), not absent.
    lstatSync(path);
  } catch {
    return undefined;
  }
  let realRoot: string;
  let real: string;
  try {
    realRoot = realpathSync(folder);
    real = realpathSync(path);
  } catch (e) {
    throw new FileFormatError(path, `cannot open file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (!insideFolder(realRoot, real)) {
    throw new FileFormatError(path, `leads outside the folder ${realRoot} (to ${real}; refused: a model, tokenizer or data folder may only hold files inside itself)`);
  }
  const st = statSync(real);
  if (kind === 'folder' ? !st.isDirectory() : !st.isFile()) throw new FileFormatError(path, kind === 'folder' ? 'not a folder' : notRegularFile(st));
  return path;
}

/**
 * Inside the real folder, or in the blobs of the Hugging Face cache repo (`models--<org>--<name>`)
 * whose snapshot holds the folder: the snapshot itself, or a folder in it such as `onnx/`.
 */
function insideFolder(realRoot: string, real: string): boolean {
  if (isWithin(realRoot, real)) return true;
  for (let dir = realRoot; dirname(dir) !== dir; dir = dirname(dir)) {
    const snapshots = dirname(dir);
    const repo = dirname(snapshots);
    if (basename(snapshots) === 'snapshots' && /^(models|datasets)--/.test(basename(repo))) return isWithin(join(repo, 'blobs'), real);
  }
  return false;
}

function isWithin(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel !== '' && !rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel);
}

function outside(referrer: string, what: string, location: string, root: string): FileFormatError {
  return new FileFormatError(
    referrer,
    `${what}: location '${location}' leads outside the model folder ${root} (refused: a model folder may only reference files inside itself)`,
  );
}
