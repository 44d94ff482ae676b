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

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "sgemm.h"
#include "tile_avx2.h"

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


// ---------------------------------------------------------------------------------------------
// Direct (implicit-im2col) convolution for dilation 1: no patch matrix and no packed A.
//
// Why: with ResNet's 16-64 channels the GEMM's n (= output channels) is 1-4 strips of 16, so
// building the patch matrix and then packing it into the GEMM's 6-row panels cost as much as the
// multiply itself. For dilation 1 the kw taps of one patch row are kw*ci contiguous floats of
// x (NHWC), so the micro-kernel reads its 6 output pixels' patches straight from x through
// kh pointers each ("segments"); only pixels whose window crosses the left/right edge get a
// small zero-padded copy, and rows above/below the image point at a zero segment.

// Output channels per strip: the tile's 16 columns (tile_avx2.h).
constexpr long kStrip = kTileCols;

// C[0:mr, 0:nr] = sum_s sum_p a[r * nseg + s][p] * bp[(s * seg + p) * 16 + j]: 6 output pixels
// times one 16-column strip of packed weights. Rows r >= mr point at valid memory (ignored).
void direct_kernel_6x16(long nseg, long seg, const float* const* a, const float* __restrict bp, float* c, long ldc, long mr, long nr) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (long sg = 0; sg < nseg; sg++) {
    const float* __restrict a0 = a[0 * nseg + sg];
    const float* __restrict a1 = a[1 * nseg + sg];
    const float* __restrict a2 = a[2 * nseg + sg];
    const float* __restrict a3 = a[3 * nseg + sg];
    const float* __restrict a4 = a[4 * nseg + sg];
    const float* __restrict a5 = a[5 * nseg + sg];
    for (long p = 0; p < seg; p++) {
      const __m256 b0 = _mm256_loadu_ps(bp);
      const __m256 b1 = _mm256_loadu_ps(bp + 8);
      __m256 v;
      v = _mm256_broadcast_ss(a0 + p); c00 = _mm256_fmadd_ps(v, b0, c00); c01 = _mm256_fmadd_ps(v, b1, c01);
      v = _mm256_broadcast_ss(a1 + p); c10 = _mm256_fmadd_ps(v, b0, c10); c11 = _mm256_fmadd_ps(v, b1, c11);
      v = _mm256_broadcast_ss(a2 + p); c20 = _mm256_fmadd_ps(v, b0, c20); c21 = _mm256_fmadd_ps(v, b1, c21);
      v = _mm256_broadcast_ss(a3 + p); c30 = _mm256_fmadd_ps(v, b0, c30); c31 = _mm256_fmadd_ps(v, b1, c31);
      v = _mm256_broadcast_ss(a4 + p); c40 = _mm256_fmadd_ps(v, b0, c40); c41 = _mm256_fmadd_ps(v, b1, c41);
      v = _mm256_broadcast_ss(a5 + p); c50 = _mm256_fmadd_ps(v, b0, c50); c51 = _mm256_fmadd_ps(v, b1, c51);
      bp += kStrip;
    }
  }
  const __m256 acc[kTileRows][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  store_tile(acc, c, ldc, mr, nr, false);
}

// Weights as 16-column strips: strip j holds rows [0, kk) of columns [16j, 16j + 16), zero padded.
// `at(row, col)` reads the (kk x cols) weight matrix in whatever layout the caller has.
template <typename At>
std::vector<float> pack_strips(long kk, long cols, At at) {
  const long strips = (cols + kStrip - 1) / kStrip;
  std::vector<float> packed(static_cast<size_t>(strips * kk * kStrip + 8), 0.f);
  for (long j = 0; j < strips; j++) {
    float* dst = packed.data() + j * kk * kStrip;
    const long nr = std::min(kStrip, cols - j * kStrip);
    for (long p = 0; p < kk; p++)
      for (long c = 0; c < nr; c++) dst[p * kStrip + c] = at(p, j * kStrip + c);
  }
  return packed;
}

thread_local std::vector<float> tls_edge;
thread_local std::vector<float> tls_zero;
thread_local std::vector<const float*> tls_ptrs;

