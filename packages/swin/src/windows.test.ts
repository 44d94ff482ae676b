/** Swin's window geometry against element-by-element versions of the HF definitions. */
import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '@masksub/core';
import { relativePositionIndex, roll2d, shiftedWindowMask, shiftedWindowPartition, shiftedWindowReverse, windowPartition, windowPlan, windowReverse } from './index.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

/** x[b, y, x, c] of a [B, H, W, C] array. */
function at(data: ArrayLike<number>, shape: number[], b: number, y: number, x: number, c: number): number {
  const [, h, w, ch] = shape;
  return data[((b * h + y) * w + x) * ch + c];
}

describe('window plan (HF set_shift_and_window_size)', () => {
  it('alternates shift 0 / window//2, and shrinks the window without shift when the map is not larger', () => {
    expect(windowPlan(56, 56, 7, 0)).toEqual({ window: 7, shift: 0 });
    expect(windowPlan(56, 56, 7, 1)).toEqual({ window: 7, shift: 3 });
    expect(windowPlan(8, 8, 4, 1)).toEqual({ window: 4, shift: 2 });
    // swin-tiny-224's last stage: 7x7 map, window 7: one window, no shift.
    expect(windowPlan(7, 7, 7, 1)).toEqual({ window: 7, shift: 0 });
    expect(windowPlan(4, 6, 7, 1)).toEqual({ window: 4, shift: 0 });
  });
});

describe('relative position index', () => {
  it('is HF relative_position_index for the configured window', () => {
    const w = 3;
    const idx = relativePositionIndex(w);
    // HF: coords (y, x) of each token; relative = coords_i - coords_j + (w-1); index = rel_y * (2w-1) + rel_x.
    const coords = Array.from({ length: w * w }, (_, t) => [Math.floor(t / w), t % w]);
    for (let i = 0; i < w * w; i++) {
      for (let j = 0; j < w * w; j++) {
        const ry = coords[i][0] - coords[j][0] + w - 1;
        const rx = coords[i][1] - coords[j][1] + w - 1;
        expect(idx[i * w * w + j]).toBe(ry * (2 * w - 1) + rx);
      }
    }
    expect(Math.max(...idx)).toBe((2 * w - 1) ** 2 - 1);
  });

  it('a shrunk window reads the same offsets from the configured table', () => {
    const small = relativePositionIndex(2, 4);
    const side = 7;
    // (dy, dx) = (0, 0) is the table centre; token 0 vs token 3 of a 2x2 window is (-1, -1).
    expect(small[0]).toBe(3 * side + 3);
    expect(small[0 * 4 + 3]).toBe(2 * side + 2);
    expect(small[3 * 4 + 0]).toBe(4 * side + 4);
    expect(() => relativePositionIndex(5, 4)).toThrow(/larger/);
  });
});

describe('shifted-window attention mask', () => {
  it('matches HF get_attn_mask: region labels by slices, window partition, -100 across regions', () => {
    for (const [h, w, win, s] of [[8, 8, 4, 2], [12, 8, 4, 2], [14, 14, 7, 3]]) {
      const label = new Int32Array(h * w);
      const slices = (n: number) => [[0, n - win], [n - win, n - s], [n - s, n]];
      let count = 0;
      for (const [y0, y1] of slices(h)) {
        for (const [x0, x1] of slices(w)) {
          for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) label[y * w + x] = count;
          count++;
        }
      }
      const mask = shiftedWindowMask(h, w, win, s);
      const n = win * win;
      const nW = w / win;
      expect(mask.length).toBe((h / win) * nW * n * n);
      for (let k = 0; k < (h / win) * nW; k++) {
        const tokenLabel = (t: number) => label[(Math.floor(k / nW) * win + Math.floor(t / win)) * w + (k % nW) * win + (t % win)];
        for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) expect(mask[(k * n + i) * n + j]).toBe(tokenLabel(i) === tokenLabel(j) ? 0 : -100);
      }
      // Shifted maps have windows that mix regions; the top-left window never does.
      expect(mask.some((v) => v === -100)).toBe(true);
      expect(mask.subarray(0, n * n).every((v) => v === 0)).toBe(true);
    }
  });
});

