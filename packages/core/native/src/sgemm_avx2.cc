// Single-precision GEMM: BLIS-style loops (NC x KC panels of B, MC x KC blocks of A, both packed
// so the micro-kernel streams contiguous memory) around a 6x16 AVX2/FMA micro-kernel that keeps
// 12 ymm accumulators in registers. Block sizes follow BLIS' Zen configuration (MC 144, KC 256,
// NC 4080): a packed A block fits L2, one 16-column B strip fits L1. Outputs larger than L2 take
// longer k-blocks (k_block), since each k-block is one more pass over C.
//
// Compiled with -mavx2 -mfma in its own static library: binding.cc checks the CPU before any of
// this code runs, so a CPU without AVX2/FMA gets an error instead of SIGILL.
#include "sgemm.h"
#include "tile_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace masksub {
namespace {

constexpr long MR = kTileRows;
constexpr long NR = kTileCols;
constexpr long MC = 144;
constexpr long KC = 256;
// The longest k-block, for outputs over kLargeOutputFloats (1 MiB: at 2 threads each one's half
// of C is over the 512 KiB L2 of its core); see k_block.
constexpr long KC_MAX = 512;
constexpr double kLargeOutputFloats = 256.0 * 1024;
constexpr long NC = 4080;

// Per-thread packing buffers, 64-byte aligned, grown on demand and kept between calls.
struct PackBuffers {
  float* a = nullptr;
  float* b = nullptr;
  size_t a_size = 0, b_size = 0;
  ~PackBuffers() {
    std::free(a);
    std::free(b);
  }
  static float* grow(float*& p, size_t& have, size_t need) {
    if (have < need) {
      std::free(p);
      p = static_cast<float*>(std::aligned_alloc(64, ((need * sizeof(float) + 63) / 64) * 64));
      have = need;
    }
    return p;
  }
};
thread_local PackBuffers buffers;

// Element (r, p) of op(A) and (p, c) of op(B) for one batch slice.
struct Operand {
  const float* data;
  bool trans;
  long rows, cols;  // of the op()'d matrix
  float at(long r, long c) const { return trans ? data[c * rows + r] : data[r * cols + c]; }
};

// Packs op(A)[i0:i0+mc, p0:p0+kc] as MR-row strips, each kc columns of MR values, zero padded.
void pack_a(const Operand& A, long i0, long mc, long p0, long kc, float* dst) {
  for (long ir = 0; ir < mc; ir += MR) {
    const long mr = std::min(MR, mc - ir);
    if (A.trans) {
      // op(A)(r, p) = A[p * m + r]: the MR values of one column are contiguous.
      for (long p = 0; p < kc; p++) {
        const float* src = A.data + (p0 + p) * A.rows + i0 + ir;
        long r = 0;
        for (; r < mr; r++) dst[r] = src[r];
        for (; r < MR; r++) dst[r] = 0.f;
        dst += MR;
      }
    } else {
      const float* rows[MR];
      for (long r = 0; r < MR; r++) rows[r] = A.data + (i0 + ir + std::min(r, mr - 1)) * A.cols + p0;
      for (long p = 0; p < kc; p++) {
        long r = 0;
        for (; r < mr; r++) dst[r] = rows[r][p];
        for (; r < MR; r++) dst[r] = 0.f;
        dst += MR;
      }
    }
  }
}

// r[i][j] <- r[j][i] for an 8x8 block held in eight registers.
inline void transpose_8x8(__m256 (&r)[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// Packs op(B)[p0:p0+kc, j0:j0+nc] as NR-column strips, each kc rows of NR values, zero padded.
void pack_b(const Operand& B, long p0, long kc, long j0, long nc, float* dst) {
  for (long jr = 0; jr < nc; jr += NR) {
    const long nr = std::min(NR, nc - jr);
    if (!B.trans) {
      for (long p = 0; p < kc; p++) {
        const float* src = B.data + (p0 + p) * B.cols + j0 + jr;
        if (nr == NR) {
          _mm256_store_ps(dst, _mm256_loadu_ps(src));
          _mm256_store_ps(dst + 8, _mm256_loadu_ps(src + 8));
        } else {
          long c = 0;
          for (; c < nr; c++) dst[c] = src[c];
          for (; c < NR; c++) dst[c] = 0.f;
        }
        dst += NR;
      }
    } else if (nr == NR) {
      // op(B)(p, c) = B[c * k + p]: each output row is a column of 16 source rows. 8x8 blocks
      // are transposed in registers (attention's q.k^T packs a 65 x 64 slice per product, and
      // the scalar gather below took as long as the multiply-adds); the kc % 8 tail is scalar.
      const float* src = B.data + (j0 + jr) * B.rows + p0;
      long p = 0;
      for (; p + 8 <= kc; p += 8) {
        for (long half = 0; half < 2; half++) {
          __m256 r[8];
          for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + (half * 8 + i) * B.rows + p);
          transpose_8x8(r);
          for (int i = 0; i < 8; i++) _mm256_store_ps(dst + (p + i) * NR + half * 8, r[i]);
        }
      }
      for (; p < kc; p++)
        for (long c = 0; c < NR; c++) dst[p * NR + c] = src[c * B.rows + p];
      dst += kc * NR;
    } else {
      // A partial strip: walk its nr source rows side by side, zero padded.
      for (long p = 0; p < kc; p++) {
        long c = 0;
        for (; c < nr; c++) dst[c] = B.data[(j0 + jr + c) * B.rows + p0 + p];
        for (; c < NR; c++) dst[c] = 0.f;
        dst += NR;
      }
    }
  }
}

// C[0:6, 0:16] (+)= Ap (kc x 6) * Bp (kc x 16). `accumulate` adds to C instead of overwriting.
// Partial tiles (mr < 6 or nr < 16) go through a local tile so C is never written out of range.
void kernel_6x16(long kc, const float* __restrict ap, const float* __restrict bp, float* c, long ldc, long mr, long nr,
                 bool accumulate) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (long p = 0; p < kc; p++) {
    const __m256 b0 = _mm256_load_ps(bp);
    const __m256 b1 = _mm256_load_ps(bp + 8);
    __m256 a;
    a = _mm256_broadcast_ss(ap + 0); c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01);
    a = _mm256_broadcast_ss(ap + 1); c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11);
    a = _mm256_broadcast_ss(ap + 2); c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21);
    a = _mm256_broadcast_ss(ap + 3); c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31);
    a = _mm256_broadcast_ss(ap + 4); c40 = _mm256_fmadd_ps(a, b0, c40); c41 = _mm256_fmadd_ps(a, b1, c41);
    a = _mm256_broadcast_ss(ap + 5); c50 = _mm256_fmadd_ps(a, b0, c50); c51 = _mm256_fmadd_ps(a, b1, c51);
    ap += MR;
    bp += NR;
  }
  const __m256 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  store_tile(acc, c, ldc, mr, nr, accumulate);
}

