/**
 * JPEG/PNG (and anything else libvips reads) to raw uint8 HWC pixels with sharp.
 *
 * Gray images stay 1 channel (the preprocessing replicates them when the model wants RGB), alpha
 * is dropped, and colour is converted to sRGB, so every image comes out as 1 or 3 channels.
 * sharp decodes on libuv's thread pool, so many decodes can be in flight at once.
 */
import sharp from 'sharp';
import { FileFormatError } from '../../errors.js';
import type { DecodedImage, ImageSample, RawSample } from './types.js';

/** Decode one encoded image; `source` names it in errors (file path or tar key). */
export async function decodeImage(bytes: Uint8Array, source: string): Promise<DecodedImage> {
  try {
    const image = sharp(bytes, { failOn: 'error' });
    const meta = await image.metadata();
    const gray = meta.channels !== undefined && meta.channels <= 2 && (meta.space === 'b-w' || meta.space === 'grey16');
    const pipeline = gray ? image.toColourspace('b-w').extractChannel(0) : image.removeAlpha().toColourspace('srgb');
    const { data, info } = await pipeline.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 1 && info.channels !== 3) throw new Error(`unexpected channel count ${info.channels}`);
    return {
      pixels: new Uint8Array(data.buffer, data.byteOffset, data.length),
      height: info.height,
      width: info.width,
      channels: info.channels,
    };
  } catch (e) {
    if (e instanceof FileFormatError) throw e;
    throw new FileFormatError(source, `cannot decode image: ${(e as Error).message}`);
  }
}

/** A raw sample as a decoded one (decoding when it is still encoded). */
export async function decodeSample(raw: RawSample): Promise<ImageSample> {
  if (raw.kind === 'decoded') return { pixels: raw.pixels, height: raw.height, width: raw.width, channels: raw.channels, label: raw.label };
  const image = await decodeImage(raw.bytes, raw.key);
  return { ...image, label: raw.label };
}