describe('window partition, reverse and cyclic shift', () => {
  const shape = [2, 8, 12, 3];
  const x = tf.tensor4d(Float32Array.from({ length: 2 * 8 * 12 * 3 }, (_, i) => i), shape as [number, number, number, number]);

  it('partition orders windows row-major per image and tokens row-major per window; reverse inverts it', () => {
    const win = 4;
    const windows = windowPartition(x, win);
    expect(windows.shape).toEqual([2 * 2 * 3, 16, 3]);
    const wd = windows.dataSync();
    const xd = x.dataSync();
    for (let b = 0; b < 2; b++) {
      for (let wy = 0; wy < 2; wy++) {
        for (let wx = 0; wx < 3; wx++) {
          const k = (b * 2 + wy) * 3 + wx;
          for (let t = 0; t < 16; t++) {
            for (let c = 0; c < 3; c++) expect(wd[(k * 16 + t) * 3 + c]).toBe(at(xd, shape, b, wy * win + Math.floor(t / win), wx * win + (t % win), c));
          }
        }
      }
    }
    const back = windowReverse(windows, win, 8, 12);
    expect(Array.from(back.dataSync())).toEqual(Array.from(xd));
    tf.dispose([windows, back]);
  });

  it('roll2d back-propagates as the reverse roll, without padding the map', async () => {
    for (const s of [-2, 3]) {
      const weights = tf.randomNormal(shape, 0, 1, 'float32', 7);
      const grad = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(roll2d(t, s), weights)));
      let dx: tf.Tensor | null = null;
      const info = await tf.profile(() => {
        dx = grad(x);
        return dx;
      });
      // d/dx sum(roll(x, s) * w) = roll(w, -s)
      const expected = roll2d(weights, -s);
      expect(Array.from(dx!.dataSync())).toEqual(Array.from(expected.dataSync()));
      // Autodiff through the slices would pad each slice's gradient to the whole map.
      expect(info.kernelNames).not.toContain('PadV2');
      tf.dispose([weights, dx!, expected]);
    }
  });

  it('the shifted partition and reverse are roll + partition and reverse + roll exactly, forward and gradient', () => {
    for (const [win, s] of [[4, 2], [2, 1]] as const) {
      const expected = windowPartition(roll2d(x, -s), win);
      const windows = shiftedWindowPartition(x, win, s);
      expect(windows.shape).toEqual(expected.shape);
      expect(Array.from(windows.dataSync())).toEqual(Array.from(expected.dataSync()));
      const back = shiftedWindowReverse(windows, win, 8, 12, s);
      expect(Array.from(back.dataSync())).toEqual(Array.from(roll2d(windowReverse(windows, win, 8, 12), s).dataSync()));
      expect(Array.from(back.dataSync())).toEqual(Array.from(x.dataSync()));
      // Gradients: through a weighted sum of the windows, and of the map put back.
      const wWin = tf.randomNormal(expected.shape, 0, 1, 'float32', 3);
      const wMap = tf.randomNormal(shape, 0, 1, 'float32', 4);
      const viaGather = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(shiftedWindowReverse(tf.mul(shiftedWindowPartition(t, win, s), wWin), win, 8, 12, s), wMap)));
      const viaRoll = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(roll2d(windowReverse(tf.mul(windowPartition(roll2d(t, -s), win), wWin), win, 8, 12), s), wMap)));
      const [g1, g2] = [viaGather(x), viaRoll(x)];
      expect(Array.from(g1.dataSync())).toEqual(Array.from(g2.dataSync()));
      tf.dispose([expected, windows, back, wWin, wMap, g1, g2]);
    }
  });

  it('roll2d is torch.roll over H and W, both directions', () => {
    const xd = x.dataSync();
    for (const s of [-2, 3]) {
      const rolled = roll2d(x, s);
      const rd = rolled.dataSync();
      for (let y = 0; y < 8; y++) {
        for (let xx = 0; xx < 12; xx++) {
          // torch.roll: out[i] = in[(i - shift) mod n]
          const sy = (((y - s) % 8) + 8) % 8;
          const sx = (((xx - s) % 12) + 12) % 12;
          expect(at(rd, shape, 1, y, xx, 2)).toBe(at(xd, shape, 1, sy, sx, 2));
        }
      }
      rolled.dispose();
    }
  });
});
