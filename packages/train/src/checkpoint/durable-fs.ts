/**
 * The few file-system steps crash safety is built from: write+fsync a file, fsync a folder (so a
 * rename or create inside it survives power loss), and tell whether a process is still alive
 * (to know whether a temp folder is being written or was abandoned).
 */
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';

/** Creates/overwrites `path` with `bytes` and fsyncs it before returning. */
export async function writeFileSynced(path: string, bytes: Uint8Array | string): Promise<void> {
  const fh = await open(path, 'w');
  try {
    await fh.writeFile(bytes);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Creates/overwrites `path` with what `produce` writes piece by piece, fsyncs it and returns
 * `produce`'s result: files larger than one buffer (a model over 2 GiB) are never held whole.
 */
export async function writeStreamSynced<T>(path: string, produce: (write: (bytes: Uint8Array) => void) => T): Promise<T> {
  const fd = openSync(path, 'w');
  try {
    const result = produce((bytes) => {
      let written = 0;
      while (written < bytes.byteLength) written += writeSync(fd, bytes, written, bytes.byteLength - written);
    });
    fsyncSync(fd);
    return result;
  } finally {
    closeSync(fd);
  }
}

/** Some platforms/filesystems cannot fsync a folder (Windows, some FUSE/network mounts). */
const UNSYNCABLE_DIR = new Set(['EISDIR', 'EINVAL', 'EPERM', 'ENOTSUP', 'EACCES']);

/** fsync a folder so entries created or renamed in it are durable. */
export async function fsyncDir(path: string): Promise<void> {
  let fh;
  try {
    fh = await open(path, 'r');
    await fh.sync();
  } catch (e) {
    if (!UNSYNCABLE_DIR.has((e as NodeJS.ErrnoException).code ?? '')) throw e;
  } finally {
    await fh?.close();
  }
}

/** Atomically replace a small file: temp file in the same folder, fsync, rename, fsync folder. */
export async function replaceFileAtomic(dir: string, name: string, tmpName: string, contents: string): Promise<void> {
  const tmp = `${dir}/${tmpName}`;
  await writeFileSynced(tmp, contents);
  await rename(tmp, `${dir}/${name}`);
  await fsyncDir(dir);
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists but belongs to someone else.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
