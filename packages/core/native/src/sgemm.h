// Packed, cache-blocked single-precision GEMM for x86-64 AVX2 + FMA (see sgemm_avx2.cc).
#pragma once
#include <cstddef>
#include <functional>

namespace masksub {

struct GemmArgs {
  const float* a;
  const float* b;
  float* out;
  const float* bias;  // optional, n values added to every output row (after the product)
  bool relu;          // max(0, x) after the bias
  long batch, m, k, n;
  bool trans_a, trans_b;
  long a_batch_stride, b_batch_stride;  // in floats; 0 broadcasts one operand over the batch
  bool accumulate;    // out += product instead of out = product (the bias/relu epilogue must be off)
};

// out[i] = op(a[i]) @ op(b[i]) (+ bias, relu) for i < batch, row-major, out contiguous.
// Uses up to `threads` threads (the caller's plus a persistent worker pool).
void sgemm(const GemmArgs& args, int threads);

// Runs body(begin, end) over [0, n) split into up to `threads` contiguous ranges on the GEMM's
// persistent pool (the calling thread takes the first); runs inline when n < min_per_thread * 2.
void parallel_for(long n, long min_per_thread, int threads, const std::function<void(long, long)>& body);

}  // namespace masksub
