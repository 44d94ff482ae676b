// Fused training kernels (GELU, quick GELU, LayerNorm, scaled softmax, column sums) for AVX2 + FMA.
//
// Why: on tfjs' wasm backend each of these is 4-12 separate kernels, every one a full pass over
// memory and many of them scalar loops (erf alone was ~10% of a ViT step). One pass here, eight
// lanes at a time, on the GEMM's thread pool.
//
// Compiled with -mavx2 -mfma in the same static library as the GEMM: binding.cc checks the CPU
// before any of this runs.
#include "fused.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <vector>

#include "sgemm.h"

namespace masksub {
namespace {

// Elements per thread below which a wake-up of the pool costs more than it saves.
constexpr long kMinElementsPerThread = 1 << 15;

// exp(x) for 8 lanes, Cephes' expf: x = n ln2 + r, |r| <= ln2/2, degree-5 polynomial for e^r,
// 2^n through the exponent bits. Relative error ~1e-7. Below -87.3 the result is 0 (where
// expf would return a denormal), so masked attention scores (-inf, -1e9) weigh exactly nothing.
inline __m256 exp8(__m256 x) {
  const __m256 underflow = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.7f));
  __m256 fx = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
  fx = _mm256_floor_ps(fx);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  const __m256i n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(underflow, _mm256_mul_ps(y, _mm256_castsi256_ps(n)));
}

// erf(x) for 8 lanes: the odd/even rational approximation Eigen and XLA use for float
// (|error| < 1e-7 on [-4, 4]; outside, erf is +-1 in float32).
inline __m256 erf8(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-4.f)), _mm256_set1_ps(4.f));
  const __m256 x2 = _mm256_mul_ps(x, x);
  __m256 p = _mm256_fmadd_ps(x2, _mm256_set1_ps(-2.72614225801306e-10f), _mm256_set1_ps(2.77068142495902e-08f));
  p = _mm256_fmadd_ps(x2, p, _mm256_set1_ps(-2.10102402082508e-06f));
  p = _mm256_fmadd_ps(x2, p, _mm256_set1_ps(-5.69250639462346e-05f));
  p = _mm256_fmadd_ps(x2, p, _mm256_set1_ps(-7.34990630326855e-04f));
  p = _mm256_fmadd_ps(x2, p, _mm256_set1_ps(-2.95459980854025e-03f));
  p = _mm256_fmadd_ps(x2, p, _mm256_set1_ps(-1.60960333262415e-02f));
  p = _mm256_mul_ps(x, p);
  __m256 q = _mm256_fmadd_ps(x2, _mm256_set1_ps(-1.45660718464996e-05f), _mm256_set1_ps(-2.13374055278905e-04f));
  q = _mm256_fmadd_ps(x2, q, _mm256_set1_ps(-1.68282697438203e-03f));
  q = _mm256_fmadd_ps(x2, q, _mm256_set1_ps(-7.37332916720468e-03f));
  q = _mm256_fmadd_ps(x2, q, _mm256_set1_ps(-1.42647390514189e-02f));
  return _mm256_div_ps(p, q);
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Lane mask for the last (n % 8) elements of a row: masked loads read nothing past the end.
inline __m256i tail_mask(long rem) {
  alignas(32) static const int table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(table + 8 - rem));
}

// 8 floats at p; in the tail only the lanes of m (the rest read as 0, nothing past the end).
inline __m256 load8(const float* p, __m256i m, bool tail) { return tail ? _mm256_maskload_ps(p, m) : _mm256_loadu_ps(p); }

inline void store8(float* p, __m256i m, bool tail, __m256 v) {
  if (tail) _mm256_maskstore_ps(p, m, v);
  else _mm256_storeu_ps(p, v);
}

// Applies f to [begin, end) of 8-lane blocks; the tail goes through masked loads and stores.
template <typename F>
inline void for_lanes(long begin, long end, F f) {
  long i = begin;
  for (; i + 8 <= end; i += 8) f(i, _mm256_set1_epi32(-1), false);
  if (i < end) f(i, tail_mask(end - i), true);
}

