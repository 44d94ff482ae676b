/**
 * Write a POSIX ustar archive in memory, laid out as Python's `tarfile` (USTAR_FORMAT) writes
 * WebDataset shards: mode 0644, mtime 0, two zero blocks, padding to the 10,240-byte record.
 * Used to build small shards (tests, `masksub` data tooling); names must fit the 100-byte field.
 */
import { OptionError } from '@masksub/core/base';
import { TAR_BLOCK, tarPadding } from './tar.js';

export interface TarInput {
  name: string;
  data: Uint8Array;
  /** Type flag: '0' regular file (default), '5' directory, 'L' GNU long name. */
  type?: string;
}

const RECORD = 10_240;

function headerBlock(name: string, size: number, type: string): Buffer {
  const h = Buffer.alloc(TAR_BLOCK);
  if (Buffer.byteLength(name) > 100) throw new OptionError('name', `tar member name longer than 100 bytes: '${name.slice(0, 40)}...'`);
  h.write(name, 0, 100, 'utf8');
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(size.toString(8).padStart(11, '0') + '\0', 124);
  h.write('00000000000\0', 136);
  h.write('        ', 148); // checksum is computed with its own field as spaces
  h.write(type, 156);
  h.write('ustar\0', 257);
  h.write('00', 263);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  return h;
}

export function buildTar(members: TarInput[]): Buffer {
  const parts: Buffer[] = [];
  for (const m of members) {
    parts.push(headerBlock(m.name, m.data.length, m.type ?? '0'), Buffer.from(m.data), Buffer.alloc(tarPadding(m.data.length)));
  }
  parts.push(Buffer.alloc(2 * TAR_BLOCK));
  const body = Buffer.concat(parts);
  return Buffer.concat([body, Buffer.alloc((RECORD - (body.length % RECORD)) % RECORD)]);
}
