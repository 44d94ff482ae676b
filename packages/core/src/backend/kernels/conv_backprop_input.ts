/**
 * Conv2DBackpropInput (dx of every conv2d) on the wasm backend as a forward convolution.
 *
 * The stock wasm kernel is a direct scalar loop: 2.3 of 3.7 s of a ResNet-20 MaskSub step at
 * batch 32. The input gradient of a convolution is itself a convolution — of dy, dilated by the
 * stride, with the filter rotated 180° and its in/out channels swapped — which XNNPACK's
 * threaded SIMD Conv2D computes as fast as the forward pass:
 *   dx[iy] = Σ_{oy, ky : oy·s − pt + ky = iy} dy[oy] W[ky]
 *          = Σ_j D[iy − (kh − 1 − pt) + j] W[kh − 1 − j],   D[oy·s] = dy[oy], 0 elsewhere.
 * Cases this does not cover (NCHW, dilated filters, pads beyond the kernel) go to the stock kernel.
 */
import { tf } from '../../tf.js';
import { allocate, heapF32, release, single, type KernelCall, type TensorInfo } from '../wasm_heap.js';

interface Conv2DBackpropInputAttrs {
  strides: [number, number] | number;
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dataFormat?: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  inputShape: [number, number, number, number];
}

/** W'[ky, kx, co, ci] = W[kh-1-ky, kw-1-kx, ci, co]: the filter of the transposed convolution. */
export function rotateFilter(w: Float32Array, [kh, kw, ci, co]: readonly number[], out: Float32Array): void {
  for (let ky = 0; ky < kh; ky++) {
    for (let kx = 0; kx < kw; kx++) {
      const src = ((kh - 1 - ky) * kw + (kw - 1 - kx)) * ci * co;
      const dst = (ky * kw + kx) * co * ci;
      for (let i = 0; i < ci; i++) for (let o = 0; o < co; o++) out[dst + o * ci + i] = w[src + i * co + o];
    }
  }
}

/** dy [B, oh, ow, C] spread onto a zeroed [B, (oh-1)sh+1, (ow-1)sw+1, C] grid (stride dilation). */
function dilateInto(dy: Float32Array, [b, oh, ow, c]: readonly number[], sh: number, sw: number, out: Float32Array): void {
  const dh = (oh - 1) * sh + 1;
  const dw = (ow - 1) * sw + 1;
  for (let n = 0; n < b; n++) {
    for (let y = 0; y < oh; y++) {
      for (let x = 0; x < ow; x++) {
        const src = ((n * oh + y) * ow + x) * c;
        out.set(dy.subarray(src, src + c), ((n * dh + y * sh) * dw + x * sw) * c);
      }
    }
  }
}

export function makeConv2DBackpropInput(stock: KernelCall, conv2d: KernelCall): KernelCall {
  return (args) => {
    const dy = args.inputs.dy as TensorInfo;
    const filter = args.inputs.filter as TensorInfo;
    const attrs = args.attrs as unknown as Conv2DBackpropInputAttrs;
    if ((attrs.dataFormat ?? 'NHWC') !== 'NHWC' || dy.dtype !== 'float32' || filter.dtype !== 'float32') return stock(args);
    const info = tf.backend_util.computeConv2DInfo(
      attrs.inputShape,
      filter.shape as [number, number, number, number],
      attrs.strides,
      1,
      attrs.pad,
      attrs.dimRoundingMode,
      false,
      'channelsLast',
    );
    const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw, outHeight, outWidth } = info;
    const top = kh - 1 - info.padInfo.top;
    const left = kw - 1 - info.padInfo.left;
    const dilatedH = (outHeight - 1) * sh + 1;
    const dilatedW = (outWidth - 1) * sw + 1;
    // Whatever makes the output exactly inputShape: rows the forward conv's stride skipped at the
    // end come out as zero padding here.
    const bottom = info.inHeight + kh - 1 - top - dilatedH;
    const right = info.inWidth + kw - 1 - left - dilatedW;
    if (top < 0 || left < 0 || bottom < 0 || right < 0) return stock(args);
    const { backend } = args;
    const rotated = allocate(backend, [kh, kw, info.outChannels, info.inChannels], 'float32');
    const strided = sh > 1 || sw > 1;
    const spread = strided ? allocate(backend, [info.batchSize, dilatedH, dilatedW, info.outChannels], 'float32', true) : dy;
    // Views after the last allocation (the heap may have grown).
    rotateFilter(heapF32(backend, filter), filter.shape, heapF32(backend, rotated));
    if (strided) dilateInto(heapF32(backend, dy), dy.shape, sh, sw, heapF32(backend, spread));
    try {
      return single(
        conv2d({
          inputs: { x: spread, filter: rotated },
          backend,
          attrs: { strides: [1, 1], dilations: [1, 1], pad: [[0, 0], [top, bottom], [left, right], [0, 0]], dataFormat: 'NHWC' } as unknown as tf.NamedAttrMap,
        }),
      );
    } finally {
      release(backend, rotated, ...(strided ? [spread] : []));
    }
  };
}