// sigmoid(1.702 x) for 8 lanes. exp8 saturates at both ends (0 below -87.3, finite at 88.7), so
// s is exactly 1 for large x and a tiny positive number, never NaN, for very negative x.
inline __m256 quick_sigmoid8(__m256 x) {
  const __m256 e = exp8(_mm256_mul_ps(x, _mm256_set1_ps(-1.702f)));
  return _mm256_div_ps(_mm256_set1_ps(1.f), _mm256_add_ps(_mm256_set1_ps(1.f), e));
}

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

}  // namespace

void gelu_forward(const float* x, float* y, long n, int threads) {
  parallel_for(n, kMinElementsPerThread, threads, [&](long begin, long end) {
    for_lanes(begin, end, [&](long i, __m256i m, bool tail) {
      const __m256 v = load8(x + i, m, tail);
      const __m256 cdf = _mm256_mul_ps(_mm256_add_ps(erf8(_mm256_mul_ps(v, _mm256_set1_ps(kInvSqrt2))), _mm256_set1_ps(1.f)),
                                       _mm256_set1_ps(0.5f));
      const __m256 out = _mm256_mul_ps(v, cdf);
      store8(y + i, m, tail, out);
    });
  });
}

void gelu_backward(const float* x, const float* dy, float* dx, long n, int threads) {
  parallel_for(n, kMinElementsPerThread, threads, [&](long begin, long end) {
    for_lanes(begin, end, [&](long i, __m256i m, bool tail) {
      const __m256 v = load8(x + i, m, tail);
      const __m256 g = load8(dy + i, m, tail);
      const __m256 cdf = _mm256_mul_ps(_mm256_add_ps(erf8(_mm256_mul_ps(v, _mm256_set1_ps(kInvSqrt2))), _mm256_set1_ps(1.f)),
                                       _mm256_set1_ps(0.5f));
      const __m256 pdf = _mm256_mul_ps(exp8(_mm256_mul_ps(_mm256_mul_ps(v, v), _mm256_set1_ps(-0.5f))), _mm256_set1_ps(kInvSqrt2Pi));
      const __m256 out = _mm256_mul_ps(g, _mm256_fmadd_ps(v, pdf, cdf));
      store8(dx + i, m, tail, out);
    });
  });
}

void quick_gelu_forward(const float* x, float* y, long n, int threads) {
  parallel_for(n, kMinElementsPerThread, threads, [&](long begin, long end) {
    for_lanes(begin, end, [&](long i, __m256i m, bool tail) {
      const __m256 v = load8(x + i, m, tail);
      store8(y + i, m, tail, _mm256_mul_ps(v, quick_sigmoid8(v)));
    });
  });
}

void quick_gelu_backward(const float* x, const float* dy, float* dx, long n, int threads) {
  parallel_for(n, kMinElementsPerThread, threads, [&](long begin, long end) {
    for_lanes(begin, end, [&](long i, __m256i m, bool tail) {
      const __m256 v = load8(x + i, m, tail);
      const __m256 g = load8(dy + i, m, tail);
      const __m256 s = quick_sigmoid8(v);
      // s + 1.702 x s (1 - s) = s (1 + 1.702 x (1 - s))
      const __m256 slope = _mm256_mul_ps(_mm256_mul_ps(v, _mm256_set1_ps(1.702f)), _mm256_sub_ps(_mm256_set1_ps(1.f), s));
      store8(dx + i, m, tail, _mm256_mul_ps(g, _mm256_fmadd_ps(s, slope, s)));
    });
  });
}