// y = conv(x, packed strips) for the output pixels [r0, r1) of the batch, dilation 1.
void direct_conv_range(const float* x, const float* packed, float* y, const ConvShape& s, long r0, long r1) {
  const long ci = s.in_c, seg = s.k_w * ci, nseg = s.k_h, kk = nseg * seg, per_image = rows_per_image(s);
  const long strips = (s.out_c + kStrip - 1) / kStrip;
  if (static_cast<long>(tls_zero.size()) < seg) tls_zero.assign(static_cast<size_t>(seg), 0.f);
  if (static_cast<long>(tls_edge.size()) < kTileRows * kk) tls_edge.resize(static_cast<size_t>(kTileRows * kk));
  if (static_cast<long>(tls_ptrs.size()) < kTileRows * nseg) tls_ptrs.resize(static_cast<size_t>(kTileRows * nseg));
  const float* zero = tls_zero.data();
  const float** ptrs = tls_ptrs.data();
  for (long t0 = r0; t0 < r1; t0 += kTileRows) {
    const long mr = std::min(kTileRows, r1 - t0);
    for (long r = 0; r < kTileRows; r++) {
      const long q = t0 + std::min(r, mr - 1);
      const long n = q / per_image, pix = q % per_image, oy = pix / s.out_w, ox = pix % s.out_w;
      const float* image = x + n * s.in_h * s.in_w * ci;
      const long ix0 = ox * s.stride_w - s.pad_left;
      const bool inside = ix0 >= 0 && ix0 + s.k_w <= s.in_w;
      for (long ky = 0; ky < nseg; ky++) {
        const long iy = oy * s.stride_h - s.pad_top + ky;
        const float*& ptr = ptrs[r * nseg + ky];
        if (iy < 0 || iy >= s.in_h) {
          ptr = zero;
        } else if (inside) {
          ptr = image + (iy * s.in_w + ix0) * ci;
        } else {
          // The window crosses the left or right edge: a zero-padded copy of this segment.
          float* edge = tls_edge.data() + (r * nseg + ky) * seg;
          const float* row = image + iy * s.in_w * ci;
          for (long kx = 0; kx < s.k_w; kx++) {
            const long ix = ix0 + kx;
            if (ix < 0 || ix >= s.in_w) std::memset(edge + kx * ci, 0, sizeof(float) * ci);
            else std::memcpy(edge + kx * ci, row + ix * ci, sizeof(float) * ci);
          }
          ptr = edge;
        }
      }
    }
    for (long j = 0; j < strips; j++) {
      direct_kernel_6x16(nseg, seg, ptrs, packed + j * kk * kStrip, y + t0 * s.out_c + j * kStrip, s.out_c, mr,
                         std::min(kStrip, s.out_c - j * kStrip));
    }
  }
}

// The direct convolution over the whole batch: output pixels split into one contiguous range
// per thread (forward writes are disjoint, so ranges may cross images).
void direct_conv(const float* x, const float* packed, float* y, const ConvShape& s, int threads) {
  const long total = s.batch * rows_per_image(s);
  const long tiles = (total + kTileRows - 1) / kTileRows;
  // Below ~64 tiles a wake-up of the pool costs more than it saves.
  parallel_for(tiles, 64, threads, [&](long t0, long t1) {
    direct_conv_range(x, packed, y, s, t0 * kTileRows, std::min(total, t1 * kTileRows));
  });
}

bool direct_ok(const ConvShape& s) { return s.dilation_h == 1 && s.dilation_w == 1; }

// C[0:mr, 0:nr] += sum_{p < k} a[p * lda + r] * b[p * ldb + j]: a block of the filter gradient
// (patch columns x output channels) from the patch rows and dy rows of k output pixels, read in
// place (no packing). a may be read up to 5 floats past row p's last column (ignored rows).
// nr < 16 uses masked loads of b.
void tn_kernel_6x16(long k, const float* __restrict a, long lda, const float* __restrict b, long ldb, float* c, long ldc, long mr,
                    long nr) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  const bool full = nr == kStrip;
  alignas(32) int lanes[kStrip];
  for (long j = 0; j < kStrip; j++) lanes[j] = j < nr ? -1 : 0;
  const __m256i m0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes));
  const __m256i m1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes + 8));
  for (long p = 0; p < k; p++, a += lda, b += ldb) {
    __m256 b0, b1;
    if (full) {
      b0 = _mm256_loadu_ps(b);
      b1 = _mm256_loadu_ps(b + 8);
    } else {
      b0 = _mm256_maskload_ps(b, m0);
      b1 = _mm256_maskload_ps(b + 8, m1);
    }
    __m256 v;
    v = _mm256_broadcast_ss(a + 0); c00 = _mm256_fmadd_ps(v, b0, c00); c01 = _mm256_fmadd_ps(v, b1, c01);
    v = _mm256_broadcast_ss(a + 1); c10 = _mm256_fmadd_ps(v, b0, c10); c11 = _mm256_fmadd_ps(v, b1, c11);
    v = _mm256_broadcast_ss(a + 2); c20 = _mm256_fmadd_ps(v, b0, c20); c21 = _mm256_fmadd_ps(v, b1, c21);
    v = _mm256_broadcast_ss(a + 3); c30 = _mm256_fmadd_ps(v, b0, c30); c31 = _mm256_fmadd_ps(v, b1, c31);
    v = _mm256_broadcast_ss(a + 4); c40 = _mm256_fmadd_ps(v, b0, c40); c41 = _mm256_fmadd_ps(v, b1, c41);
    v = _mm256_broadcast_ss(a + 5); c50 = _mm256_fmadd_ps(v, b0, c50); c51 = _mm256_fmadd_ps(v, b1, c51);
  }
  const __m256 acc[kTileRows][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  store_tile(acc, c, ldc, mr, nr, true);
}

