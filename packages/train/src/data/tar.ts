/**
 * A streaming reader for POSIX ustar archives (optionally gzipped), as WebDataset shards use.
 *
 * Why our own: the format is 512-byte blocks with a fixed header, and reading it ourselves keeps
 * shards streamed (never a whole 25 MB tar in memory) with no dependency. Headers: name in bytes
 * 0-99, size as octal ASCII in 124-135, checksum in 148-155, type flag at 156, ustar prefix in
 * 345-499. GNU long names ('L') and pax path records ('x') are honoured; other non-file members
 * (directories, links) are skipped.
 */
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { createGunzip } from 'node:zlib';
import { FileFormatError } from '@masksub/core/base';

export const TAR_BLOCK = 512;

/** One regular file inside a tar. */
export interface TarMember {
  name: string;
  data: Buffer;
}

/** A parsed header block. */
export interface TarHeader {
  name: string;
  size: number;
  /** '0' regular file, '5' directory, 'L' GNU long name, 'x'/'g' pax, ... ('0' for a NUL flag). */
  type: string;
}

/** True when `bytes` starts with the gzip magic 1f 8b. */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** True for an all-zero block (the end-of-archive marker). */
function isZeroBlock(block: Uint8Array): boolean {
  for (let i = 0; i < TAR_BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

function cString(block: Uint8Array, start: number, length: number): string {
  let end = start;
  while (end < start + length && block[end] !== 0) end++;
  return Buffer.from(block.buffer, block.byteOffset + start, end - start).toString('utf8');
}

/** Octal ASCII numeric field (spaces/NULs around it allowed), or GNU base-256 when the top bit is set. */
function numericField(block: Uint8Array, start: number, length: number, file: string, what: string): number {
  if (block[start] & 0x80) {
    let v = 0;
    for (let i = start + 1; i < start + length; i++) v = v * 256 + block[i];
    return v;
  }
  const text = cString(block, start, length).trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new FileFormatError(file, `tar header ${what} is not octal: '${text}'`);
  return parseInt(text, 8);
}

/**
 * Parse one 512-byte header; null for the zero block that ends the archive. Throws a
 * FileFormatError naming `file` when the checksum does not match (a truncated or non-tar file).
 */
export function parseTarHeader(block: Uint8Array, file: string): TarHeader | null {
  if (block.length < TAR_BLOCK) throw new FileFormatError(file, `truncated tar header (${block.length} bytes)`);
  if (isZeroBlock(block)) return null;
  const stored = numericField(block, 148, 8, file, 'checksum');
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i];
  if (sum !== stored) throw new FileFormatError(file, `tar header checksum mismatch (stored ${stored}, computed ${sum}): not a tar file or corrupt`);
  let name = cString(block, 0, 100);
  const magic = cString(block, 257, 6);
  if (magic.startsWith('ustar')) {
    const prefix = cString(block, 345, 155);
    if (prefix) name = `${prefix}/${name}`;
  }
  const flag = block[156] === 0 ? '0' : String.fromCharCode(block[156]);
  return { name, size: numericField(block, 124, 12, file, 'size'), type: flag };
}

/** Padding after `size` data bytes up to the next block boundary. */
export function tarPadding(size: number): number {
  return (TAR_BLOCK - (size % TAR_BLOCK)) % TAR_BLOCK;
}

/** The `path` record of a pax extended header body ("<len> path=<value>\n" records). */
function paxPath(body: Buffer): string | undefined {
  let pos = 0;
  let path: string | undefined;
  while (pos < body.length) {
    const space = body.indexOf(0x20, pos);
    if (space < 0) break;
    const len = parseInt(body.subarray(pos, space).toString('ascii'), 10);
    if (!(len > 0)) break;
    const record = body.subarray(space + 1, pos + len - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq > 0 && record.slice(0, eq) === 'path') path = record.slice(eq + 1);
    pos += len;
  }
  return path;
}

/**
 * Pulls exact byte counts out of an async stream of chunks, keeping only what is not consumed yet
 * (so memory stays at about one chunk plus one member).
 */
class ChunkReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private done = false;

  constructor(private readonly source: AsyncIterator<Buffer>) {}

  /** Exactly n bytes, or fewer only when the stream ends first. */
  async read(n: number): Promise<Buffer> {
    while (this.buffered < n && !this.done) {
      const next = await this.source.next();
      if (next.done) this.done = true;
      else {
        this.chunks.push(next.value);
        this.buffered += next.value.length;
      }
    }
    const take = Math.min(n, this.buffered);
    // Copy out piecewise: concatenating the buffered chunks on every 512-byte read would copy
    // a whole 64 KiB chunk per header.
    const out = Buffer.allocUnsafe(take);
    let filled = 0;
    while (filled < take) {
      const chunk = this.chunks[0];
      const k = Math.min(chunk.length, take - filled);
      chunk.copy(out, filled, 0, k);
      filled += k;
      if (k === chunk.length) this.chunks.shift();
      else this.chunks[0] = chunk.subarray(k);
    }
    this.buffered -= take;
    return out;
  }
}

