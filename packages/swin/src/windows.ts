/**
 * Window geometry of Swin as host arrays and rank-4 tensor reshapes: which window size and shift
 * a block uses, the relative position index, the shifted-window attention mask, window partition
 * and its reverse, and the cyclic shift. Kept apart from the model so each piece can be checked
 * on its own against the HF definitions.
 */
import { tf } from '@masksub/core';

/** The window side and cyclic shift of one block at a given resolution. */
export interface WindowPlan {
  window: number;
  shift: number;
}

/**
 * HF SwinLayer.set_shift_and_window_size: blocks alternate between no shift and a shift of half
 * the configured window; when the resolution is not larger than the window, the window shrinks
 * to the smaller side and nothing is shifted (one window covers the whole map).
 */
export function windowPlan(height: number, width: number, configWindow: number, blockIndex: number): WindowPlan {
  const side = Math.min(height, width);
  if (side <= configWindow) return { window: side, shift: 0 };
  return { window: configWindow, shift: blockIndex % 2 === 1 ? Math.floor(configWindow / 2) : 0 };
}

const indexCache = new Map<string, Int32Array>();

/**
 * Row of the relative position bias table for every (query, key) pair of a `window` x `window`
 * window: (dy + W - 1) * (2W - 1) + (dx + W - 1), W the configured window the table was built for.
 * With window == W this is HF's `relative_position_index` buffer exactly; a shrunk window reads
 * the central part of the same table (its offsets are a subset), so pretrained tables keep their meaning.
 */
export function relativePositionIndex(window: number, tableWindow = window): Int32Array {
  if (window > tableWindow) throw new Error(`window ${window} is larger than the table's window ${tableWindow}`);
  const key = `${window}/${tableWindow}`;
  const cached = indexCache.get(key);
  if (cached) return cached;
  const n = window * window;
  const side = 2 * tableWindow - 1;
  const out = new Int32Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const dy = Math.floor(i / window) - Math.floor(j / window);
      const dx = (i % window) - (j % window);
      out[i * n + j] = (dy + tableWindow - 1) * side + (dx + tableWindow - 1);
    }
  }
  indexCache.set(key, out);
  return out;
}

const maskCache = new Map<string, Float32Array>();

/**
 * HF SwinLayer.get_attn_mask for a shifted block on the padded map: after the cyclic shift, a
 * window may hold tokens from up to 4 regions that were not neighbours; pairs from different
 * regions get -100 (softmax weight ~0), others 0. Returns [windows, N, N], windows in row-major order.
 */
export function shiftedWindowMask(heightPad: number, widthPad: number, window: number, shift: number): Float32Array {
  const key = `${heightPad}x${widthPad}/${window}/${shift}`;
  const cached = maskCache.get(key);
  if (cached) return cached;
  // Region id of each position: 3 bands per axis, [0, H-w), [H-w, H-s), [H-s, H).
  const band = (p: number, size: number) => (p < size - window ? 0 : p < size - shift ? 1 : 2);
  const nH = heightPad / window;
  const nW = widthPad / window;
  const n = window * window;
  const out = new Float32Array(nH * nW * n * n);
  const region = new Int32Array(n);
  for (let wy = 0; wy < nH; wy++) {
    for (let wx = 0; wx < nW; wx++) {
      for (let t = 0; t < n; t++) {
        const y = wy * window + Math.floor(t / window);
        const x = wx * window + (t % window);
        region[t] = band(y, heightPad) * 3 + band(x, widthPad);
      }
      const base = (wy * nW + wx) * n * n;
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) out[base + i * n + j] = region[i] === region[j] ? 0 : -100;
    }
  }
  maskCache.set(key, out);
  return out;
}

/**
 * [B, H, W, C] -> [B * H/w * W/w, w*w, C], windows in (b, row, col) order and tokens row-major
 * inside a window (HF window_partition). One rank-4 transpose instead of HF's rank-6 permute:
 * wasm's high-rank transposes are far slower per element.
 */
export function windowPartition(x: tf.Tensor, window: number): tf.Tensor {
  const [b, h, w, c] = x.shape as [number, number, number, number];
  const rows = tf.reshape(x, [b * (h / window), window, w / window, window * c]);
  const grouped = tf.transpose(rows, [0, 2, 1, 3]); // [B*nH, nW, w, w*C]
  return tf.reshape(grouped, [b * (h / window) * (w / window), window * window, c]);
}

