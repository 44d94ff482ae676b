import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readSafetensors } from '@masksub/core';
import { describeShared, sharedPath } from '../../../core/src/testing/shared.js';
import { decodeSample } from './decode.js';
import { applyGeometry, explicitPreprocessSpec, IMAGENET_MEAN, IMAGENET_STD, loadPreprocessorConfig, preprocessImage, preprocessSpecFromHf, preprocessSpecToHf } from './preprocess.js';
import { cropImage, flipHorizontal, resizeImage } from './resample.js';
import type { DecodedImage } from './types.js';
import { readShardSamples } from './webdataset.js';

function gray(width: number, height: number, values: number[]): DecodedImage {
  return { pixels: Uint8Array.from(values), width, height, channels: 1 };
}

/** A deterministic RGB test pattern. */
function pattern(width: number, height: number): DecodedImage {
  const px = new Uint8Array(width * height * 3);
  for (let i = 0; i < px.length; i++) px[i] = (i * 37 + ((i / 3) | 0) * 11) % 256;
  return { pixels: px, width, height, channels: 3 };
}

describe('Pillow-style resampling', () => {
  it('bilinear upscale of [0,255] gives Pillow\'s [0,64,191,255]', () => {
    expect(Array.from(resizeImage(gray(2, 1, [0, 255]), 1, 4, 'bilinear').pixels)).toEqual([0, 64, 191, 255]);
  });

  it('antialiased 2x bilinear shrink uses a widened triangle (weights .75,.75,.25)', () => {
    // Output 0 centre is at source 1.0; filter support 2 covers source 0..2 with weights 3:3:1.
    const out = resizeImage(gray(4, 1, [0, 70, 140, 210]), 1, 2, 'bilinear');
    expect(out.pixels[0]).toBe(Math.round((0.75 * 0 + 0.75 * 70 + 0.25 * 140) / 1.75));
  });

  it('keeps a constant image constant for every filter and preserves size when unchanged', () => {
    const flat: DecodedImage = { pixels: new Uint8Array(7 * 5 * 3).fill(123), width: 7, height: 5, channels: 3 };
    for (const r of ['nearest', 'bilinear', 'bicubic', 'lanczos', 'box'] as const) {
      const out = resizeImage(flat, 11, 3, r);
      expect(out).toMatchObject({ height: 11, width: 3, channels: 3 });
      expect(out.pixels.every((v) => v === 123)).toBe(true);
    }
    expect(resizeImage(flat, 5, 7, 'bicubic')).toBe(flat);
  });

  it('crops with zero fill outside and flips left-right', () => {
    const img = gray(3, 2, [1, 2, 3, 4, 5, 6]);
    expect(Array.from(cropImage(img, -1, 1, 3, 3).pixels)).toEqual([0, 0, 0, 2, 3, 0, 5, 6, 0]);
    expect(Array.from(flipHorizontal(img).pixels)).toEqual([3, 2, 1, 6, 5, 4]);
  });
});