/** Sniff the first bytes of a file: is it gzip? */
export async function fileIsGzip(path: string): Promise<boolean> {
  const fh = await open(path, 'r').catch((e: NodeJS.ErrnoException) => {
    throw new FileFormatError(path, `cannot open: ${e.code ?? e.message}`);
  });
  try {
    const head = Buffer.alloc(2);
    const { bytesRead } = await fh.read(head, 0, 2, 0);
    return isGzip(head.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}

/**
 * The largest member read into memory by default: far above any image a sample holds, far below
 * what would exhaust memory when a hostile header declares a 3 GB member.
 */
export const MAX_TAR_MEMBER_BYTES = 256 * 2 ** 20;
/** GNU long-name and pax records are a path, not data. */
const MAX_NAME_RECORD_BYTES = 1 << 20;

export interface TarReadOptions {
  /** The largest a member may be, by its name (default MAX_TAR_MEMBER_BYTES for every member). */
  maxMemberBytes?: (name: string) => number;
}

function checkMemberSize(header: TarHeader, name: string, path: string, options: TarReadOptions): void {
  const isName = header.type === 'L' || header.type === 'x' || header.type === 'g';
  const limit = isName ? MAX_NAME_RECORD_BYTES : (options.maxMemberBytes?.(name) ?? MAX_TAR_MEMBER_BYTES);
  if (header.size > limit) {
    throw new FileFormatError(path, `member '${name}' declares ${header.size} bytes, more than the ${limit} such a member may have (corrupt or hostile archive)`);
  }
}

function endedEarly(path: string, gz: boolean): FileFormatError {
  return new FileFormatError(path, `truncated: the ${gz ? 'tar.gz' : 'tar'} ends without the end-of-archive marker (an interrupted download or copy?)`);
}

/**
 * Stream the regular-file members of a tar or tar.gz file in archive order. Only the current
 * member is held in memory; breaking out of the loop closes the file. Member sizes are bounded
 * (`options.maxMemberBytes`) before anything is read, and an archive that stops mid-header, mid-member
 * or before its end marker is an error naming the file.
 */
export async function* readTarMembers(path: string, options: TarReadOptions = {}): AsyncGenerator<TarMember> {
  const gz = await fileIsGzip(path);
  const fileStream = createReadStream(path, { highWaterMark: 1 << 16 });
  const stream = gz ? fileStream.pipe(createGunzip()) : fileStream;
  fileStream.on('error', (e) => stream.destroy(e));
  const iterator = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const reader = new ChunkReader(iterator);
  let longName: string | undefined;
  try {
    // zlib reports a cut-off gzip stream as "unexpected end of file": name the file instead of a stack.
    const read = async (n: number): Promise<Buffer> => {
      try {
        return await reader.read(n);
      } catch (e) {
        throw new FileFormatError(path, `cannot read${gz ? ' (gzip)' : ''}: ${(e as Error).message}${gz ? ' (truncated or corrupt .gz?)' : ''}`);
      }
    };
    for (;;) {
      const block = await read(TAR_BLOCK);
      // Writers always end with zero blocks: a stream that stops at a member boundary was cut.
      if (block.length === 0) throw endedEarly(path, gz);
      const header = parseTarHeader(block, path);
      if (header === null) return;
      checkMemberSize(header, longName ?? header.name, path, options);
      const data = await read(header.size);
      if (data.length < header.size) throw new FileFormatError(path, `truncated: member '${header.name}' needs ${header.size} bytes, ${data.length} left`);
      await read(tarPadding(header.size));
      if (header.type === 'L') {
        longName = cString(data, 0, data.length);
      } else if (header.type === 'x') {
        longName = paxPath(data) ?? longName;
      } else if (header.type === '0' || header.type === '7') {
        yield { name: longName ?? header.name, data };
        longName = undefined;
      } else {
        longName = undefined;
      }
    }
  } finally {
    stream.destroy();
    fileStream.destroy();
  }
}

/** Where a member's data sits inside an uncompressed tar, for random access. */
export interface TarEntry {
  name: string;
  offset: number;
  size: number;
}

/**
 * Index an uncompressed tar by reading its headers only (data is skipped with seeks), so any
 * member can later be read with one positioned read.
 */
export async function indexTar(path: string, options: TarReadOptions = {}): Promise<TarEntry[]> {
  if (await fileIsGzip(path)) throw new FileFormatError(path, 'a gzipped tar cannot be indexed for random access; stream it instead');
  const fh = await open(path, 'r');
  const entries: TarEntry[] = [];
  try {
    const { size: fileSize } = await fh.stat();
    const block = Buffer.alloc(TAR_BLOCK);
    let pos = 0;
    let longName: string | undefined;
    let ended = false;
    while (pos < fileSize) {
      // A file cut inside a header block: refuse rather than index the samples before it.
      if (pos + TAR_BLOCK > fileSize) throw new FileFormatError(path, `truncated: ${fileSize - pos} bytes of a tar header at offset ${pos}`);
      await fh.read(block, 0, TAR_BLOCK, pos);
      const header = parseTarHeader(block, path);
      if (header === null) {
        ended = true;
        break;
      }
      checkMemberSize(header, longName ?? header.name, path, options);
      const dataStart = pos + TAR_BLOCK;
      if (dataStart + header.size > fileSize) throw new FileFormatError(path, `truncated: member '${header.name}' runs past the end of the file`);
      if (header.type === 'L' || header.type === 'x') {
        const body = Buffer.alloc(header.size);
        await fh.read(body, 0, header.size, dataStart);
        longName = header.type === 'L' ? cString(body, 0, body.length) : (paxPath(body) ?? longName);
      } else if (header.type === '0' || header.type === '7') {
        entries.push({ name: longName ?? header.name, offset: dataStart, size: header.size });
        longName = undefined;
      } else {
        longName = undefined;
      }
      pos = dataStart + header.size + tarPadding(header.size);
    }
    if (!ended) throw endedEarly(path, false);
  } finally {
    await fh.close();
  }
  return entries;
}
