/**
 * JPEG/PNG (and anything else libvips reads) to raw uint8 HWC pixels with sharp.
 *
 * sharp converts every file to sRGB on output, so gray JPEG/PNG files come out as 3 equal
 * channels (identical to replicating them later); alpha is dropped. The result has 1 or 3
 * channels (1 only for gray sources sharp keeps gray; IDX data never passes through here).
 * sharp decodes on libuv's thread pool, so many decodes can be in flight at once. Plain JPEGs
 * take a faster path with the same pixels (jpeg-wasm.ts).
 */
import sharp from 'sharp';
import { FileFormatError } from '@masksub/core/base';
import { dropAlpha } from './image-ops.js';
import { decodePlainJpeg, isPlainJpeg } from './jpeg-wasm.js';
import type { DecodedImage, ImageSample, RawSample } from './types.js';

/** Decode one encoded image; `source` names it in errors (file path or tar key). */
export async function decodeImage(bytes: Uint8Array, source: string): Promise<DecodedImage> {
  if (isPlainJpeg(bytes)) {
    // The same pixels as sharp at a fraction of its per-image cost (jpeg-wasm.ts); a file the
    // wasm decoder refuses goes on to sharp, which names what is wrong with it.
    const plain = await decodePlainJpeg(bytes);
    if (plain) return { ...plain, channels: 3 };
  }
  try {
    // One pass without a metadata() round trip (it costs ~20% on small images): sharp already
    // outputs sRGB (or gray for gray inputs); alpha is dropped here in JS.
    const { data, info } = await sharp(bytes, { failOn: 'error' }).raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    const pixels = new Uint8Array(data.buffer, data.byteOffset, data.length);
    const { width, height, channels } = info;
    if (channels === 1 || channels === 3) return { pixels, height, width, channels };
    if (channels === 2 || channels === 4) return { pixels: dropAlpha(pixels, channels), height, width, channels: channels === 2 ? 1 : 3 };
    throw new Error(`unexpected channel count ${channels}`);
  } catch (e) {
    throw new FileFormatError(source, `cannot decode image: ${(e as Error).message}`);
  }
}

/** A raw sample as a decoded one (decoding when it is still encoded). */
export async function decodeSample(raw: RawSample): Promise<ImageSample> {
  if (raw.kind === 'decoded') return { pixels: raw.pixels, height: raw.height, width: raw.width, channels: raw.channels, label: raw.label };
  const image = await decodeImage(raw.bytes, raw.key);
  return { ...image, label: raw.label };
}