void layer_norm_forward(const float* x, const float* gamma, const float* beta, float eps, long rows, long cols,
                        float* y, float* mean, float* rstd, int threads) {
  const long min_rows = std::max(1L, kMinElementsPerThread / std::max(1L, cols));
  parallel_for(rows, min_rows, threads, [&](long begin, long end) {
    for (long r = begin; r < end; r++) {
      const float* xr = x + r * cols;
      float* yr = y + r * cols;
      __m256 acc = _mm256_setzero_ps();
      for_lanes(0, cols, [&](long i, __m256i m, bool tail) {
        acc = _mm256_add_ps(acc, load8(xr + i, m, tail));
      });
      const float mu = hsum(acc) / static_cast<float>(cols);
      const __m256 vmu = _mm256_set1_ps(mu);
      // Two passes (centre, then square): the one-pass E[x^2] - E[x]^2 loses digits when |mean| >> std.
      __m256 sq = _mm256_setzero_ps();
      for_lanes(0, cols, [&](long i, __m256i m, bool tail) {
        const __m256 c = _mm256_sub_ps(load8(xr + i, m, tail), vmu);
        // Padding lanes hold 0 - mean: zero them before squaring.
        const __m256 cm = tail ? _mm256_and_ps(c, _mm256_castsi256_ps(m)) : c;
        sq = _mm256_fmadd_ps(cm, cm, sq);
      });
      const float rs = 1.0f / std::sqrt(hsum(sq) / static_cast<float>(cols) + eps);
      mean[r] = mu;
      rstd[r] = rs;
      const __m256 vrs = _mm256_set1_ps(rs);
      for_lanes(0, cols, [&](long i, __m256i m, bool tail) {
        const __m256 xv = load8(xr + i, m, tail);
        const __m256 gv = load8(gamma + i, m, tail);
        const __m256 bv = load8(beta + i, m, tail);
        const __m256 out = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_sub_ps(xv, vmu), vrs), gv, bv);
        store8(yr + i, m, tail, out);
      });
    }
  });
}

void layer_norm_backward(const float* dy, const float* x, const float* mean, const float* rstd, const float* gamma,
                         long rows, long cols, float* dx, float* dgamma, float* dbeta, int threads) {
  const long min_rows = std::max(1L, kMinElementsPerThread / std::max(1L, cols));
  // Parameter gradients: each range accumulates its own partial sums, added up afterwards in a
  // fixed order, so the result does not depend on thread timing.
  const int max_parts = std::max(1, threads);
  std::vector<float> partial(static_cast<size_t>(max_parts) * 2 * cols, 0.f);
  std::vector<long> range_begin(static_cast<size_t>(max_parts), -1);
  long next_slot = 0;
  std::mutex slot_mu;
  parallel_for(rows, min_rows, threads, [&](long begin, long end) {
    long slot;
    {
      std::lock_guard<std::mutex> lock(slot_mu);
      slot = next_slot++;
      range_begin[static_cast<size_t>(slot)] = begin;
    }
    float* pg = partial.data() + slot * 2 * cols;
    float* pb = pg + cols;
    const float inv_cols = 1.0f / static_cast<float>(cols);
    for (long r = begin; r < end; r++) {
      const float* xr = x + r * cols;
      const float* dyr = dy + r * cols;
      float* dxr = dx + r * cols;
      const __m256 vmu = _mm256_set1_ps(mean[r]);
      const __m256 vrs = _mm256_set1_ps(rstd[r]);
      // x̂ and g = dy * gamma at lane block i (both passes below need them; recomputing is
      // cheaper than a row buffer). Masked-off lanes load 0 for dy, so g is 0 there.
      auto xhat_g = [&](long i, __m256i m, bool tail, __m256* xhat, __m256* g, __m256* dv) {
        *dv = load8(dyr + i, m, tail);
        *xhat = _mm256_mul_ps(_mm256_sub_ps(load8(xr + i, m, tail), vmu), vrs);
        *g = _mm256_mul_ps(*dv, load8(gamma + i, m, tail));
      };
      __m256 sum_g = _mm256_setzero_ps(), sum_gx = _mm256_setzero_ps();
      for_lanes(0, cols, [&](long i, __m256i m, bool tail) {
        __m256 xhat, g, dv;
        xhat_g(i, m, tail, &xhat, &g, &dv);
        sum_g = _mm256_add_ps(sum_g, g);
        sum_gx = _mm256_fmadd_ps(g, xhat, sum_gx);
        store8(pg + i, m, tail, _mm256_fmadd_ps(dv, xhat, load8(pg + i, m, tail)));
        store8(pb + i, m, tail, _mm256_add_ps(load8(pb + i, m, tail), dv));
      });
      const __m256 mg = _mm256_set1_ps(hsum(sum_g) * inv_cols);
      const __m256 mgx = _mm256_set1_ps(hsum(sum_gx) * inv_cols);
      for_lanes(0, cols, [&](long i, __m256i m, bool tail) {
        __m256 xhat, g, dv;
        xhat_g(i, m, tail, &xhat, &g, &dv);
        const __m256 out = _mm256_mul_ps(vrs, _mm256_sub_ps(_mm256_sub_ps(g, mg), _mm256_mul_ps(xhat, mgx)));
        store8(dxr + i, m, tail, out);
      });
    }
  });
  // Reduce the partial sums in row order (slots sorted by the range they covered).
  std::vector<long> order;
  for (long s = 0; s < next_slot; s++) order.push_back(s);
  std::sort(order.begin(), order.end(), [&](long a, long b) { return range_begin[a] < range_begin[b]; });
  std::fill(dgamma, dgamma + cols, 0.f);
  std::fill(dbeta, dbeta + cols, 0.f);
  for (long s : order) {
    const float* pg = partial.data() + s * 2 * cols;
    for (long c = 0; c < cols; c++) {
      dgamma[c] += pg[c];
      dbeta[c] += pg[cols + c];
    }
  }
}