/** The inverse of windowPartition: [B * H/w * W/w, w*w, C] -> [B, H, W, C]. */
export function windowReverse(windows: tf.Tensor, window: number, height: number, width: number): tf.Tensor {
  const c = windows.shape[2] as number;
  const nH = height / window;
  const nW = width / window;
  const b = (windows.shape[0] as number) / (nH * nW);
  const grouped = tf.reshape(windows, [b * nH, nW, window, window * c]);
  return tf.reshape(tf.transpose(grouped, [0, 2, 1, 3]), [b, height, width, c]);
}

const shiftedOrderCache = new Map<string, { order: Int32Array; inverse: Int32Array }>();

/**
 * For the rows of [B, H, W, C] flattened to [B*H*W, C]: `order[j]` is the source row of row j of
 * windowPartition(roll2d(x, -shift)), windows in (b, row, col) order and tokens row-major inside
 * each; `inverse` is its inverse permutation (the reverse and roll back).
 */
function shiftedOrder(b: number, h: number, w: number, window: number, shift: number): { order: Int32Array; inverse: Int32Array } {
  const key = `${b}x${h}x${w}/${window}/${shift}`;
  const cached = shiftedOrderCache.get(key);
  if (cached) return cached;
  const order = new Int32Array(b * h * w);
  const inverse = new Int32Array(b * h * w);
  let j = 0;
  for (let bb = 0; bb < b; bb++) {
    for (let wy = 0; wy < h / window; wy++) {
      for (let wx = 0; wx < w / window; wx++) {
        for (let ty = 0; ty < window; ty++) {
          for (let tx = 0; tx < window; tx++, j++) {
            // roll by -shift: position p of the rolled map holds p + shift of the input
            const y = (wy * window + ty + shift) % h;
            const x = (wx * window + tx + shift) % w;
            const src = (bb * h + y) * w + x;
            order[j] = src;
            inverse[src] = j;
          }
        }
      }
    }
  }
  const made = { order, inverse };
  shiftedOrderCache.set(key, made);
  return made;
}

/**
 * windowPartition(roll2d(x, -shift), window) for x [B, H, W, C] (shift > 0), as one row gather:
 * the roll's slices and concats copy the whole map four times and the partition once more, each
 * way. The same values exactly; the gradient is one segment sum.
 */
export function shiftedWindowPartition(x: tf.Tensor, window: number, shift: number): tf.Tensor {
  const [b, h, w, c] = x.shape as [number, number, number, number];
  return tf.tidy(() => {
    const rows = tf.gather(tf.reshape(x, [b * h * w, c]), tf.tensor1d(shiftedOrder(b, h, w, window, shift).order, 'int32'));
    return tf.reshape(rows, [b * (h / window) * (w / window), window * window, c]);
  });
}

/** roll2d(windowReverse(windows, window, height, width), shift): the inverse of {@link shiftedWindowPartition}. */
export function shiftedWindowReverse(windows: tf.Tensor, window: number, height: number, width: number, shift: number): tf.Tensor {
  const c = windows.shape[2] as number;
  const b = (windows.shape[0] as number) / ((height / window) * (width / window));
  return tf.tidy(() => {
    const rows = tf.gather(tf.reshape(windows, [b * height * width, c]), tf.tensor1d(shiftedOrder(b, height, width, window, shift).inverse, 'int32'));
    return tf.reshape(rows, [b, height, width, c]);
  });
}

/**
 * torch.roll(x, shifts=(s, s), dims=(1, 2)) on [B, H, W, C]: two slice + concat pairs. Its
 * gradient is the roll back by -s, written as such: autodiff through the slices and concats
 * would pad each slice's gradient to the full map (four PadV2 of the whole map per roll) and
 * split and add them again.
 */
export function roll2d(x: tf.Tensor, shift: number): tf.Tensor {
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor;
    return { value: rollPlain(input, shift), gradFunc: (dy: tf.Tensor) => [rollPlain(dy, -shift)] };
  });
  return op(x);
}

function rollPlain(x: tf.Tensor, shift: number): tf.Tensor {
  const rollAxis = (t: tf.Tensor, axis: 1 | 2): tf.Tensor => {
    const size = t.shape[axis] as number;
    const s = ((shift % size) + size) % size;
    if (s === 0) return t;
    const begin = (at: number) => (axis === 1 ? [0, at, 0, 0] : [0, 0, at, 0]);
    const extent = (n: number) => (axis === 1 ? [-1, n, -1, -1] : [-1, -1, n, -1]);
    // Rolling right by s: the last s rows come first.
    return tf.concat([tf.slice(t, begin(size - s), extent(s)), tf.slice(t, begin(0), extent(size - s))], axis);
  };
  return rollAxis(rollAxis(x, 1), 2);
}
