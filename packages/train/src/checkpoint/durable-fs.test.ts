/** writeStreamSynced: a file written piece by piece (checkpoint tensor files over 2 GiB are never one buffer). */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { serializeSafetensors, streamSafetensors, type HostTensor } from '@masksub/core';
import { writeStreamSynced } from './durable-fs.js';

describe('writeStreamSynced', () => {
  it("writes what the producer hands over, piece by piece, and returns the producer's result", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'masksub-durable-'));
    try {
      const tensors: HostTensor[] = [
        { name: 'a', dtype: 'float32', shape: [300], data: Float32Array.from({ length: 300 }, (_, i) => i / 7) },
        { name: 'b', dtype: 'int32', shape: [5], data: Int32Array.from([1, -2, 3, -4, 5]) },
      ];
      const pieces: number[] = [];
      const path = join(dir, 'm.safetensors');
      const size = await writeStreamSynced(path, (write) =>
        streamSafetensors(tensors, { format: 'pt' }, path, (b) => {
          pieces.push(b.byteLength);
          write(b);
        }, { chunkBytes: 100 }),
      );
      // header, then the 1200-byte tensor in 100-byte slices, then the 20-byte one
      expect(pieces.slice(1)).toEqual([...new Array(12).fill(100), 20]);
      expect(size).toBe(readFileSync(path).byteLength);
      expect(new Uint8Array(readFileSync(path))).toEqual(serializeSafetensors(tensors));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
