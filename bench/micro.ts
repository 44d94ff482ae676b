/**
 * `pnpm bench:micro`: two kernels outside the step tables, timed alone.
 *   - JPEG decoding of CIFAR-10 batches (../shared/data/cifar10): sharp against the wasm
 *     libjpeg-turbo path decodeImage takes for plain JPEGs; wall and CPU ms per batch, and how many
 *     images came out bit-identical;
 *   - the native AdamW update: ns per element over a 20 M-element parameter.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { Rng } from '@masksub/core';
import { openDataSpec } from '@masksub/train';
import { nativeFused } from '../packages/core/src/backend/native.js';
import { decodePlainJpeg } from '../packages/train/src/data/jpeg-wasm.js';

// sharp is the trainer's dependency, not the workspace root's.
type Sharp = (input: Uint8Array) => { raw(): { toBuffer(): Promise<Buffer> } };
const sharp = createRequire(resolve(import.meta.dirname, '../packages/train/package.json'))('sharp') as Sharp;

const CIFAR = resolve(import.meta.dirname, '../../shared/data/cifar10/train-000000.tar.gz');
const BATCH = 128;
const BATCHES = 10;

async function timed<T>(f: () => Promise<T>): Promise<{ value: T; wallMs: number; cpuMs: number }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const value = await f();
  const c = process.cpuUsage(c0);
  return { value, wallMs: performance.now() - t0, cpuMs: (c.user + c.system) / 1000 };
}

if (!existsSync(CIFAR)) console.log(`decode: skipped (${CIFAR} not found)`);
else {
  const ds = await openDataSpec(`webdataset:${CIFAR}`, { count: false });
  if (ds.kind !== 'stream') throw new Error('expected a streamed shard');
  const files: Uint8Array[] = [];
  for await (const s of ds.samples(new Rng(0), false)) {
    if (s.kind === 'encoded') files.push(s.bytes);
    if (files.length === BATCH * BATCHES) break;
  }
  const viaSharp = async (b: Uint8Array) => new Uint8Array(await sharp(b).raw().toBuffer());
  const viaWasm = async (b: Uint8Array) => (await decodePlainJpeg(b))?.pixels ?? null;
  await Promise.all(files.slice(0, BATCH).map(viaSharp)); // warm-up: sharp's and the wasm module's set-up
  await Promise.all(files.slice(0, BATCH).map(viaWasm));
  const run = (f: (b: Uint8Array) => Promise<Uint8Array | null>) =>
    timed(async () => {
      const out: (Uint8Array | null)[] = [];
      for (let i = 0; i < BATCHES; i++) out.push(...(await Promise.all(files.slice(i * BATCH, (i + 1) * BATCH).map(f))));
      return out;
    });
  const s = await run(viaSharp);
  const w = await run(viaWasm);
  const same = s.value.filter((px, i) => px && w.value[i] && Buffer.from(px).equals(Buffer.from(w.value[i]!))).length;
  const per = (ms: number) => (ms / BATCHES).toFixed(1);
  console.log(`decode, ${BATCHES} batches of ${BATCH} CIFAR-10 JPEGs: sharp ${per(s.wallMs)} ms wall / ${per(s.cpuMs)} ms CPU per batch; wasm ${per(w.wallMs)} / ${per(w.cpuMs)}; ${same} of ${files.length} bit-identical`);
}

const native = nativeFused();
if (!native) console.log('adamw: skipped (native addon not loaded)');
else {
  const n = 20_000_000;
  const rng = new Rng(1);
  const make = () => Float32Array.from({ length: n }, () => rng.normal() * 0.01);
  const [p, g, m] = [make(), make(), make()];
  const v = Float32Array.from(make(), (x) => x * x);
  const out = [new Float32Array(n), new Float32Array(n), new Float32Array(n)];
  const update = () => native.adamwUpdate(p, g, m, v, out[0], out[1], out[2], 0.9, 0.999, 1e-8, 1e-4, 0.01, 0.1, 0.001);
  update();
  const times: number[] = [];
  for (let r = 0; r < 7; r++) {
    const t0 = performance.now();
    update();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  const ns = (ms: number) => ((ms * 1e6) / n).toFixed(2);
  console.log(`adamw, ${n} elements, ${native.threads} threads: median ${ns(times[3])} ns per element (range ${ns(times[0])}-${ns(times[6])}, 7 runs)`);
}