void softmax_forward(const float* x, float scale, long rows, long cols, float* y, int threads) {
  const long min_rows = std::max(1L, kMinElementsPerThread / std::max(1L, cols));
  const __m256 vscale = _mm256_set1_ps(scale);
  parallel_for(rows, min_rows, threads, [&](long begin, long end) {
    for (long r = begin; r < end; r++) {
      const float* xr = x + r * cols;
      float* yr = y + r * cols;
      // max of scale * x: for a negative scale that is scale * min(x), so take it after scaling.
      __m256 vmax = _mm256_set1_ps(-INFINITY);
      for_lanes(0, cols, [&](long i, __m256i m, bool tail) {
        __m256 v = _mm256_mul_ps(load8(xr + i, m, tail), vscale);
        if (tail) v = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), v, _mm256_castsi256_ps(m));
        vmax = _mm256_max_ps(vmax, v);
      });
      const __m256 mx = _mm256_set1_ps(hmax(vmax));
      __m256 vsum = _mm256_setzero_ps();
      for_lanes(0, cols, [&](long i, __m256i m, bool tail) {
        const __m256 v = _mm256_mul_ps(load8(xr + i, m, tail), vscale);
        __m256 e = exp8(_mm256_sub_ps(v, mx));
        if (tail) e = _mm256_and_ps(e, _mm256_castsi256_ps(m));  // padding lanes must not add to the sum
        store8(yr + i, m, tail, e);
        vsum = _mm256_add_ps(vsum, e);
      });
      const __m256 inv = _mm256_set1_ps(1.0f / hsum(vsum));
      for_lanes(0, cols, [&](long i, __m256i m, bool tail) {
        store8(yr + i, m, tail, _mm256_mul_ps(load8(yr + i, m, tail), inv));
      });
    }
  });
}

void softmax_backward(const float* y, const float* dy, float scale, long rows, long cols, float* dx, int threads) {
  const long min_rows = std::max(1L, kMinElementsPerThread / std::max(1L, cols));
  const __m256 vscale = _mm256_set1_ps(scale);
  parallel_for(rows, min_rows, threads, [&](long begin, long end) {
    for (long r = begin; r < end; r++) {
      const float* yr = y + r * cols;
      const float* dyr = dy + r * cols;
      float* dxr = dx + r * cols;
      __m256 dot = _mm256_setzero_ps();
      for_lanes(0, cols, [&](long i, __m256i m, bool tail) {
        const __m256 yv = load8(yr + i, m, tail);
        const __m256 dv = load8(dyr + i, m, tail);
        dot = _mm256_fmadd_ps(yv, dv, dot);
      });
      const __m256 d = _mm256_set1_ps(hsum(dot));
      for_lanes(0, cols, [&](long i, __m256i m, bool tail) {
        const __m256 yv = load8(yr + i, m, tail);
        const __m256 dv = load8(dyr + i, m, tail);
        const __m256 out = _mm256_mul_ps(_mm256_mul_ps(yv, _mm256_sub_ps(dv, d)), vscale);
        store8(dxr + i, m, tail, out);
      });
    }
  });
}

