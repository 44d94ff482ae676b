import os from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { OptionError } from '../errors.js';
import { tf } from '../tf.js';
import { nativeGemm } from './native.js';
import { BACKEND_ENV, initBackend, WASM_THREADS_ENV } from './select.js';

const saved = process.env[BACKEND_ENV];
afterEach(() => {
  if (saved === undefined) delete process.env[BACKEND_ENV];
  else process.env[BACKEND_ENV] = saved;
  delete process.env[WASM_THREADS_ENV];
});

describe('initBackend', () => {
  it('picks wasm by default here (tfjs-node is not installed) and registers the masksub kernels', async () => {
    delete process.env[BACKEND_ENV];
    delete process.env[WASM_THREADS_ENV];
    const logs: string[] = [];
    const info = await initBackend({ log: (m) => logs.push(m) });
    expect(info.name).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    // One XNNPACK thread beside the native addon (its pool has the cores), else one per CPU.
    const threads = nativeGemm() !== null ? 1 : Math.min(os.availableParallelism(), 8);
    expect(info.detail).toMatch(new RegExp(`^wasm simd, ${threads} threads?, `));
    expect((await import('@tensorflow/tfjs-backend-wasm')).getThreadsCount()).toBe(threads);
    expect(tf.getKernel('UnsortedSegmentSum', 'wasm')).toBeDefined();
    expect(tf.getKernel('Conv2DBackpropFilter', 'wasm')).toBeDefined();
    expect(logs).toHaveLength(1);
    expect(logs[0]).toContain('wasm');
    // Idempotent: same answer, no second log line.
    const again = await initBackend({ log: (m) => logs.push(m) });
    expect(again).toBe(info);
    expect(logs).toHaveLength(1);
  });

  it('honours MASKSUB_BACKEND=cpu and switches back for wasm', async () => {
    process.env[BACKEND_ENV] = 'cpu';
    const info = await initBackend({ log: () => {} });
    expect(info.name).toBe('cpu');
    expect(info.reason).toContain(BACKEND_ENV);
    expect(tf.getBackend()).toBe('cpu');
    process.env[BACKEND_ENV] = 'wasm';
    expect((await initBackend({ log: () => {} })).name).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
  });

  it('honours prefer when nothing is forced', async () => {
    delete process.env[BACKEND_ENV];
    expect((await initBackend({ prefer: 'cpu', log: () => {} })).name).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
  });

  it('MASKSUB_BACKEND=tensorflow without tfjs-node is an OptionError naming the variable and what is available', async () => {
    process.env[BACKEND_ENV] = 'tensorflow';
    const err = await initBackend({ log: () => {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OptionError);
    const msg = (err as Error).message;
    expect(msg).toContain(BACKEND_ENV);
    expect(msg).toContain('@tensorflow/tfjs-node');
    expect(msg).toMatch(/available here: wasm, cpu/);
  });

  it('an unknown MASKSUB_BACKEND value is an OptionError listing the valid names', async () => {
    process.env[BACKEND_ENV] = 'webgpu';
    const err = await initBackend({ log: () => {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OptionError);
    expect((err as Error).message).toMatch(/MASKSUB_BACKEND.*unknown backend 'webgpu'.*tensorflow, wasm, cpu/);
  });

  it('a bad MASKSUB_WASM_THREADS is an OptionError naming it', async () => {
    process.env[WASM_THREADS_ENV] = 'many';
    const err = await initBackend({ log: () => {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OptionError);
    expect((err as Error).message).toMatch(/MASKSUB_WASM_THREADS.*integer from 1 to 8.*'many'/);
  });
});
