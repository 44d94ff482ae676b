/**
 * Convolution backward kernels the wasm backend lacks (tfjs-backend-wasm 4.22):
 *  - Conv2DBackpropFilter (dW of every conv2d: ResNet, patch embeddings, ...), as im2col + an
 *    XNNPACK matmul, so its cost is the same GEMM the forward conv does;
 *  - DepthwiseConv2dNativeBackpropFilter / ...BackpropInput (ConvNeXt, MobileNet), as direct
 *    loops: a depthwise conv has K² multiply-adds per element, so it is memory-bound and a
 *    GEMM would not help.
 * All in NHWC, with NCHW inputs converted on the way in/out.
 */
import { tf } from '../../tf.js';
import {
  allocate,
  heapF32,
  release,
  single,
  transposeInto,
  type KernelCall,
  type TensorInfo,
} from '../wasm_heap.js';

type Conv2DInfo = tf.backend_util.Conv2DInfo;

/** im2col rows are built a chunk of images at a time so the patch matrix stays ~16 MB. */
let im2colChunkElements = 4 * 1024 * 1024;

/** Test hook: a small chunk makes small inputs exercise the multi-chunk accumulation. */
export function setIm2colChunkElements(elements: number): number {
  const previous = im2colChunkElements;
  im2colChunkElements = Math.max(1, Math.floor(elements));
  return previous;
}

/** NCHW -> NHWC copy (JS array; for the rare channels-first case). */
function nchwToNhwc(src: Float32Array, [n, c, h, w]: number[]): Float32Array {
  const dst = new Float32Array(src.length);
  const hw = h * w;
  for (let b = 0; b < n; b++) transposeInto(src, b * c * hw, c, hw, dst, b * c * hw);
  return dst;
}

/**
 * dW[ky, kx, ci, co] = Σ_{n, oy, ox} x[n, oy·sh − top + ky·dh, ox·sw − left + kx·dw, ci] · dy[n, oy, ox, co].
 * Written as dWᵀ = dyᵀ · P with P the im2col patch matrix [rows, fh·fw·ci], computed by `matMul2D`
 * (untransposed [1, M, K] x [1, K, N]).
 */
export function makeConv2DBackpropFilter(matMul2D: KernelCall): KernelCall {
  return ({ inputs, backend, attrs }) => {
    const x = inputs.x as TensorInfo;
    const dy = inputs.dy as TensorInfo;
    const { strides, pad, dataFormat, dimRoundingMode, filterShape } = (attrs ?? {}) as unknown as {
      strides: [number, number] | number;
      pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
      dataFormat: 'NHWC' | 'NCHW';
      dimRoundingMode?: 'floor' | 'round' | 'ceil';
      filterShape: [number, number, number, number];
    };
    const format = tf.backend_util.convertConv2DDataFormat(dataFormat ?? 'NHWC');
    const info: Conv2DInfo = tf.backend_util.computeConv2DInfo(
      x.shape as [number, number, number, number],
      filterShape,
      strides,
      1,
      pad,
      dimRoundingMode,
      false,
      format,
    );
    const channelsLast = info.dataFormat === 'channelsLast';
    // Channels-first data is copied off the heap once; channels-last is read in place.
    const xNhwcCopy = channelsLast ? null : nchwToNhwc(heapF32(backend, x), x.shape);
    const dyNhwcCopy = channelsLast ? null : nchwToNhwc(heapF32(backend, dy), dy.shape);

    const { batchSize, inHeight, inWidth, inChannels: ci, outHeight, outWidth, outChannels: co } = info;
    const { filterHeight: fh, filterWidth: fw, strideHeight: sh, strideWidth: sw } = info;
    const { dilationHeight: dh, dilationWidth: dw } = info;
    const top = info.padInfo.top;
    const left = info.padInfo.left;
    const kk = fh * fw * ci;
    const rowsPerImage = outHeight * outWidth;
    const imagesPerChunk = Math.max(1, Math.floor(im2colChunkElements / Math.max(1, rowsPerImage * kk)));
    const acc = new Float32Array(co * kk); // dWᵀ, accumulated over chunks

    for (let n0 = 0; n0 < batchSize; n0 += imagesPerChunk) {
      const n1 = Math.min(batchSize, n0 + imagesPerChunk);
      const rows = (n1 - n0) * rowsPerImage;
      const patches = allocate(backend, [1, rows, kk], 'float32');
      const dyT = allocate(backend, [1, co, rows], 'float32');
      const xs = xNhwcCopy ?? heapF32(backend, x);
      const dys = dyNhwcCopy ?? heapF32(backend, dy);
      const p = heapF32(backend, patches);
      let r = 0;
      for (let n = n0; n < n1; n++) {
        const xImage = n * inHeight * inWidth * ci;
        for (let oy = 0; oy < outHeight; oy++) {
          for (let ox = 0; ox < outWidth; ox++, r++) {
            let dst = r * kk;
            for (let ky = 0; ky < fh; ky++) {
              const iy = oy * sh - top + ky * dh;
              for (let kx = 0; kx < fw; kx++, dst += ci) {
                const ix = ox * sw - left + kx * dw;
                if (iy < 0 || iy >= inHeight || ix < 0 || ix >= inWidth) {
                  p.fill(0, dst, dst + ci);
                  continue;
                }
                const src = xImage + (iy * inWidth + ix) * ci;
                if (ci >= 16) p.set(xs.subarray(src, src + ci), dst);
                else for (let c = 0; c < ci; c++) p[dst + c] = xs[src + c];
              }
            }
          }
        }
      }
      transposeInto(dys, n0 * rowsPerImage * co, rows, co, heapF32(backend, dyT), 0);
      const part = single(matMul2D({ inputs: { a: dyT, b: patches }, backend, attrs: { transposeA: false, transposeB: false } }));
      const ps = heapF32(backend, part);
      for (let i = 0; i < acc.length; i++) acc[i] += ps[i];
      release(backend, patches, dyT, part);
    }

    const out = allocate(backend, [fh, fw, ci, co], 'float32');
    transposeInto(acc, 0, co, kk, heapF32(backend, out), 0);
    return out;
  };
}