namespace {

// murmur3's 32-bit finaliser: every input bit flips each output bit with probability ~1/2.
inline __m256i fmix32(__m256i h) {
  h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
  h = _mm256_mullo_epi32(h, _mm256_set1_epi32(static_cast<int>(0x85ebca6bu)));
  h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 13));
  h = _mm256_mullo_epi32(h, _mm256_set1_epi32(static_cast<int>(0xc2b2ae35u)));
  return _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
}

inline unsigned fmix32(unsigned h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  return h ^ (h >> 16);
}

}  // namespace

void dropout(const float* x, float* y, long n, unsigned seed, float rate, int threads) {
  // Two rounds (the element index scrambled, then mixed with the hashed seed): one round of a
  // plain counter leaves neighbouring elements' masks correlated.
  const unsigned key = fmix32(seed ^ 0x9e3779b9u) | 1u;
  const int threshold = static_cast<int>(std::min(16777216.0, std::ceil(static_cast<double>(rate) * 16777216.0)));
  const __m256 scale = _mm256_set1_ps(rate >= 1.f ? 0.f : 1.0f / (1.0f - rate));
  const __m256i vkey = _mm256_set1_epi32(static_cast<int>(key));
  const __m256i vthreshold = _mm256_set1_epi32(threshold - 1);
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  parallel_for(n, kMinElementsPerThread, threads, [&](long begin, long end) {
    for_lanes(begin, end, [&](long i, __m256i m, bool tail) {
      // Index bits above 32 go into the key so tensors past 2^32 elements do not repeat masks.
      const __m256i hi = _mm256_set1_epi32(static_cast<int>(fmix32(static_cast<unsigned>(static_cast<unsigned long>(i) >> 32))));
      const __m256i idx = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<unsigned>(i))), lane);
      __m256i h = fmix32(_mm256_xor_si256(_mm256_mullo_epi32(idx, _mm256_set1_epi32(static_cast<int>(0x9e3779b1u))), hi));
      h = fmix32(_mm256_add_epi32(h, vkey));
      // 24 random bits as a non-negative int: AVX2 compares only signed integers.
      const __m256i bits = _mm256_srli_epi32(h, 8);
      const __m256 keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(bits, vthreshold));
      const __m256 v = load8(x + i, m, tail);
      const __m256 out = _mm256_and_ps(keep, _mm256_mul_ps(v, scale));
      store8(y + i, m, tail, out);
    });
  });
}