// The k-block length for a product of depth k whose output slice is m x n. Every k-block is one
// more pass over C (each micro-tile loaded, added to and stored), and once C outgrows L2 each
// pass streams it from L3 or memory: KC = 256 cut ViT-B/16's weight gradient of k = 792 (99
// tokens x 8) into 4 passes over its 768 x 3072 C, against 7 for k = 1576 (4 x 256 + 24 and 6 x
// 256 + 40). For such outputs k is cut into ceil(k / KC_MAX) equal blocks (rounded up to 8): no
// thin tail, half the passes. A small C stays in L2 across passes, and there the shorter B strip
// (KC x 16, in L1) is what pays: KC as before.
long k_block(long k, long m, long n) {
  if (k <= KC || static_cast<double>(m) * n <= kLargeOutputFloats) return KC;
  const long blocks = (k + KC_MAX - 1) / KC_MAX;
  return ((k + blocks - 1) / blocks + 7) / 8 * 8;
}

// One batch slice, restricted to output rows [i_begin, i_end) and columns [j_begin, j_end).
void gemm_block(const GemmArgs& g, long slice, long i_begin, long i_end, long j_begin, long j_end) {
  const Operand A{g.a + slice * g.a_batch_stride, g.trans_a, g.m, g.k};
  const Operand B{g.b + slice * g.b_batch_stride, g.trans_b, g.k, g.n};
  float* C = g.out + slice * g.m * g.n;
  const long ldc = g.n;
  if (g.k == 0 && !g.accumulate) {
    for (long i = i_begin; i < i_end; i++) std::fill(C + i * ldc + j_begin, C + i * ldc + j_end, 0.f);
  }
  const long kb = k_block(g.k, g.m, g.n);
  for (long jc = j_begin; jc < j_end; jc += NC) {
    const long nc = std::min(NC, j_end - jc);
    const long nc_padded = (nc + NR - 1) / NR * NR;
    for (long pc = 0; pc < g.k; pc += kb) {
      const long kc = std::min(kb, g.k - pc);
      float* bp = PackBuffers::grow(buffers.b, buffers.b_size, static_cast<size_t>(nc_padded * kc));
      pack_b(B, pc, kc, jc, nc, bp);
      for (long ic = i_begin; ic < i_end; ic += MC) {
        const long mc = std::min(MC, i_end - ic);
        const long mc_padded = (mc + MR - 1) / MR * MR;
        float* ap = PackBuffers::grow(buffers.a, buffers.a_size, static_cast<size_t>(mc_padded * kc));
        pack_a(A, ic, mc, pc, kc, ap);
        for (long jr = 0; jr < nc; jr += NR) {
          const long nr = std::min(NR, nc - jr);
          for (long ir = 0; ir < mc; ir += MR) {
            const long mr = std::min(MR, mc - ir);
            kernel_6x16(kc, ap + ir * kc, bp + jr * kc, C + (ic + ir) * ldc + jc + jr, ldc, mr, nr, pc > 0 || g.accumulate);
          }
        }
      }
    }
  }
  if (g.bias != nullptr || g.relu) {
    // Epilogue on the rows this call just wrote (still in cache for small blocks).
    for (long i = i_begin; i < i_end; i++) {
      float* row = C + i * ldc;
      for (long j = j_begin; j < j_end; j++) {
        float v = row[j] + (g.bias != nullptr ? g.bias[j] : 0.f);
        row[j] = g.relu && v < 0.f ? 0.f : v;
      }
    }
  }
}