// acc[kk x co] += cols[rows x kk]^T dy[rows x co], in slices of rows small enough (~64 KiB of
// patch and dy rows) to stay in L1/L2 while every tile of acc walks them: each tile re-reads
// the slice, so a slice streamed from memory per tile would make this memory-bound.
void filter_block(const float* cols, const float* dy, float* acc, long rows, long kk, long co) {
  const long slice = std::max(16L, std::min(512L, (16L << 10) / (kk + co)));
  for (long p0 = 0; p0 < rows; p0 += slice) {
    const long k = std::min(slice, rows - p0);
    const float* a = cols + p0 * kk;
    const float* b = dy + p0 * co;
    for (long j0 = 0; j0 < kk; j0 += kTileRows) {
      const long mr = std::min(kTileRows, kk - j0);
      for (long c0 = 0; c0 < co; c0 += kStrip) {
        tn_kernel_6x16(k, a + j0, kk, b + c0, co, acc + j0 * co + c0, co, mr, std::min(kStrip, co - c0));
      }
    }
  }
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
  if (direct_ok(s)) {
    const std::vector<float> packed = pack_strips(kk, s.out_c, [&](long p, long c) { return w[p * s.out_c + c]; });
    direct_conv(x, packed.data(), y, s, threads);
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
  // Needs >= 16 input channels: they become the kernel's 16-wide output strips (the 3-channel
  // stem's input gradient would waste 13 of 16 lanes; im2col's GEMM is faster there).
  if (direct_ok(s) && s.stride_h == 1 && s.stride_w == 1 && s.pad_top <= s.k_h - 1 && s.pad_left <= s.k_w - 1 && s.in_c >= 16) {
    // Stride 1: dx is the convolution of dy with the filter flipped in space and transposed in
    // channels, padded by k - 1 - pad: the direct forward kernel, writing every dx pixel once.
    const ConvShape t{s.batch, s.out_h, s.out_w, s.out_c, s.in_h, s.in_w, s.in_c, s.k_h, s.k_w, 1, 1, 1, 1,
                      s.k_h - 1 - s.pad_top, s.k_w - 1 - s.pad_left};
    const long ci = s.in_c, co = s.out_c, kw = s.k_w, kh = s.k_h;
    const std::vector<float> packed = pack_strips(kh * kw * co, ci, [&](long p, long i) {
      const long c = p % co, tap = p / co, kx = kw - 1 - tap % kw, ky = kh - 1 - tap / kw;
      return w[((ky * kw + kx) * ci + i) * co + c];
    });
    direct_conv(dy, packed.data(), dx, t, threads);
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
    // +8: the kernel's last row tile may read a few floats past the last patch row (ignored).
    float* cols = cols_buffer((r1 - r0) * kk + 8);
    im2col(x, s, r0, r1, cols);
    if (gt > 1) {
      // One image on several threads: the threaded GEMM.
      sgemm(gemm(cols, dy + r0 * co, acc, kk, r1 - r0, co, true, false, true), gt);
    } else {
      // Straight from the patch rows and dy rows, no packing (ResNet's n = 16-64 channels).
      filter_block(cols, dy + r0 * co, acc, r1 - r0, kk, co);
    }
  });
  for (int p = 0; p < parts; p++) {
    const float* acc = partial.data() + static_cast<size_t>(p) * size;
    for (long i = 0; i < size; i++) dw[i] += acc[i];
  }
}

}  // namespace masksub