void adamw_update(const float* p, const float* g, const float* m, const float* v, float* p_out, float* m_out, float* v_out,
                  long n, const AdamWArgs& a, int threads) {
  const double decay = a.weight_decay != 0 ? 1 - a.lr * a.weight_decay : 1;
  const double step = a.lr / a.bias_correction1;
  const double sqrt_bc2 = std::sqrt(a.bias_correction2);
  const double c1 = 1 - a.beta1, c2 = 1 - a.beta2;
  // The same float64 operations in the same order as the scalar tail (and adamw.ts), four lanes
  // at a time: vsqrtpd / vdivpd round exactly as their scalar forms, and -ffp-contract=off keeps
  // the multiplies and adds unfused, so the bits equal the JS kernel's. (The compiler kept the
  // loop scalar: sqrt and divide in double were ~1 ns of the 2.8 ns per element.)
  const __m256d beta1 = _mm256_set1_pd(a.beta1), beta2 = _mm256_set1_pd(a.beta2), vc1 = _mm256_set1_pd(c1), vc2 = _mm256_set1_pd(c2);
  const __m256d vdecay = _mm256_set1_pd(decay), vstep = _mm256_set1_pd(step), vsqrt_bc2 = _mm256_set1_pd(sqrt_bc2), veps = _mm256_set1_pd(a.eps);
  parallel_for(n, kMinElementsPerThread, threads, [&](long begin, long end) {
    long i = begin;
    for (; i + 4 <= end; i += 4) {
      const __m256d gi = _mm256_cvtps_pd(_mm_loadu_ps(g + i));
      const __m256d mi = _mm256_add_pd(_mm256_mul_pd(beta1, _mm256_cvtps_pd(_mm_loadu_ps(m + i))), _mm256_mul_pd(vc1, gi));
      const __m256d vi = _mm256_add_pd(_mm256_mul_pd(beta2, _mm256_cvtps_pd(_mm_loadu_ps(v + i))), _mm256_mul_pd(_mm256_mul_pd(vc2, gi), gi));
      _mm_storeu_ps(m_out + i, _mm256_cvtpd_ps(mi));
      _mm_storeu_ps(v_out + i, _mm256_cvtpd_ps(vi));
      const __m256d denom = _mm256_add_pd(_mm256_div_pd(_mm256_sqrt_pd(vi), vsqrt_bc2), veps);
      const __m256d pi = _mm256_mul_pd(_mm256_cvtps_pd(_mm_loadu_ps(p + i)), vdecay);
      _mm_storeu_ps(p_out + i, _mm256_cvtpd_ps(_mm256_sub_pd(pi, _mm256_mul_pd(vstep, _mm256_div_pd(mi, denom)))));
    }
    for (; i < end; i++) {
      const double gi = g[i];
      const double mi = a.beta1 * m[i] + c1 * gi;
      const double vi = a.beta2 * v[i] + c2 * gi * gi;
      m_out[i] = static_cast<float>(mi);
      v_out[i] = static_cast<float>(vi);
      p_out[i] = static_cast<float>(p[i] * decay - step * (mi / (std::sqrt(vi) / sqrt_bc2 + a.eps)));
    }
  });
}

