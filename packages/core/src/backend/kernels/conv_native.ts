/**
 * Conv2D, Conv2DBackpropInput and Conv2DBackpropFilter on the wasm backend through masksub's
 * native addon (native/src/conv_avx2.cc: im2col + the packed AVX2 GEMM, threaded over images).
 *
 * Why: XNNPACK's wasm convolution runs ResNet's shapes at ~10 GFLOP/s and tfjs-wasm has no filter
 * gradient; together the three were 60 % of a ResNet-20 training step. The native GEMM runs at
 * 100+ GFLOP/s on the same shapes.
 *
 * Each wrapper takes the native path for NHWC float32 convolutions when the addon (with its conv
 * kernels) is loaded and enabled, and otherwise calls the kernel it wraps (stock XNNPACK, or
 * masksub's wasm fallbacks in conv_backprop*.ts) — so the choice lives here, not in model code.
 */
import { tf } from '../../tf.js';
import { nativeConv } from '../native.js';
import { allocate, heapF32, type KernelCall, type TensorInfo } from '../wasm_heap.js';

type Conv2DInfo = tf.backend_util.Conv2DInfo;
type Pad = 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;

interface ConvAttrs {
  strides: [number, number] | number;
  pad: Pad;
  dataFormat?: 'NHWC' | 'NCHW';
  dilations?: [number, number] | number;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

/** The addon's dims array for a conv: see NativeGemmAddon.conv2dForward. */
export function convDims(info: Conv2DInfo): number[] {
  return [
    info.batchSize,
    info.inHeight,
    info.inWidth,
    info.inChannels,
    info.outHeight,
    info.outWidth,
    info.outChannels,
    info.filterHeight,
    info.filterWidth,
    info.strideHeight,
    info.strideWidth,
    info.dilationHeight,
    info.dilationWidth,
    info.padInfo.top,
    info.padInfo.left,
  ];
}

function nativeInfo(inShape: number[], filterShape: number[], a: ConvAttrs): Conv2DInfo | null {
  if ((a.dataFormat ?? 'NHWC') !== 'NHWC') return null;
  return tf.backend_util.computeConv2DInfo(
    inShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    a.strides,
    a.dilations ?? 1,
    a.pad,
    a.dimRoundingMode,
    false,
    'channelsLast',
  );
}

const isF32 = (...ts: TensorInfo[]) => ts.every((t) => t.dtype === 'float32');

/** Conv2D: native when possible, else `fallback` (the stock XNNPACK kernel). */
export function makeNativeConv2D(fallback: KernelCall): KernelCall {
  return (args) => {
    const native = nativeConv();
    const x = args.inputs.x as TensorInfo;
    const filter = args.inputs.filter as TensorInfo;
    const info = native && isF32(x, filter) ? nativeInfo(x.shape, filter.shape, args.attrs as unknown as ConvAttrs) : null;
    if (native === null || info === null) return fallback(args);
    const { backend } = args;
    const y = allocate(backend, info.outShape.slice(), 'float32');
    native.conv2dForward(heapF32(backend, x), heapF32(backend, filter), heapF32(backend, y), convDims(info));
    return y;
  };
}

/** Conv2DBackpropInput: native when possible, else `fallback`. */
export function makeNativeConv2DBackpropInput(fallback: KernelCall): KernelCall {
  return (args) => {
    const native = nativeConv();
    const dy = args.inputs.dy as TensorInfo;
    const filter = args.inputs.filter as TensorInfo;
    const attrs = args.attrs as unknown as ConvAttrs & { inputShape: number[] };
    const info = native && isF32(dy, filter) ? nativeInfo(attrs.inputShape, filter.shape, attrs) : null;
    if (native === null || info === null) return fallback(args);
    const { backend } = args;
    const dx = allocate(backend, info.inShape.slice(), 'float32');
    native.conv2dBackpropInput(heapF32(backend, dy), heapF32(backend, filter), heapF32(backend, dx), convDims(info));
    return dx;
  };
}

/** Conv2DBackpropFilter: native when possible, else `fallback`. */
export function makeNativeConv2DBackpropFilter(fallback: KernelCall): KernelCall {
  return (args) => {
    const native = nativeConv();
    const x = args.inputs.x as TensorInfo;
    const dy = args.inputs.dy as TensorInfo;
    const attrs = args.attrs as unknown as ConvAttrs & { filterShape: number[] };
    const info = native && isF32(x, dy) ? nativeInfo(x.shape, attrs.filterShape, attrs) : null;
    if (native === null || info === null) return fallback(args);
    const { backend } = args;
    const dw = allocate(backend, attrs.filterShape.slice(), 'float32');
    native.conv2dBackpropFilter(heapF32(backend, x), heapF32(backend, dy), heapF32(backend, dw), convDims(info));
    return dw;
  };
}