// A persistent pool: thread creation (~30 us) would cost as much as a small product.
//
// Hand-offs spin briefly before sleeping: a training step issues hundreds of kernels back to
// back with only tfjs' dispatch in between, and a condition-variable wake-up (a futex round
// trip, 30-80 us on a VM) per kernel cost more than the threading gained on mid-sized products.
// Workers and the caller spin for up to kSpin before falling back to the condition variables.
class Pool {
 public:
  explicit Pool(int workers) {
    for (int w = 0; w < workers; w++) threads_.emplace_back([this, w] { loop(w + 1); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  int size() const { return static_cast<int>(threads_.size()) + 1; }
  // Runs job(part) for part in [0, parts) with part 0 on the calling thread; returns when all end.
  void run(int parts, const std::function<void(int)>& job) {
    // One job at a time: JS worker_threads sharing this addon would otherwise race on job_.
    std::lock_guard<std::mutex> one_at_a_time(run_mu_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = &job;
      parts_ = parts;
      pending_.store(parts - 1, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
    }
    // sleepers_ only changes under mu_, so reading it after our critical section cannot miss a
    // worker that went to sleep before seeing this generation.
    if (sleepers_.load(std::memory_order_acquire) > 0) cv_.notify_all();
    job(0);
    if (!spin_until([this] { return pending_.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock<std::mutex> lock(mu_);
      done_.wait(lock, [this] { return pending_.load(std::memory_order_acquire) == 0; });
    }
  }

 private:
  static constexpr std::chrono::microseconds kSpin{100};

  template <typename Pred>
  static bool spin_until(Pred ready) {
    const auto deadline = std::chrono::steady_clock::now() + kSpin;
    for (int i = 0;; i++) {
      if (ready()) return true;
      _mm_pause();
      if ((i & 63) == 63 && std::chrono::steady_clock::now() > deadline) return false;
    }
  }

  void loop(int index) {
    unsigned long seen = 0;
    for (;;) {
      if (!spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; })) {
        std::unique_lock<std::mutex> lock(mu_);
        sleepers_.fetch_add(1, std::memory_order_release);
        cv_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
        sleepers_.fetch_sub(1, std::memory_order_release);
      }
      const std::function<void(int)>* job;
      int parts;
      {
        // A consistent snapshot: generation, job and part count are published together.
        std::lock_guard<std::mutex> lock(mu_);
        if (stop_) return;
        seen = generation_.load(std::memory_order_relaxed);
        job = job_;
        parts = parts_;
      }
      if (index >= parts) continue;
      (*job)(index);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        // Lock so the notify cannot fall between the caller's check and its wait.
        std::lock_guard<std::mutex> lock(mu_);
        done_.notify_one();
      }
    }
  }
  std::vector<std::thread> threads_;
  std::mutex run_mu_, mu_;
  std::condition_variable cv_, done_;
  const std::function<void(int)>* job_ = nullptr;
  int parts_ = 0;
  std::atomic<int> pending_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<unsigned long> generation_{0};
  bool stop_ = false;
};

Pool& pool(int threads) {
  // Sized once, by the first call that asks for more than one thread.
  static Pool instance(std::max(1, threads) - 1);
  return instance;
}

// Below this many multiply-adds a wake-up of the worker costs more than it saves.
constexpr double kParallelMinFlops = 2.0e6;

}  // namespace

void sgemm(const GemmArgs& g, int threads) {
  if (g.batch <= 0 || g.m <= 0 || g.n <= 0) return;
  const double flops = 2.0 * g.batch * g.m * g.n * g.k;
  const int parts = flops < kParallelMinFlops || threads <= 1 ? 1 : std::min(threads, pool(threads).size());
  if (parts == 1) {
    // Tiny products (attention slices): one loop, no per-slice setup beyond packing.
    for (long s = 0; s < g.batch; s++) gemm_block(g, s, 0, g.m, 0, g.n);
    return;
  }
  std::function<void(int)> job;
  if (g.batch % parts == 0 || g.batch >= 4 * parts) {
    // Whole slices per thread (balanced enough): no shared cache lines in the output.
    job = [&](int part) {
      const long begin = g.batch * part / parts, end = g.batch * (part + 1) / parts;
      for (long s = begin; s < end; s++) gemm_block(g, s, 0, g.m, 0, g.n);
    };
  } else if (g.m >= g.n) {
    // Split rows on MR boundaries; each thread packs its own A block and the whole B panel.
    job = [&](int part) {
      const long strips = (g.m + MR - 1) / MR;
      const long begin = std::min(g.m, strips * part / parts * MR), end = std::min(g.m, strips * (part + 1) / parts * MR);
      for (long s = 0; s < g.batch; s++)
        if (begin < end) gemm_block(g, s, begin, end, 0, g.n);
    };
  } else {
    job = [&](int part) {
      const long strips = (g.n + NR - 1) / NR;
      const long begin = std::min(g.n, strips * part / parts * NR), end = std::min(g.n, strips * (part + 1) / parts * NR);
      for (long s = 0; s < g.batch; s++)
        if (begin < end) gemm_block(g, s, 0, g.m, begin, end);
    };
  }
  pool(threads).run(parts, job);
}

void parallel_for(long n, long min_per_thread, int threads, const std::function<void(long, long)>& body) {
  if (n <= 0) return;
  const long by_size = n / std::max(1L, min_per_thread);
  const int parts = static_cast<int>(std::min<long>(std::min(threads, threads <= 1 ? 1 : pool(threads).size()), by_size));
  if (parts <= 1) {
    body(0, n);
    return;
  }
  pool(threads).run(parts, [&](int part) {
    const long begin = n * part / parts, end = n * (part + 1) / parts;
    if (begin < end) body(begin, end);
  });
}

}  // namespace masksub
