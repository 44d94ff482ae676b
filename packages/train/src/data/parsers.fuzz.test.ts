/**
 * Property tests of the data and run-state parsers (issue 11 case 15): tar/tar.gz, IDX, WebDataset
 * grouping, the checkpoint manifest and the run config. The properties live in
 * data/fuzz-properties.ts; here they run with fixed seeds and bounded runs and an RSS budget;
 * `pnpm fuzz:soak` runs them longer.
 */
import { describe, expect, it } from 'vitest';
import { DATA_FUZZ_PROPERTIES } from '../testing/fuzz-properties.js';

const RSS_BUDGET = 512 * 2 ** 20;

describe('fuzz: data and run-state parsers', () => {
  for (const p of DATA_FUZZ_PROPERTIES) {
    it(p.name, async () => {
      const rss = process.memoryUsage().rss;
      await p.run(p.defaults);
      expect(process.memoryUsage().rss - rss).toBeLessThan(RSS_BUDGET);
    });
  }
});
