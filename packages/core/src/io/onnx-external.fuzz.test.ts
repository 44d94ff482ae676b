/**
 * Fuzzing ONNX external data (issue 11 cases 1 and 15): random and mutated `location`, offset
 * and length — traversal, absolute paths, symlinks out of and inside the folder, directories,
 * NUL bytes, non-numeric offsets — end in a MaskSubError or values read from a regular file
 * inside the model folder; the file beside the folder is never read.
 */
import { describe, expect, it } from 'vitest';
import { MaskSubError } from '../errors.js';
import { parseOnnxWeights } from './onnx.js';
import { onnx } from './onnx-tensor.js';
import { CORE_FUZZ_PROPERTIES, FUZZ_RSS_BUDGET, externalDataFolder } from '../testing/fuzz-properties.js';

describe('fuzz: ONNX external data', () => {
  for (const p of CORE_FUZZ_PROPERTIES.filter((q) => q.name.startsWith('ONNX external data'))) {
    it(p.name, async () => {
      const rss = process.memoryUsage().rss;
      await p.run(p.defaults);
      expect(process.memoryUsage().rss - rss).toBeLessThan(FUZZ_RSS_BUDGET);
    });
  }

  it('the folder the property uses really offers the escapes (the property would catch a read)', () => {
    const folder = externalDataFolder();
    try {
      const model = (location: string) =>
        onnx.ModelProto.encode(
          onnx.ModelProto.create({ irVersion: 8, graph: { name: 'g', initializer: [{ name: 'w', dataType: 1, dims: [4], dataLocation: 1, externalData: [{ key: 'location', value: location }] }] } }),
        ).finish();
      expect(Array.from(parseOnnxWeights(model('link-in'), folder.model).tensors.get('w')!.data as Float32Array)).toEqual([0.5, 1.5, 2.5, 3.5]);
      for (const bad of ['../secret.bin', 'link-out', 'sub']) expect(() => parseOnnxWeights(model(bad), folder.model), bad).toThrow(MaskSubError);
    } finally {
      folder.cleanup();
    }
  });
});
