// NHWC convolution as im2col + the packed GEMM of sgemm_avx2.cc.
//
// Why: tfjs' wasm Conv2D (XNNPACK) reaches ~10 GFLOP/s on ResNet shapes and has no filter
// gradient at all; the GEMM here runs at 140+ GFLOP/s. Each thread takes whole images, builds
// their patch matrix (rows = output pixels, cols = kh*kw*ci) in a thread-local buffer and runs a
// single-threaded GEMM on it, so patch building is threaded too and no two threads write the
// same output. 1x1 stride-1 unpadded convolutions skip the patch matrix (x already is one).
//
// Compiled with -mavx2 -mfma in the GEMM's static library: binding.cc checks the CPU first.
#include "conv.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "sgemm.h"

namespace masksub {
namespace {

// Patch-matrix floats per block of output pixels: the block (rows x kh*kw*ci) stays in L2
// between being built and being packed by the GEMM. Writing a whole image's patch matrix first
// and reading it back from DRAM made the convolution memory-bound at ResNet's 16 channels.
long g_chunk_floats = 96L << 10;

thread_local std::vector<float> tls_cols;

float* cols_buffer(long floats) {
  if (static_cast<long>(tls_cols.size()) < floats) tls_cols.resize(static_cast<size_t>(floats));
  return tls_cols.data();
}

long patch_cols(const ConvShape& s) { return s.k_h * s.k_w * s.in_c; }
long rows_per_image(const ConvShape& s) { return s.out_h * s.out_w; }

bool is_pointwise(const ConvShape& s) {
  return s.k_h == 1 && s.k_w == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_top == 0 && s.pad_left == 0 &&
         s.out_h == s.in_h && s.out_w == s.in_w;
}

// Output pixels per block: a multiple of the GEMM's 6-row strips, at least 48.
long block_rows(const ConvShape& s) {
  const long rows = std::max(48L, g_chunk_floats / std::max(1L, patch_cols(s)));
  return std::max(6L, rows / 6 * 6);
}

// cols[r - r0, (ky*kw + kx)*ci + c] for the output pixels r in [r0, r1) of the whole batch
// (r = (n*oh + oy)*ow + ox), zero where the tap falls into padding.
void im2col(const float* x, const ConvShape& s, long r0, long r1, float* cols) {
  const long ci = s.in_c, kk = patch_cols(s), per_image = rows_per_image(s);
  float* dst = cols;
  for (long r = r0; r < r1; r++, dst += kk) {
    const long n = r / per_image, pix = r % per_image, oy = pix / s.out_w, ox = pix % s.out_w;
    const float* image = x + n * s.in_h * s.in_w * ci;
    float* d = dst;
    for (long ky = 0; ky < s.k_h; ky++) {
      const long iy = oy * s.stride_h - s.pad_top + ky * s.dilation_h;
      if (iy < 0 || iy >= s.in_h) {
        std::memset(d, 0, sizeof(float) * s.k_w * ci);
        d += s.k_w * ci;
        continue;
      }
      const float* row = image + iy * s.in_w * ci;
      const long ix0 = ox * s.stride_w - s.pad_left;
      if (s.dilation_w == 1 && ix0 >= 0 && ix0 + s.k_w <= s.in_w) {
        // The kw taps of one row are contiguous in NHWC.
        std::memcpy(d, row + ix0 * ci, sizeof(float) * s.k_w * ci);
        d += s.k_w * ci;
        continue;
      }
      for (long kx = 0; kx < s.k_w; kx++, d += ci) {
        const long ix = ix0 + kx * s.dilation_w;
        if (ix < 0 || ix >= s.in_w) std::memset(d, 0, sizeof(float) * ci);
        else std::memcpy(d, row + ix * ci, sizeof(float) * ci);
      }
    }
  }
}

// The adjoint of im2col: dx += scatter of cols for the output pixels [r0, r1).
void col2im(const float* cols, const ConvShape& s, long r0, long r1, float* dx) {
  const long ci = s.in_c, kk = patch_cols(s), per_image = rows_per_image(s);
  const float* src = cols;
  for (long r = r0; r < r1; r++, src += kk) {
    const long n = r / per_image, pix = r % per_image, oy = pix / s.out_w, ox = pix % s.out_w;
    float* image = dx + n * s.in_h * s.in_w * ci;
    const float* p = src;
    for (long ky = 0; ky < s.k_h; ky++) {
      const long iy = oy * s.stride_h - s.pad_top + ky * s.dilation_h;
      if (iy < 0 || iy >= s.in_h) {
        p += s.k_w * ci;
        continue;
      }
      float* row = image + iy * s.in_w * ci;
      for (long kx = 0; kx < s.k_w; kx++, p += ci) {
        const long ix = ox * s.stride_w - s.pad_left + kx * s.dilation_w;
        if (ix < 0 || ix >= s.in_w) continue;
        float* d = row + ix * ci;
        for (long c = 0; c < ci; c++) d[c] += p[c];
      }
    }
  }
}

GemmArgs gemm(const float* a, const float* b, float* out, long m, long k, long n, bool trans_a, bool trans_b,
              bool accumulate = false) {
  GemmArgs g{};
  g.a = a;
  g.b = b;
  g.out = out;
  g.batch = 1;
  g.m = m;
  g.k = k;
  g.n = n;
  g.trans_a = trans_a;
  g.trans_b = trans_b;
  g.accumulate = accumulate;
  return g;
}

// Runs body(r0, r1, part, gemm_threads) over blocks of output pixels: the batch's images are
// split into `parts` contiguous ranges (one per thread; whole images, so col2im's scatter never
// crosses threads), each walked in blocks of block_rows(s) pixels with a single-threaded GEMM.
// With one image (or one thread) the blocks run on the caller with a threaded GEMM.
template <typename Body>
int over_blocks(const ConvShape& s, int threads, Body body) {
  const long per_image = rows_per_image(s), step = block_rows(s);
  const int parts = static_cast<int>(std::max(1L, std::min<long>(threads, s.batch)));
  const int gemm_threads = parts == 1 ? threads : 1;
  parallel_for(parts, 1, parts, [&](long p0, long p1) {
    for (long p = p0; p < p1; p++) {
      const long begin = s.batch * p / parts * per_image, end = s.batch * (p + 1) / parts * per_image;
      for (long r0 = begin; r0 < end; r0 += step) body(r0, std::min(end, r0 + step), static_cast<int>(p), gemm_threads);
    }
  });
  return parts;
}

}  // namespace

long set_conv_chunk_floats(long floats) {
  const long previous = g_chunk_floats;
  g_chunk_floats = std::max(1L, floats);
  return previous;
}

void conv2d_forward(const float* x, const float* w, float* y, const ConvShape& s, int threads) {
  const long kk = patch_cols(s), rows = rows_per_image(s);
  if (s.batch <= 0 || rows <= 0 || s.out_c <= 0) return;
  if (is_pointwise(s)) {
    sgemm(gemm(x, w, y, s.batch * rows, kk, s.out_c, false, false), threads);
    return;
  }
  over_blocks(s, threads, [&](long r0, long r1, int, int gt) {
    float* cols = cols_buffer((r1 - r0) * kk);
    im2col(x, s, r0, r1, cols);
    sgemm(gemm(cols, w, y + r0 * s.out_c, r1 - r0, kk, s.out_c, false, false), gt);
  });
}

void conv2d_backprop_input(const float* dy, const float* w, float* dx, const ConvShape& s, int threads) {
  const long kk = patch_cols(s), rows = rows_per_image(s);
  const long in_size = s.in_h * s.in_w * s.in_c;
  if (s.batch <= 0) return;
  if (is_pointwise(s)) {
    // dx = dy W^T: W is [ci, co] row-major, so op(B) = transpose.
    sgemm(gemm(dy, w, dx, s.batch * rows, s.out_c, kk, false, true), threads);
    return;
  }
  if (rows <= 0) {
    std::memset(dx, 0, sizeof(float) * s.batch * in_size);
    return;
  }
  over_blocks(s, threads, [&](long r0, long r1, int, int gt) {
    // Zero each image of this thread's range when its first block arrives.
    for (long n = (r0 + rows - 1) / rows; n * rows < r1; n++) std::memset(dx + n * in_size, 0, sizeof(float) * in_size);
    float* cols = cols_buffer((r1 - r0) * kk);
    sgemm(gemm(dy + r0 * s.out_c, w, cols, r1 - r0, s.out_c, kk, false, true), gt);
    col2im(cols, s, r0, r1, dx);
  });
}

void conv2d_backprop_filter(const float* x, const float* dy, float* dw, const ConvShape& s, int threads) {
  const long kk = patch_cols(s), rows = rows_per_image(s), co = s.out_c;
  const long size = kk * co;
  std::memset(dw, 0, sizeof(float) * size);
  if (s.batch <= 0 || rows <= 0) return;
  if (is_pointwise(s)) {
    // dW = x^T dy over all pixels: one GEMM with k = every pixel of the batch.
    sgemm(gemm(x, dy, dw, kk, s.batch * rows, co, true, false), threads);
    return;
  }
  const int max_parts = static_cast<int>(std::max(1L, std::min<long>(threads, s.batch)));
  // A private accumulator per range, summed in a fixed order at the end (deterministic for a
  // given thread count). The GEMM accumulates cols^T dy of each block into it directly.
  std::vector<float> partial(static_cast<size_t>(max_parts) * size, 0.f);
  const int parts = over_blocks(s, threads, [&](long r0, long r1, int part, int gt) {
    float* acc = partial.data() + static_cast<size_t>(part) * size;
    float* cols = cols_buffer((r1 - r0) * kk);
    im2col(x, s, r0, r1, cols);
    sgemm(gemm(cols, dy + r0 * co, acc, kk, r1 - r0, co, true, false, true), gt);
  });
  for (int p = 0; p < parts; p++) {
    const float* acc = partial.data() + static_cast<size_t>(p) * size;
    for (long i = 0; i < size; i++) dw[i] += acc[i];
  }
}

}  // namespace masksub
