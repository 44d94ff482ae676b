/**
 * One architecture of `pnpm bench --arch` (bench/arch/compare.ts), run in a child process of its
 * own so that its peak RSS is its own step's, not the high-water mark of the ViT cases or of the
 * architecture before it (bench/arch/child.ts):
 *   tsx --conditions=source bench/arch/arch-case.ts <arch> <pairs> <quick|full> <torch|no-torch>
 * Progress goes to stderr; the last stdout line is the ArchResult as JSON.
 */
import { initBackend } from '@masksub/core';
import { ARCHS, benchArch } from './compare.js';

const [arch, pairsArg, mode, torchArg] = process.argv.slice(2);
const pairs = Number(pairsArg);
if (!(arch in ARCHS) || !(Number.isInteger(pairs) && pairs >= 1) || !['quick', 'full'].includes(mode) || !['torch', 'no-torch'].includes(torchArg)) {
  throw new Error(`arch-case: usage: <${Object.keys(ARCHS).join('|')}> <pairs> <quick|full> <torch|no-torch>, got ${process.argv.slice(2).join(' ')}`);
}
const info = await initBackend({ prefer: 'wasm', log: () => {} });
if (info.name !== 'wasm') throw new Error(`arch-case: needs the wasm backend, got ${info.name}`);
const result = benchArch(arch, { quick: mode === 'quick', pairs, torch: torchArg === 'torch', log: (m) => process.stderr.write(m) });
console.log(JSON.stringify(result));
