import { describe, expect, it } from 'vitest';
import { tf } from '../tf.js';
import { initBackend } from './select.js';
import { observeAllocations, peakAllocationDuring } from './wasm_heap.js';

describe('peakAllocationDuring', () => {
  it('returns the most tensor bytes a function held at once on the wasm heap, and restores the allocator', async () => {
    const info = await initBackend({ prefer: 'wasm', log: () => {} });
    expect(info.name).toBe('wasm');
    const module = (tf.backend() as unknown as { wasm: { _malloc: unknown; _free: unknown } }).wasm;
    const mib = 2 ** 20;
    const before = tf.zeros([mib / 4]); // alive before: not counted, even when freed inside
    const peak = peakAllocationDuring(() => {
      const a = tf.zeros([mib / 4]); // 1 MiB
      const b = tf.zeros([mib / 2]); // 2 MiB: 3 MiB held here
      a.dispose();
      before.dispose();
      const c = tf.zeros([(3 * mib) / 16]); // 0.75 MiB into 2 MiB: never more than 3 held
      tf.dispose([b, c]);
    });
    expect(peak).toBe(3 * mib);
    const malloc = module._malloc;
    const free = module._free;
    // The allocator comes back even when the function throws; counting does not nest.
    expect(() =>
      peakAllocationDuring(() => {
        expect(() => peakAllocationDuring(() => {})).toThrow(/observeAllocations does not nest/);
        throw new Error('inside');
      }),
    ).toThrow('inside');
    expect(module._malloc).toBe(malloc);
    expect(module._free).toBe(free);
    // ones, the scalar 1 (a tensor too) and the sum, all alive until the tidy ends.
    expect(peakAllocationDuring(() => tf.tidy(() => void tf.add(tf.ones([64]), 1)))).toBe(2 * 64 * 4 + 4);
    // The observer sees each block's pointer and size at allocation and again at its release.
    const events: string[] = [];
    const kept = observeAllocations({ allocated: (p, n) => events.push(`+${p}:${n}`), freed: (p, n) => events.push(`-${p}:${n}`) }, () => {
      tf.zeros([3]).dispose();
      return tf.zeros([5]);
    });
    expect(events).toHaveLength(3);
    expect(events[0]).toMatch(/^\+\d+:12$/);
    expect(events[1]).toBe(events[0].replace('+', '-'));
    expect(events[2]).toMatch(/^\+\d+:20$/);
    kept.dispose();
    expect(events).toHaveLength(3); // freed after observation: not reported
    await tf.setBackend('cpu');
    expect(() => observeAllocations({ allocated: () => {}, freed: () => {} }, () => {})).toThrow(/needs the wasm backend, not 'cpu'/);
  });
});