const dir = mkdtempSync(join(tmpdir(), 'masksub-pre-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('preprocessing specs', () => {
  it('reads an HF ViT preprocessor_config.json', async () => {
    writeFileSync(
      join(dir, 'preprocessor_config.json'),
      JSON.stringify({ do_resize: true, size: { height: 4, width: 4 }, resample: 2, do_rescale: true, rescale_factor: 1 / 255, do_normalize: true, image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5], image_processor_type: 'ViTImageProcessor' }),
    );
    const spec = await loadPreprocessorConfig(dir);
    expect(spec).toMatchObject({ resize: { height: 4, width: 4 }, centerCrop: null, resample: 'bilinear', mean: [0.5, 0.5, 0.5], channels: 3 });
    // 255 -> 1, 0 -> -1, gray replicated to three channels.
    const out = preprocessImage(gray(4, 4, new Array(16).fill(0).map((_, i) => (i % 2 ? 255 : 0))), spec);
    expect(out.shape).toEqual([3, 4, 4]);
    expect(Array.from(out.data.subarray(0, 2))).toEqual([-1, 1]);
    expect(Array.from(out.data.subarray(32, 34))).toEqual([-1, 1]);
  });

  it('ConvNeXt crop_pct: resize the short side to edge/crop_pct, then center crop', () => {
    const spec = preprocessSpecFromHf({ size: { shortest_edge: 224 }, crop_pct: 0.875, resample: 3, image_mean: IMAGENET_MEAN, image_std: IMAGENET_STD }, 'cfg.json');
    expect(spec.resize).toEqual({ shortestEdge: 256 });
    expect(spec.centerCrop).toEqual({ height: 224, width: 224 });
    const g = applyGeometry(pattern(300, 200), spec);
    expect([g.height, g.width]).toEqual([224, 224]);
  });

  it('shortest_edge keeps the aspect ratio (floor of the long side)', () => {
    const spec = preprocessSpecFromHf({ size: { shortest_edge: 10 }, do_center_crop: false }, 'cfg.json');
    const g = applyGeometry(pattern(15, 7), spec);
    expect([g.height, g.width]).toEqual([10, Math.floor((10 * 15) / 7)]);
  });

  it('rejects bad configs and options naming them', () => {
    expect(() => preprocessSpecFromHf({ image_mean: [0.5, 0.5] }, '/m/preprocessor_config.json')).toThrow(/preprocessor_config\.json: image_mean has 2 values for 3 channels/);
    expect(() => preprocessSpecFromHf({ size: 'big' }, '/m/p.json')).toThrow(/\/m\/p\.json: not an image preprocessor config/);
    expect(() => explicitPreprocessSpec({ size: 32, std: [1, 0, 1] })).toThrow(/option 'std'/);
  });

  it('writes specs back as preprocessor_config.json that read back to the same spec', () => {
    const specs = [
      explicitPreprocessSpec({ size: 28, channels: 1, mean: [0.1307], std: [0.3081] }),
      explicitPreprocessSpec({ size: { height: 224, width: 160 }, resample: 'bicubic' }),
      explicitPreprocessSpec({ size: 224, cropPct: 0.875 }),
      { ...explicitPreprocessSpec({ size: 32 }), resize: null, rescaleFactor: null, mean: null, std: null },
    ];
    for (const spec of specs) {
      const hf = preprocessSpecToHf(spec, 'ViTImageProcessor');
      expect(hf.image_processor_type).toBe('ViTImageProcessor');
      expect(preprocessSpecFromHf(JSON.parse(JSON.stringify(hf)), 'p.json', spec.channels)).toEqual(spec);
    }
  });

  it('matches transformers.js AutoImageProcessor when no resize is needed', async () => {
    const { AutoImageProcessor, RawImage, env } = await import('@huggingface/transformers');
    env.allowRemoteModels = false;
    env.localModelPath = join(dir, '..');
    writeFileSync(
      join(dir, 'preprocessor_config.json'),
      JSON.stringify({ do_resize: true, size: { height: 8, width: 8 }, resample: 2, do_rescale: true, rescale_factor: 1 / 255, do_normalize: true, image_mean: IMAGENET_MEAN, image_std: IMAGENET_STD, image_processor_type: 'ViTImageProcessor' }),
    );
    const img = pattern(8, 8);
    const processor = await AutoImageProcessor.from_pretrained(dir.split('/').pop()!);
    const hf = await processor(new RawImage(new Uint8ClampedArray(img.pixels), 8, 8, 3));
    const ours = preprocessImage(img, await loadPreprocessorConfig(dir));
    const theirs = hf.pixel_values.data as Float32Array;
    expect(hf.pixel_values.dims).toEqual([1, 3, 8, 8]);
    let max = 0;
    for (let i = 0; i < theirs.length; i++) max = Math.max(max, Math.abs(theirs[i] - ours.data[i]));
    expect(max).toBeLessThan(1e-5);
  });
});

describeShared('data/models/resnet20-cifar10', 'CIFAR-10 model input (real data)', () => {
  it('decode + ToTensor + Normalize reproduces the reference `images` tensor', async () => {
    const ref = readSafetensors(sharedPath('data/models/resnet20-cifar10/reference.safetensors')).get('images')!;
    const spec = explicitPreprocessSpec({ size: 32, mean: IMAGENET_MEAN, std: IMAGENET_STD });
    let i = 0;
    let max = 0;
    for await (const raw of readShardSamples(sharedPath('data/cifar10/test-000000.tar.gz'))) {
      const { data } = preprocessImage(await decodeSample(raw), spec);
      const expected = (ref.data as Float32Array).subarray(i * 3072, (i + 1) * 3072);
      for (let k = 0; k < 3072; k++) max = Math.max(max, Math.abs(data[k] - expected[k]));
      if (++i === 8) break;
    }
    expect(max).toBeLessThan(1e-5);
  });
});
