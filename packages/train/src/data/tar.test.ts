import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { FileFormatError } from '@masksub/core';
import { indexTar, parseTarHeader, readTarMembers } from './tar.js';
import { buildTar } from './tar-writer.js';

const dir = mkdtempSync(join(tmpdir(), 'masksub-tar-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const members = [
  { name: 'a_0.jpg', data: Buffer.from('x'.repeat(700)) },
  { name: 'a_0.cls', data: Buffer.from('3') },
  { name: 'b_1.png', data: Buffer.alloc(512, 7) }, // exactly one block: no padding
  { name: 'b_1.cls', data: Buffer.from('12') },
  { name: 'dir', data: Buffer.alloc(0), type: '5' }, // directories are skipped
  { name: 'big.bin', data: Buffer.alloc(200_000).map((_, i) => i % 251) }, // spans many stream chunks
];

async function collect(path: string): Promise<{ name: string; data: Buffer }[]> {
  const out: { name: string; data: Buffer }[] = [];
  for await (const m of readTarMembers(path)) out.push(m);
  return out;
}

describe('ustar reader', () => {
  const tar = buildTar(members);
  const tarPath = join(dir, 's.tar');
  const gzPath = join(dir, 's.tar.gz');
  writeFileSync(tarPath, tar);
  writeFileSync(gzPath, gzipSync(tar));
  const files = members.filter((m) => m.type !== '5');

  it('streams members of a plain tar with names and exact bytes', async () => {
    const got = await collect(tarPath);
    expect(got.map((m) => m.name)).toEqual(files.map((m) => m.name));
    got.forEach((m, i) => expect(Buffer.compare(m.data, files[i].data)).toBe(0));
  });

  it('streams the same members through gunzip', async () => {
    const got = await collect(gzPath);
    expect(got.map((m) => m.name)).toEqual(files.map((m) => m.name));
    got.forEach((m, i) => expect(Buffer.compare(m.data, files[i].data)).toBe(0));
  });

  it('indexes a plain tar for random access', async () => {
    const entries = await indexTar(tarPath);
    expect(entries.map((e) => e.name)).toEqual(files.map((m) => m.name));
    expect(entries[0].offset).toBe(512);
    expect(entries[2]).toMatchObject({ name: 'b_1.png', offset: 512 * 6, size: 512 });
    await expect(indexTar(gzPath)).rejects.toThrow(/cannot be indexed/);
  });

  it('honours GNU long names', async () => {
    const long = 'x'.repeat(150) + '.cls';
    const p = join(dir, 'long.tar');
    writeFileSync(p, buildTar([{ name: '././@LongLink', data: Buffer.from(long + '\0'), type: 'L' }, { name: long.slice(0, 99), data: Buffer.from('1') }]));
    expect((await collect(p)).map((m) => m.name)).toEqual([long]);
  });

  it('rejects a corrupt header naming the file', async () => {
    const bad = Buffer.from(tar);
    bad[10] ^= 0xff;
    const p = join(dir, 'bad.tar');
    writeFileSync(p, bad);
    await expect(collect(p)).rejects.toThrow(FileFormatError);
    await expect(collect(p)).rejects.toThrow(/bad\.tar: tar header checksum mismatch/);
    expect(parseTarHeader(Buffer.alloc(512), p)).toBeNull();
  });

  it('rejects a truncated archive', async () => {
    const p = join(dir, 'trunc.tar');
    writeFileSync(p, tar.subarray(0, 512 + 100));
    await expect(collect(p)).rejects.toThrow(/truncated: member 'a_0.jpg'/);
  });
});
