/** Backend selection and masksub's wasm kernels. */
export { activateBackend, initBackend, BACKEND_ENV, BACKEND_NAMES, type BackendInfo, type BackendName, type InitBackendOptions } from './select.js';
export { registerWasmKernels, restoreStockMatMul, type WasmKernelRegistration } from './wasm_kernels.js';
export { ADAMW_UPDATE, type AdamWUpdateAttrs } from './kernels/adamw.js';
export { SGD_UPDATE, type SgdUpdateAttrs } from './kernels/sgd.js';
export { LAMB_UPDATE, type LambUpdateAttrs } from './kernels/lamb.js';
export { observeAllocations, peakAllocationDuring, type AllocationObserver } from './wasm_heap.js';
