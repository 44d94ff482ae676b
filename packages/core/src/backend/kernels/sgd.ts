/**
 * One SGD update of one parameter (torch.optim.SGD) as a single kernel on the wasm heap:
 *   d = g + wd p
 *   momentum > 0:  buf' = d on the first step, else momentum buf + (1 - dampening) d
 *                  d = nesterov ? d + momentum buf' : buf'
 *   p' = p - lr d
 * evaluated in float64 and stored as float32.
 *
 * Why a kernel: as tfjs ops the update is 4-7 kernels per parameter, each a full pass over
 * memory, and writes new blocks for p and the momentum buffer at every step. Large tables
 * updated that way leave holes in the heap that the next step's activations may not fit (what
 * AdamW's in-place kernel fixed for BERT-base, see adamw.ts); a ResNet-50 has 25 M parameters.
 * Here p and the buffer are rewritten in their own blocks when no other tensor holds them.
 */
import { heapF32, updateInPlaceOrNew, type KernelCall, type TensorInfo } from '../wasm_heap.js';

export const SGD_UPDATE = 'MasksubSgdUpdate';

export interface SgdUpdateAttrs {
  lr: number;
  weightDecay: number;
  /** 0: no buffer (the kernel takes and returns only the parameter). */
  momentum: number;
  dampening: number;
  nesterov: boolean;
  /** The parameter's first step: the buffer becomes d (torch clones it), whatever it held. */
  firstStep: boolean;
}

/**
 * The update on plain arrays. `buf` / `bufOut` are unused (may be empty) without momentum. Element
 * i of every input is read before element i of an output is written, so outputs may alias inputs.
 */
export function sgdUpdate(p: Float32Array, g: Float32Array, buf: Float32Array, pOut: Float32Array, bufOut: Float32Array, a: SgdUpdateAttrs): void {
  const { lr, weightDecay: wd, momentum, dampening, nesterov, firstStep } = a;
  const keep = 1 - dampening;
  for (let i = 0; i < p.length; i++) {
    const pi = p[i];
    let d = g[i] + wd * pi;
    if (momentum > 0) {
      const b = firstStep ? d : momentum * buf[i] + keep * d;
      bufOut[i] = b;
      d = nesterov ? d + momentum * b : b;
    }
    pOut[i] = pi - lr * d;
  }
}

/**
 * Inputs param, grad (and buf with momentum), float32 of one shape; outputs [param'] or
 * [param', buf']: each the input's own block, updated in place, when only its tensor holds it.
 */
export const sgdUpdateKernel: KernelCall = ({ inputs, backend, attrs }) => {
  const a = attrs as unknown as SgdUpdateAttrs;
  const p = inputs.param as TensorInfo;
  const g = inputs.grad as TensorInfo;
  const buf = a.momentum > 0 ? (inputs.buf as TensorInfo | undefined) : undefined;
  if (a.momentum > 0 && buf === undefined) throw new Error(`${SGD_UPDATE}: momentum ${a.momentum} needs the buf input`);
  const pOut = updateInPlaceOrNew(backend, p);
  const bufOut = buf ? updateInPlaceOrNew(backend, buf) : undefined;
  // Views after the allocations (the heap may have grown).
  const none = new Float32Array(0);
  const [hp, hg, hpo] = [p, g, pOut].map((t) => heapF32(backend, t));
  const hb = buf ? heapF32(backend, buf) : none;
  const hbo = bufOut ? heapF32(backend, bufOut) : none;
  sgdUpdate(hp, hg, hb, hpo, hbo, a);
  return bufOut ? [pOut, bufOut] : [pOut];
};
