/**
 * `masksub verify` on every zoo-layouts folder (timm hub ViT, DeiT-III from its official
 * checkpoint.pth and from timm safetensors, torchvision ResNet .pth): all within the default
 * tolerances, through verify's programmatic entry, and once through the CLI; `--arch` errors
 * are exit code 2 naming the option, without a stack trace.
 */
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { formatVerifyReport, loadPretrained, tf, verifyModel } from '@masksub/core';
import '@masksub/vit';
import '@masksub/resnet';
import { describeShared, sharedPath } from '../../../core/src/testing/shared.js';
import { masksub, quiet } from '../../../core/src/testing/parity.js';

const zoo = (rel: string) => sharedPath(join('fixtures/zoo-layouts', rel));

describeShared('fixtures/zoo-layouts', 'masksub verify on the zoo-layouts folders', () => {
  for (const [folder, weights] of [['timm-vit', undefined], ['deit3', undefined], ['deit3', 'checkpoint.pth'], ['resnet-torchvision', undefined]] as const) {
    it(`${folder}${weights ? ` (${weights})` : ''}: all within tolerance`, async () => {
      await tf.setBackend('cpu');
      const { model } = await loadPretrained(zoo(folder), { ...quiet, weights });
      const report = verifyModel(model, zoo(`${folder}/reference.safetensors`));
      const text = formatVerifyReport(report);
      expect(report.rows.length).toBeGreaterThanOrEqual(5);
      expect(text).toMatch(/all within tolerance/);
      model.dispose();
    });
  }

  it("the CLI verifies DeiT-III's official .pth, refuses an unknown --arch with exit 2, and inspect --arch checks a lone .pth", () => {
    const ok = masksub('verify', '--model', zoo('deit3'), '--weights', 'checkpoint.pth', '--reference', zoo('deit3/reference.safetensors'));
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/all within tolerance/);
    const lone = mkdtempSync(join(tmpdir(), 'masksub-lone-'));
    try {
      copyFileSync(zoo('resnet-torchvision/pytorch_model.pth'), join(lone, 'weights.pth'));
      const bad = masksub('verify', '--model', lone, '--reference', zoo('resnet-torchvision/reference.safetensors'), '--arch', 'convnext_tiny');
      expect(bad.status).toBe(2);
      expect(bad.stderr).toMatch(/option 'arch'.*'convnext_tiny'/);
      expect(bad.stderr).not.toMatch(/\n\s+at /);
      // inspect --arch: the file's tensors, then the same loader's verdict on that architecture
      const inspect = masksub('inspect', join(lone, 'weights.pth'), '--arch', 'resnet18');
      expect(inspect.stdout).toMatch(/layer1\.0\.conv1\.weight/);
      expect(inspect.status).toBe(2);
      expect(inspect.stderr).toMatch(/wrong shape: classifier\.1\.weight expected \[10,512\] found \[10,32\]/);
    } finally {
      rmSync(lone, { recursive: true, force: true });
    }
  });
});
