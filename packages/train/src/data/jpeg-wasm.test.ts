/** The wasm JPEG path gives sharp's pixels exactly, and leaves everything else to sharp. */
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { describeShared, sharedPath } from '../../../core/src/testing/shared.js';
import { decodeImage } from './decode.js';
import { decodePlainJpeg, isPlainJpeg } from './jpeg-wasm.js';
import { openDataSpec } from './spec.js';
import { Rng } from '@masksub/core';

async function viaSharp(bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await sharp(bytes).raw().toBuffer());
}

/** Noise plus a gradient: every DCT coefficient and both chroma planes matter. */
function noiseImage(width: number, height: number, seed: number): Buffer {
  const rng = new Rng(seed);
  const px = Buffer.alloc(width * height * 3);
  for (let i = 0; i < px.length; i++) px[i] = Math.min(255, Math.floor(rng.next() * 96 + ((i * 7) % 160)));
  return px;
}

describe('plain JPEGs through the wasm decoder', () => {
  const cases = [
    { width: 1, height: 1 },
    { width: 7, height: 5 },
    { width: 32, height: 32 },
    { width: 33, height: 17 },
    { width: 301, height: 199 },
  ];
  for (const { width, height } of cases) {
    for (const chromaSubsampling of ['4:4:4', '4:2:0'] as const) {
      for (const progressive of [false, true]) {
        it(`${width}x${height}, ${chromaSubsampling}, ${progressive ? 'progressive' : 'baseline'}: sharp's pixels`, async () => {
          const raw = noiseImage(width, height, width * 31 + height);
          const jpg = new Uint8Array(await sharp(raw, { raw: { width, height, channels: 3 } }).jpeg({ quality: 83, chromaSubsampling, progressive }).toBuffer());
          expect(isPlainJpeg(jpg)).toBe(true);
          const fast = await decodePlainJpeg(jpg);
          expect(fast).not.toBeNull();
          expect([fast!.height, fast!.width]).toEqual([height, width]);
          expect(Buffer.from(fast!.pixels).equals(Buffer.from(await viaSharp(jpg)))).toBe(true);
          const decoded = await decodeImage(jpg, 'case');
          expect(decoded.channels).toBe(3);
          expect(Buffer.from(decoded.pixels).equals(Buffer.from(fast!.pixels))).toBe(true);
        });
      }
    }
  }

  it('what sharp would do more than decode stays with sharp: gray, EXIF, ICC, PNG, not JPEG', async () => {
    const raw = noiseImage(16, 16, 3);
    const rgb = sharp(raw, { raw: { width: 16, height: 16, channels: 3 } });
    const gray = sharp(Buffer.alloc(16 * 16, 77), { raw: { width: 16, height: 16, channels: 1 } });
    expect(isPlainJpeg(new Uint8Array(await gray.toColourspace('b-w').jpeg().toBuffer()))).toBe(false); // one component
    expect(isPlainJpeg(new Uint8Array(await rgb.clone().jpeg().withExif({ IFD0: { Copyright: 'x' } }).toBuffer()))).toBe(false);
    expect(isPlainJpeg(new Uint8Array(await rgb.clone().jpeg().withIccProfile('p3').toBuffer()))).toBe(false);
    expect(isPlainJpeg(new Uint8Array(await rgb.clone().png().toBuffer()))).toBe(false);
    expect(isPlainJpeg(new Uint8Array([0xff, 0xd8, 0x00, 0x01, 0x02]))).toBe(false);
    expect(isPlainJpeg(new Uint8Array(0))).toBe(false);
  });

  it('a corrupt JPEG still fails by name (the wasm decoder refuses it, sharp reports it)', async () => {
    const jpg = new Uint8Array(await sharp(noiseImage(16, 16, 4), { raw: { width: 16, height: 16, channels: 3 } }).jpeg().toBuffer());
    const headerOnly = jpg.slice(0, 200);
    for (let i = 120; i < headerOnly.length; i++) headerOnly[i] = 0xff;
    await expect(decodeImage(headerOnly, 'shard-0.tar:k7.jpg')).rejects.toThrow(/shard-0\.tar:k7\.jpg: cannot decode image/);
    // The decoder survives the file it refused (libjpeg's error exit), and reads a Buffer view right.
    const pooled = Buffer.concat([Buffer.from('prefix'), jpg]).subarray(6);
    const again = await decodePlainJpeg(pooled);
    expect(again && Buffer.from(again.pixels).equals(Buffer.from(await viaSharp(jpg)))).toBe(true);
  });
});

describeShared('data/cifar10', 'CIFAR-10 shards through the wasm decoder', () => {
  it("the first 500 training JPEGs: all take the fast path, sharp's pixels exactly", async () => {
    const ds = await openDataSpec(`webdataset:${sharedPath('data/cifar10')}/train-000000.tar.gz`, { count: false });
    if (ds.kind !== 'stream') throw new Error('expected a streamed shard');
    let n = 0;
    for await (const s of ds.samples(new Rng(0), false)) {
      if (s.kind !== 'encoded') throw new Error('expected encoded samples');
      expect(isPlainJpeg(s.bytes), s.key).toBe(true);
      const fast = await decodePlainJpeg(s.bytes);
      expect(Buffer.from(fast!.pixels).equals(Buffer.from(await viaSharp(s.bytes))), s.key).toBe(true);
      if (++n === 500) break;
    }
    expect(n).toBe(500);
  });
});