void lamb_update(const float* p, const float* g, const float* m, const float* v, float* p_out, float* m_out, float* v_out,
                 long n, const LambArgs& a, int threads) {
  const double c1 = 1 - a.beta1, c2 = 1 - a.beta2, bc1 = a.bias_correction1, sqrt_bc2 = std::sqrt(a.bias_correction2);
  const __m256d beta1 = _mm256_set1_pd(a.beta1), beta2 = _mm256_set1_pd(a.beta2), vc1 = _mm256_set1_pd(c1), vc2 = _mm256_set1_pd(c2);
  const __m256d vclip = _mm256_set1_pd(a.clip), vbc1 = _mm256_set1_pd(bc1), vsqrt_bc2 = _mm256_set1_pd(sqrt_bc2);
  const __m256d veps = _mm256_set1_pd(a.eps), vwd = _mm256_set1_pd(a.weight_decay);
  // u from the stored float32 m' and v' (the op form's values), in the JS kernel's order.
  auto direction4 = [&](long i) {
    const __m256d q = _mm256_div_pd(_mm256_div_pd(_mm256_cvtps_pd(_mm_loadu_ps(m_out + i)), vbc1),
                                    _mm256_add_pd(_mm256_div_pd(_mm256_sqrt_pd(_mm256_cvtps_pd(_mm_loadu_ps(v_out + i))), vsqrt_bc2), veps));
    return _mm256_add_pd(q, _mm256_mul_pd(vwd, _mm256_cvtps_pd(_mm_loadu_ps(p + i))));
  };
  auto direction = [&](long i) {
    return static_cast<double>(m_out[i]) / bc1 / (std::sqrt(static_cast<double>(v_out[i])) / sqrt_bc2 + a.eps) + a.weight_decay * static_cast<double>(p[i]);
  };
  const long blocks = (n + kLambBlock - 1) / kLambBlock;
  std::vector<double> p_squares(static_cast<size_t>(blocks)), u_squares(static_cast<size_t>(blocks));
  parallel_for(blocks, std::max(1L, kMinElementsPerThread / kLambBlock), threads, [&](long b0, long b1) {
    for (long b = b0; b < b1; b++) {
      const long begin = b * kLambBlock, end = std::min(n, begin + kLambBlock);
      __m256d ps = _mm256_setzero_pd(), us = _mm256_setzero_pd();
      long i = begin;
      for (; i + 4 <= end; i += 4) {
        const __m256d gi = _mm256_div_pd(_mm256_cvtps_pd(_mm_loadu_ps(g + i)), vclip);
        const __m256d mi = _mm256_add_pd(_mm256_mul_pd(beta1, _mm256_cvtps_pd(_mm_loadu_ps(m + i))), _mm256_mul_pd(vc1, gi));
        const __m256d vi = _mm256_add_pd(_mm256_mul_pd(beta2, _mm256_cvtps_pd(_mm_loadu_ps(v + i))), _mm256_mul_pd(_mm256_mul_pd(vc2, gi), gi));
        _mm_storeu_ps(m_out + i, _mm256_cvtpd_ps(mi));
        _mm_storeu_ps(v_out + i, _mm256_cvtpd_ps(vi));
        if (a.adapt) {
          const __m256d pi = _mm256_cvtps_pd(_mm_loadu_ps(p + i));
          const __m256d u = direction4(i);
          ps = _mm256_add_pd(ps, _mm256_mul_pd(pi, pi));
          us = _mm256_add_pd(us, _mm256_mul_pd(u, u));
        }
      }
      alignas(32) double pl[4], ul[4];
      _mm256_store_pd(pl, ps);
      _mm256_store_pd(ul, us);
      for (; i < end; i++) {
        const double gi = static_cast<double>(g[i]) / a.clip;
        m_out[i] = static_cast<float>(a.beta1 * m[i] + c1 * gi);
        v_out[i] = static_cast<float>(a.beta2 * v[i] + c2 * gi * gi);
        if (a.adapt) {
          const double pi = p[i], u = direction(i);
          pl[(i - begin) % 4] += pi * pi;
          ul[(i - begin) % 4] += u * u;
        }
      }
      p_squares[static_cast<size_t>(b)] = (pl[0] + pl[1]) + (pl[2] + pl[3]);
      u_squares[static_cast<size_t>(b)] = (ul[0] + ul[1]) + (ul[2] + ul[3]);
    }
  });
  double scale = a.lr;
  if (a.adapt) {
    double pt = 0, ut = 0;
    for (long b = 0; b < blocks; b++) {
      pt += p_squares[static_cast<size_t>(b)];
      ut += u_squares[static_cast<size_t>(b)];
    }
    const double p_norm = std::sqrt(pt), u_norm = std::sqrt(ut);
    double trust = p_norm > 0 && u_norm > 0 ? p_norm / u_norm : 1;
    if (a.trust_clip) trust = std::min(trust, 1.0);
    scale *= trust;
  }
  const __m256d vscale = _mm256_set1_pd(scale);
  parallel_for(n, kMinElementsPerThread, threads, [&](long begin, long end) {
    long i = begin;
    for (; i + 4 <= end; i += 4) {
      const __m256d pi = _mm256_cvtps_pd(_mm_loadu_ps(p + i));
      _mm_storeu_ps(p_out + i, _mm256_cvtpd_ps(_mm256_sub_pd(pi, _mm256_mul_pd(vscale, direction4(i)))));
    }
    for (; i < end; i++) p_out[i] = static_cast<float>(static_cast<double>(p[i]) - scale * direction(i));
  });
}

