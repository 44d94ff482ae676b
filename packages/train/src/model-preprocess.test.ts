/**
 * Preprocessing from a timm hub config's `pretrained_cfg` (core's typed timmPreprocessing):
 * timm's eval transform = resize the short side to floor(size / crop_pct), center-crop to
 * input_size, /255, normalise with the config's mean and std.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileFormatError, timmPreprocessing, type MaskSubModel } from '@masksub/core';
import { describeShared, sharedPath } from '../../core/src/testing/shared.js';
import { preprocessForModel } from './model-preprocess.js';
import { applyGeometry, outputSize } from './data/preprocess.js';
import { resizeImage } from './data/resample.js';
import type { DecodedImage } from './data/types.js';

const folder = () => sharedPath('fixtures/zoo-layouts/timm-vit');
const withConfig = (config: Record<string, unknown>) => ({ config }) as unknown as MaskSubModel;

describeShared('fixtures/zoo-layouts/timm-vit', 'timm pretrained_cfg preprocessing', () => {
  it('reads mean, std, input_size, crop_pct and interpolation of the fixture into the spec', async () => {
    const config = JSON.parse(readFileSync(join(folder(), 'config.json'), 'utf8')) as Record<string, unknown>;
    const spec = await preprocessForModel(withConfig(config), folder());
    // input_size [3,32,32], crop_pct 0.9 -> short side floor(32 / 0.9) = 35, then a 32x32 center crop
    expect(spec).toEqual({ resize: { shortestEdge: 35 }, centerCrop: { height: 32, width: 32 }, cropOffsets: 'round', resample: 'bicubic', rescaleFactor: 1 / 255, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], channels: 3 });
    expect(outputSize(spec, 48, 64)).toEqual({ height: 32, width: 32 });
  });

  it('resizes by crop_pct then center-crops as timm eval does', async () => {
    const config = JSON.parse(readFileSync(join(folder(), 'config.json'), 'utf8')) as Record<string, unknown>;
    const spec = await preprocessForModel(withConfig(config), folder());
    const pixels = new Uint8Array(40 * 50 * 3).map((_, i) => (i * 37) % 251);
    const img: DecodedImage = { height: 40, width: 50, channels: 3, pixels };
    const out = applyGeometry(img, spec);
    // torchvision Resize(35) on 40x50: 35 x int(35 * 50 / 40) = 35 x 43; CenterCrop(32) offsets
    // int(round(3 / 2)) = 2 and int(round(11 / 2)) = 6 (Python rounds half to even; HF would floor to 1, 5)
    const resized = resizeImage(img, 35, 43, 'bicubic');
    const top = 2;
    const left = 6;
    expect([out.height, out.width]).toEqual([32, 32]);
    for (const [y, x] of [[0, 0], [31, 31], [10, 20]] as const) {
      for (let c = 0; c < 3; c++) expect(out.pixels[(y * 32 + x) * 3 + c]).toBe(resized.pixels[((y + top) * 43 + (x + left)) * 3 + c]);
    }
  });

  it('lets explicit flags override the timm values', async () => {
    const config = JSON.parse(readFileSync(join(folder(), 'config.json'), 'utf8')) as Record<string, unknown>;
    const spec = await preprocessForModel(withConfig(config), folder(), { mean: [0.1, 0.2, 0.3], imageSize: 16 });
    expect(spec.mean).toEqual([0.1, 0.2, 0.3]);
    expect(spec.resize).toEqual({ height: 16, width: 16 });
  });
});

describe('timmPreprocessing', () => {
  it('is undefined without pretrained_cfg and takes timm defaults for absent keys', () => {
    expect(timmPreprocessing({ architecture: 'vit_base_patch16_224' })).toBeUndefined();
    expect(timmPreprocessing({ pretrained_cfg: {} })).toEqual({ inputSize: [3, 224, 224], mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], cropPct: 0.875, interpolation: 'bilinear' });
  });

  it('names the bad key', () => {
    expect(() => timmPreprocessing({ pretrained_cfg: { crop_pct: 0 } }, 'x/config.json')).toThrow(FileFormatError);
    expect(() => timmPreprocessing({ pretrained_cfg: { crop_pct: 1.5 } })).toThrow(/pretrained_cfg\.crop_pct/);
    expect(() => timmPreprocessing({ pretrained_cfg: { std: [0.5, 0, 0.5] } })).toThrow(/pretrained_cfg\.std/);
    expect(() => timmPreprocessing({ pretrained_cfg: { mean: [0.5, 0.5] } })).toThrow(/pretrained_cfg\.mean/);
    expect(() => timmPreprocessing({ pretrained_cfg: { interpolation: 'spline' } })).toThrow(/pretrained_cfg\.interpolation/);
    expect(() => timmPreprocessing({ pretrained_cfg: { input_size: [3, 0, 32] } })).toThrow(/pretrained_cfg\.input_size/);
  });
});

describe('preprocessor_config.json of a model folder', () => {
  it('is refused when it is a symlink out of the folder', async () => {
    const root = mkdtempSync(join(tmpdir(), 'masksub-pp-'));
    try {
      const model = join(root, 'model');
      mkdirSync(model);
      writeFileSync(join(root, 'elsewhere.json'), JSON.stringify({ do_resize: true, size: { height: 8, width: 8 } }));
      symlinkSync(join(root, 'elsewhere.json'), join(model, 'preprocessor_config.json'));
      const loading = preprocessForModel(withConfig({ image_size: 8 }), model);
      await expect(loading).rejects.toThrow(FileFormatError);
      await expect(preprocessForModel(withConfig({ image_size: 8 }), model)).rejects.toThrow(/model\/preprocessor_config\.json: leads outside the folder/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