interface DepthwiseAttrs {
  strides: [number, number] | number;
  dilations: [number, number] | number;
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

function depthwiseInfo(inShape: number[], filterShape: number[], a: DepthwiseAttrs): Conv2DInfo {
  return tf.backend_util.computeConv2DInfo(
    inShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    a.strides,
    a.dilations ?? 1,
    a.pad,
    a.dimRoundingMode,
    true,
  );
}

/**
 * Visits every (output pixel, filter tap) pair of a depthwise conv whose input pixel lies inside
 * the image, with the element offsets of that input pixel, output pixel and tap: both backward
 * kernels walk the same taps and differ only in what they accumulate.
 */
function forEachDepthwiseTap(info: Conv2DInfo, visit: (xOff: number, dyOff: number, wOff: number) => void): void {
  const { batchSize, inHeight, inWidth, inChannels: ch, outHeight, outWidth, outChannels } = info;
  const { filterHeight: fh, filterWidth: fw, strideHeight: sh, strideWidth: sw } = info;
  const { dilationHeight: dh, dilationWidth: dw } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  for (let n = 0; n < batchSize; n++) {
    for (let oy = 0; oy < outHeight; oy++) {
      for (let ky = 0; ky < fh; ky++) {
        const iy = oy * sh - top + ky * dh;
        if (iy < 0 || iy >= inHeight) continue;
        for (let ox = 0; ox < outWidth; ox++) {
          const dyOff = ((n * outHeight + oy) * outWidth + ox) * outChannels;
          for (let kx = 0; kx < fw; kx++) {
            const ix = ox * sw - left + kx * dw;
            if (ix < 0 || ix >= inWidth) continue;
            visit(((n * inHeight + iy) * inWidth + ix) * ch, dyOff, (ky * fw + kx) * outChannels);
          }
        }
      }
    }
  }
}

/** dW[ky, kx, c, m] = Σ x[n, iy, ix, c] · dy[n, oy, ox, c·mult + m] (NHWC). */
export const depthwiseConv2dBackpropFilter: KernelCall = ({ inputs, backend, attrs }) => {
  const x = inputs.x as TensorInfo;
  const dy = inputs.dy as TensorInfo;
  const a = (attrs ?? {}) as unknown as DepthwiseAttrs & { filterShape: number[] };
  const info = depthwiseInfo(x.shape, a.filterShape, a);
  const ch = info.inChannels;
  const mult = info.outChannels / ch;
  const acc = new Float64Array(info.filterHeight * info.filterWidth * info.outChannels);
  const xs = heapF32(backend, x);
  const dys = heapF32(backend, dy);
  forEachDepthwiseTap(info, (xOff, dyOff, wOff) => {
    if (mult === 1) {
      for (let c = 0; c < ch; c++) acc[wOff + c] += xs[xOff + c] * dys[dyOff + c];
    } else {
      for (let c = 0; c < ch; c++) {
        const xv = xs[xOff + c];
        for (let m = 0; m < mult; m++) acc[wOff + c * mult + m] += xv * dys[dyOff + c * mult + m];
      }
    }
  });
  const out = allocate(backend, [info.filterHeight, info.filterWidth, ch, mult], 'float32');
  heapF32(backend, out).set(acc);
  return out;
};

/** dx[n, iy, ix, c] = Σ dy[n, oy, ox, c·mult + m] · w[ky, kx, c, m] over taps that reach (iy, ix). */
export const depthwiseConv2dBackpropInput: KernelCall = ({ inputs, backend, attrs }) => {
  const dy = inputs.dy as TensorInfo;
  const filter = inputs.filter as TensorInfo;
  const a = (attrs ?? {}) as unknown as DepthwiseAttrs & { inputShape: number[] };
  const info = depthwiseInfo(a.inputShape, filter.shape, a);
  const ch = info.inChannels;
  const mult = info.outChannels / ch;
  const out = allocate(backend, info.inShape.slice(), 'float32', true);
  const dx = heapF32(backend, out);
  const dys = heapF32(backend, dy);
  const ws = heapF32(backend, filter);
  forEachDepthwiseTap(info, (xOff, dyOff, wOff) => {
    if (mult === 1) {
      for (let c = 0; c < ch; c++) dx[xOff + c] += dys[dyOff + c] * ws[wOff + c];
    } else {
      for (let c = 0; c < ch; c++) {
        let s = 0;
        for (let m = 0; m < mult; m++) s += dys[dyOff + c * mult + m] * ws[wOff + c * mult + m];
        dx[xOff + c] += s;
      }
    }
  });
  return out;
};
