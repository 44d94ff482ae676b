/**
 * Property tests of the checkpoint parsers (issue 11 case 15): arbitrary bytes and mutations of a
 * valid file end in a MaskSubError or a valid result — never another exception, a hang or
 * unbounded memory. The properties live in testing/fuzz-properties.ts; here they run with fixed
 * seeds and bounded runs (about a second each); `pnpm fuzz:soak` runs them longer.
 */
import { describe, expect, it } from 'vitest';
import { CORE_FUZZ_PROPERTIES, FUZZ_RSS_BUDGET } from '../testing/fuzz-properties.js';

describe('fuzz: safetensors, ONNX protobuf, .pth', () => {
  for (const p of CORE_FUZZ_PROPERTIES.filter((q) => !q.name.startsWith('ONNX external data'))) {
    it(p.name, async () => {
      const rss = process.memoryUsage().rss;
      await p.run(p.defaults);
      expect(process.memoryUsage().rss - rss).toBeLessThan(FUZZ_RSS_BUDGET);
    });
  }
});
