// Training-mode batch norm over the rows of a [rows, channels] matrix (NHWC flattened): batch
// statistics, normalisation and the closed-form backward, each in two passes over memory.
//
// Why: composed from tfjs ops (mean, sub, square, mean, rsqrt, mul, mul, add and autodiff through
// all of them) batch norm was ~25 kernels and ~30 % of a ResNet-20 training step on wasm.
//
// Column sums are accumulated per thread in float over blocks of rows and in double across
// blocks and threads (fixed order: deterministic for a thread count).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "fused.h"
#include "sgemm.h"

namespace masksub {
namespace {

constexpr long kBlockRows = 64;
constexpr long kMinRowsPerThread = 2048;

int parts_for(long rows, int threads) {
  return static_cast<int>(std::max(1L, std::min<long>(threads, rows / kMinRowsPerThread)));
}

// totals[part * cols + c] += sum over this part's rows of f(r, c) (double), for `parts` parts.
template <typename F>
void column_sums_by_part(long rows, long cols, int parts, std::vector<double>& totals, F f) {
  totals.assign(static_cast<size_t>(parts) * cols, 0.0);
  parallel_for(parts, 1, parts, [&](long p0, long p1) {
    std::vector<float> block(static_cast<size_t>(cols));
    for (long p = p0; p < p1; p++) {
      double* total = totals.data() + p * cols;
      const long begin = rows * p / parts, end = rows * (p + 1) / parts;
      for (long r0 = begin; r0 < end; r0 += kBlockRows) {
        std::fill(block.begin(), block.end(), 0.f);
        const long r1 = std::min(end, r0 + kBlockRows);
        for (long r = r0; r < r1; r++) f(r, block.data());
        for (long c = 0; c < cols; c++) total[c] += block[c];
      }
    }
  });
}

void reduce_parts(const std::vector<double>& totals, int parts, long cols, double* out) {
  for (long c = 0; c < cols; c++) out[c] = 0.0;
  for (int p = 0; p < parts; p++)
    for (long c = 0; c < cols; c++) out[c] += totals[static_cast<size_t>(p) * cols + c];
}

}  // namespace

void batch_norm_stats(const float* x, long rows, long cols, float* mean, float* var, int threads) {
  if (cols <= 0) return;
  if (rows <= 0) {
    std::fill(mean, mean + cols, 0.f);
    std::fill(var, var + cols, 0.f);
    return;
  }
  const int parts = parts_for(rows, threads);
  std::vector<double> totals, sum(static_cast<size_t>(cols));
  column_sums_by_part(rows, cols, parts, totals, [&](long r, float* acc) {
    const float* row = x + r * cols;
    for (long c = 0; c < cols; c++) acc[c] += row[c];
  });
  reduce_parts(totals, parts, cols, sum.data());
  for (long c = 0; c < cols; c++) mean[c] = static_cast<float>(sum[c] / rows);
  // Two-pass variance (of x - mean), as the composed ops and PyTorch compute it.
  column_sums_by_part(rows, cols, parts, totals, [&](long r, float* acc) {
    const float* row = x + r * cols;
    for (long c = 0; c < cols; c++) {
      const float d = row[c] - mean[c];
      acc[c] += d * d;
    }
  });
  reduce_parts(totals, parts, cols, sum.data());
  for (long c = 0; c < cols; c++) var[c] = static_cast<float>(sum[c] / rows);
}

void batch_norm_apply(const float* x, const float* gamma, const float* beta, const float* mean, const float* var, float eps, long rows,
                      long cols, float* y, int threads, const float* residual, bool relu) {
  if (rows <= 0 || cols <= 0) return;
  std::vector<float> scale(static_cast<size_t>(cols)), shift(static_cast<size_t>(cols));
  for (long c = 0; c < cols; c++) {
    const float rstd = static_cast<float>(1.0 / std::sqrt(static_cast<double>(var[c]) + eps));
    scale[c] = rstd * gamma[c];
    shift[c] = beta[c] - mean[c] * scale[c];
  }
  parallel_for(rows, kMinRowsPerThread, threads, [&](long r0, long r1) {
    for (long r = r0; r < r1; r++) {
      const float* row = x + r * cols;
      float* out = y + r * cols;
      if (residual == nullptr && !relu) {
        for (long c = 0; c < cols; c++) out[c] = row[c] * scale[c] + shift[c];
        continue;
      }
      const float* res = residual != nullptr ? residual + r * cols : nullptr;
      for (long c = 0; c < cols; c++) {
        float v = row[c] * scale[c] + shift[c];
        if (res != nullptr) v += res[c];
        out[c] = relu ? std::max(v, 0.f) : v;
      }
    }
  });
}

void batch_norm_train_backward(const float* dy, const float* x, const float* mean, const float* var, const float* gamma, float eps,
                               long rows, long cols, float* dx, float* dgamma, float* dbeta, int threads,
                               const float* relu_out, float* dresidual) {
  if (cols <= 0) return;
  if (rows <= 0) {
    std::fill(dgamma, dgamma + cols, 0.f);
    std::fill(dbeta, dbeta + cols, 0.f);
    return;
  }
  const int parts = parts_for(rows, threads);
  // One pass for both sums: [dy | dy * (x - mean)] side by side in a 2 * cols accumulator.
  std::vector<double> totals, sums(static_cast<size_t>(2 * cols));
  // The ReLU's mask is applied where dy is read (both passes): dy * (y > 0), never stored.
  column_sums_by_part(rows, 2 * cols, parts, totals, [&](long r, float* acc) {
    const float* g = dy + r * cols;
    const float* row = x + r * cols;
    if (relu_out == nullptr) {
      for (long c = 0; c < cols; c++) {
        acc[c] += g[c];
        acc[cols + c] += g[c] * (row[c] - mean[c]);
      }
      return;
    }
    const float* yr = relu_out + r * cols;
    long c = 0;
    // Explicit AVX2: GCC's vectorisation of the masked loop ran ~4x slower than the plain one.
    const __m256 zero = _mm256_setzero_ps();
    for (; c + 8 <= cols; c += 8) {
      const __m256 gm = _mm256_and_ps(_mm256_cmp_ps(_mm256_loadu_ps(yr + c), zero, _CMP_GT_OQ), _mm256_loadu_ps(g + c));
      _mm256_storeu_ps(acc + c, _mm256_add_ps(_mm256_loadu_ps(acc + c), gm));
      const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(row + c), _mm256_loadu_ps(mean + c));
      _mm256_storeu_ps(acc + cols + c, _mm256_add_ps(_mm256_loadu_ps(acc + cols + c), _mm256_mul_ps(gm, d)));
    }
    for (; c < cols; c++) {
      const float gm = yr[c] > 0.f ? g[c] : 0.f;
      acc[c] += gm;
      acc[cols + c] += gm * (row[c] - mean[c]);
    }
  });
  reduce_parts(totals, parts, 2 * cols, sums.data());
  // dx = a (dy - sum(dy)/N - xhat sum(dy xhat)/N), a = gamma rstd, xhat = (x - mean) rstd
  //    = a dy + k1 x + k0.
  std::vector<float> a(static_cast<size_t>(cols)), k1(static_cast<size_t>(cols)), k0(static_cast<size_t>(cols));
  for (long c = 0; c < cols; c++) {
    const double rstd = 1.0 / std::sqrt(static_cast<double>(var[c]) + eps);
    const double sum_dy = sums[c], sum_dy_xhat = sums[cols + c] * rstd;
    dbeta[c] = static_cast<float>(sum_dy);
    dgamma[c] = static_cast<float>(sum_dy_xhat);
    const double ac = gamma[c] * rstd;
    a[c] = static_cast<float>(ac);
    k1[c] = static_cast<float>(-ac * rstd * sum_dy_xhat / rows);
    k0[c] = static_cast<float>(-ac * sum_dy / rows + ac * mean[c] * rstd * sum_dy_xhat / rows);
  }
  parallel_for(rows, kMinRowsPerThread, threads, [&](long r0, long r1) {
    for (long r = r0; r < r1; r++) {
      const float* g = dy + r * cols;
      const float* row = x + r * cols;
      float* out = dx + r * cols;
      if (relu_out == nullptr && dresidual == nullptr) {
        for (long c = 0; c < cols; c++) out[c] = a[c] * g[c] + k1[c] * row[c] + k0[c];
        continue;
      }
      const float* yr = relu_out != nullptr ? relu_out + r * cols : nullptr;
      float* dres = dresidual != nullptr ? dresidual + r * cols : nullptr;
      long c = 0;
      const __m256 zero = _mm256_setzero_ps();
      for (; c + 8 <= cols; c += 8) {
        __m256 gm = _mm256_loadu_ps(g + c);
        if (yr != nullptr) gm = _mm256_and_ps(_mm256_cmp_ps(_mm256_loadu_ps(yr + c), zero, _CMP_GT_OQ), gm);
        const __m256 v = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(a.data() + c), gm),
                                                     _mm256_mul_ps(_mm256_loadu_ps(k1.data() + c), _mm256_loadu_ps(row + c))),
                                       _mm256_loadu_ps(k0.data() + c));
        _mm256_storeu_ps(out + c, v);
        if (dres != nullptr) _mm256_storeu_ps(dres + c, gm);
      }
      for (; c < cols; c++) {
        const float gm = yr == nullptr || yr[c] > 0.f ? g[c] : 0.f;
        out[c] = a[c] * gm + k1[c] * row[c] + k0[c];
        if (dres != nullptr) dres[c] = gm;
      }
    }
  });
}

}  // namespace masksub