void permute_rows(const float* x, float* y, const long* shape, const int* perm, int rank, int threads) {
  const long row = shape[rank - 1];
  long rows = 1;
  for (int d = 0; d < rank - 1; d++) rows *= shape[perm[d]];
  if (rows == 0 || row == 0) return;
  // x's stride (in elements) along each of y's leading axes, and those axes' lengths.
  long x_strides[8];
  long stride = row;
  for (int d = rank - 2; d >= 0; d--) {
    x_strides[d] = stride;
    stride *= shape[d];
  }
  long step[8], extent[8];
  for (int d = 0; d < rank - 1; d++) {
    step[d] = x_strides[perm[d]];
    extent[d] = shape[perm[d]];
  }
  const size_t bytes = static_cast<size_t>(row) * sizeof(float);
  const long min_rows = std::max(1L, kMinElementsPerThread / row);
  parallel_for(rows, min_rows, threads, [&](long begin, long end) {
    // y's coordinates of row `begin`, then an odometer: no division per row.
    long coord[8];
    long offset = 0;
    for (long d = rank - 2, r = begin; d >= 0; d--) {
      coord[d] = r % extent[d];
      r /= extent[d];
      offset += coord[d] * step[d];
    }
    for (long r = begin; r < end; r++) {
      std::memcpy(y + r * row, x + offset, bytes);
      for (int d = rank - 2; d >= 0; d--) {
        offset += step[d];
        if (++coord[d] < extent[d]) break;
        offset -= coord[d] * step[d];
        coord[d] = 0;
      }
    }
  });
}

void add_into(float* sum, const float* addend, long n, int threads) {
  parallel_for(n, kMinElementsPerThread, threads, [&](long begin, long end) {
    for_lanes(begin, end, [&](long i, __m256i m, bool tail) {
      store8(sum + i, m, tail, _mm256_add_ps(load8(sum + i, m, tail), load8(addend + i, m, tail)));
    });
  });
}

void segment_sum(const float* x, const int* ids, long positions, long inner, long segments, float* out, int threads) {
  // Column bands of 8: no two threads write one output element, and each keeps the order of s.
  const long bands = (inner + 7) / 8;
  const long min_bands = std::max(1L, kMinElementsPerThread / std::max(1L, positions) / 8);
  parallel_for(bands, min_bands, threads, [&](long b0, long b1) {
    const long c_begin = b0 * 8, c_end = std::min(inner, b1 * 8);
    for (long s = 0; s < positions; s++) {
      const int id = ids[s];
      if (id < 0 || id >= segments) continue;
      const float* src = x + s * inner;
      float* dst = out + static_cast<long>(id) * inner;
      for_lanes(c_begin, c_end, [&](long i, __m256i m, bool tail) {
        store8(dst + i, m, tail, _mm256_add_ps(load8(dst + i, m, tail), load8(src + i, m, tail)));
      });
    }
  });
}

void column_sums(const float* x, long rows, long cols, float* out, int threads) {
  // Split the columns (not the rows) across threads: no partial sums to combine, and each
  // thread streams whole cache lines of its own column band.
  const long min_cols = std::max(8L, kMinElementsPerThread / std::max(1L, rows));
  const long bands = (cols + 7) / 8;
  parallel_for(bands, std::max(1L, min_cols / 8), threads, [&](long b0, long b1) {
    const long c_begin = b0 * 8, c_end = std::min(cols, b1 * 8);
    for (long c0 = c_begin; c0 < c_end; c0 += 64) {
      const long c1 = std::min(c_end, c0 + 64);
      // Two levels: rows are summed in blocks of 256 before joining the running total, so the
      // rounding error grows with 256 + rows / 256 terms instead of with all rows.
      __m256 total[8], acc[8];
      for (auto& a : total) a = _mm256_setzero_ps();
      for (long r0 = 0; r0 < rows; r0 += 256) {
        const long r1 = std::min(rows, r0 + 256);
        for (auto& a : acc) a = _mm256_setzero_ps();
        for (long r = r0; r < r1; r++) {
          const float* xr = x + r * cols;
          long k = 0;
          for (long c = c0; c < c1; c += 8, k++) {
            const long rem = c1 - c;
            acc[k] = _mm256_add_ps(acc[k], rem >= 8 ? _mm256_loadu_ps(xr + c) : _mm256_maskload_ps(xr + c, tail_mask(rem)));
          }
        }
        for (int k = 0; k < 8; k++) total[k] = _mm256_add_ps(total[k], acc[k]);
      }
      long k = 0;
      for (long c = c0; c < c1; c += 8, k++) {
        const long rem = c1 - c;
        if (rem >= 8) _mm256_storeu_ps(out + c, total[k]);
        else _mm256_maskstore_ps(out + c, tail_mask(rem), total[k]);
      }
    }
  });
}

}  // namespace masksub
