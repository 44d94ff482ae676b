/**
 * Plain JPEGs decoded by libjpeg-turbo's decoder compiled to WebAssembly (@jsquash/jpeg, mozjpeg's
 * decoder = libjpeg-turbo's), in this thread, instead of through sharp.
 *
 * Why: sharp spends ~0.4 ms of pipeline set-up per image, ~1 ms of CPU per 32x32 CIFAR image
 * with its thread hand-offs; the wasm decoder takes ~0.1 ms. On 2 cores that CPU was taken from
 * the training step. The pixels are the same: libvips decodes JPEGs with libjpeg-turbo too
 * (islow IDCT, fancy upsampling), checked bit for bit against sharp (jpeg-wasm.test.ts).
 *
 * Only JPEGs where sharp would do nothing but decode take this path: 3 components (YCbCr), no
 * EXIF (orientation), no ICC profile (sharp converts to sRGB), no Adobe marker (CMYK / RGB
 * transforms). Everything else, and anything this decoder refuses, goes to sharp.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import decodeWasm, { init } from '@jsquash/jpeg/decode.js';
import { dropAlpha } from './image-ops.js';

interface RgbaImage {
  data: Uint8ClampedArray;
  width: number;
  height: number;
}

let ready: Promise<void> | null = null;

function initialise(): Promise<void> {
  ready ??= (async () => {
    const wasmPath = createRequire(import.meta.url).resolve('@jsquash/jpeg/codec/dec/mozjpeg_dec.wasm');
    // (The project's lib has no WebAssembly typings; Node has the global.)
    const wasm = (globalThis as unknown as { WebAssembly: { compile(bytes: Uint8Array): Promise<unknown> } }).WebAssembly;
    const module = await wasm.compile(readFileSync(wasmPath));
    // The typings only list the options form; the module form is the one that needs no fetch().
    // libjpeg's messages go nowhere: a file it refuses goes on to sharp, whose error names the file.
    const quiet = { print: () => undefined, printErr: () => undefined };
    await (init as unknown as (module: unknown, options: typeof quiet) => Promise<void>)(module, quiet);
  })();
  return ready;
}

/**
 * Whether a file is a JPEG that only needs decoding (see above): reads the markers up to the
 * first frame header. Malformed marker data answers false (sharp then reports the error).
 */
export function isPlainJpeg(bytes: Uint8Array): boolean {
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) return false;
  let i = 2;
  while (i + 4 <= bytes.length) {
    if (bytes[i] !== 0xff) return false;
    const marker = bytes[i + 1];
    if (marker === 0xff) {
      i++; // fill byte
      continue;
    }
    const length = (bytes[i + 2] << 8) | bytes[i + 3];
    if (length < 2) return false;
    // APP1 (EXIF / XMP), APP2 (ICC profile), APP14 (Adobe colour transform): sharp may act on them.
    if (marker === 0xe1 || marker === 0xe2 || marker === 0xee) return false;
    // Baseline, extended and progressive Huffman frames: the component count follows the size.
    if (marker === 0xc0 || marker === 0xc1 || marker === 0xc2) return i + 9 < bytes.length && bytes[i + 9] === 3;
    // Other frames (lossless, arithmetic), or scan data before any frame: leave them to sharp.
    if ((marker >= 0xc3 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) || marker === 0xda) return false;
    i += 2 + length;
  }
  return false;
}

/** RGB uint8 HWC pixels of a plain JPEG, or null when the decoder refuses it. */
export async function decodePlainJpeg(bytes: Uint8Array): Promise<{ pixels: Uint8Array; height: number; width: number } | null> {
  await initialise();
  let image: RgbaImage;
  try {
    // The decoder takes an ArrayBuffer of exactly the file: a copy (a Buffer's .buffer is its whole pool).
    const copy = new Uint8Array(bytes).buffer;
    image = (await decodeWasm(copy)) as unknown as RgbaImage;
  } catch {
    return null;
  }
  const { data, width, height } = image;
  if (data.length !== width * height * 4) return null;
  return { pixels: dropAlpha(data, 4), height, width };
}
