/**
 * Zero-copy Identity and same-dtype Cast for the wasm backend.
 *
 * tfjs' wasm Identity (and Cast to the dtype a tensor already has) copies the whole tensor into
 * a fresh buffer. Autodiff emits hundreds of them per training step (gradient pass-through of
 * Add, clones of dy, casts of float32 gradients), ~4% of a ViT step. Tensor data is immutable
 * in tfjs, so sharing the buffer with a reference count — what the cpu backend's Identity and
 * the wasm Reshape already do — gives the same values without the copy.
 */
import type { KernelCall, TensorInfo } from '../wasm_heap.js';

function share(x: TensorInfo, backend: Parameters<KernelCall>[0]['backend']): TensorInfo {
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
}

export function makeSharedIdentity(stock: KernelCall): KernelCall {
  return (args) => {
    const x = args.inputs.x as TensorInfo;
    if (x.dtype === 'string') return stock(args);
    return share(x, args.backend);
  };
}

export function makeSharedCast(stock: KernelCall): KernelCall {
  return (args) => {
    const x = args.inputs.x as TensorInfo;
    const dtype = (args.attrs as { dtype?: string } | undefined)?.dtype;
    if (x.dtype !== dtype || x.dtype === 'string') return stock(args);
    return share(x, args.backend);
  };
}
