// The 6x16 accumulator tile shared by the packed GEMM and the direct convolution kernels
// (AVX2 translation units only: this header uses AVX intrinsics).
#pragma once

#include <immintrin.h>

namespace masksub {

constexpr long kTileRows = 6;
constexpr long kTileCols = 16;

// Stores (or, with `accumulate`, adds) the mr x nr corner of a 6x16 tile of accumulators into C;
// partial tiles go through a local buffer so no lane writes past row or column ends.
inline void store_tile(const __m256 (&acc)[kTileRows][2], float* c, long ldc, long mr, long nr, bool accumulate) {
  if (mr == kTileRows && nr == kTileCols) {
    for (long r = 0; r < kTileRows; r++) {
      float* row = c + r * ldc;
      __m256 v0 = acc[r][0], v1 = acc[r][1];
      if (accumulate) {
        v0 = _mm256_add_ps(v0, _mm256_loadu_ps(row));
        v1 = _mm256_add_ps(v1, _mm256_loadu_ps(row + 8));
      }
      _mm256_storeu_ps(row, v0);
      _mm256_storeu_ps(row + 8, v1);
    }
    return;
  }
  alignas(32) float tile[kTileRows * kTileCols];
  for (long r = 0; r < kTileRows; r++) {
    _mm256_store_ps(tile + r * kTileCols, acc[r][0]);
    _mm256_store_ps(tile + r * kTileCols + 8, acc[r][1]);
  }
  for (long r = 0; r < mr; r++) {
    float* row = c + r * ldc;
    for (long j = 0; j < nr; j++) row[j] = accumulate ? row[j] + tile[r * kTileCols + j] : tile[r * kTileCols + j];
  }
}

}  // namespace masksub
