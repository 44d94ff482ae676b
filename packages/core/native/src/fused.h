// Fused element-wise kernels for training (GELU, LayerNorm, scaled softmax), forward and
// backward, for x86-64 AVX2 + FMA (see fused_avx2.cc). All tensors are row-major float32.
#pragma once

namespace masksub {

// y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) (exact GELU, as torch.nn.GELU()).
void gelu_forward(const float* x, float* y, long n, int threads);
// dx = dy * (Phi(x) + x phi(x)).
void gelu_backward(const float* x, const float* dy, float* dx, long n, int threads);

// y = x * sigmoid(1.702 x) (CLIP's quick_gelu, as HF's QuickGELUActivation).
void quick_gelu_forward(const float* x, float* y, long n, int threads);
// With s = sigmoid(1.702 x): dx = dy * (s + 1.702 x s (1 - s)).
void quick_gelu_backward(const float* x, const float* dy, float* dx, long n, int threads);

// Per row of `cols` values: mean, rstd = 1/sqrt(var + eps) (biased variance, as PyTorch), and
// y = (x - mean) * rstd * gamma + beta. mean and rstd (rows values each) are kept for backward.
void layer_norm_forward(const float* x, const float* gamma, const float* beta, float eps, long rows, long cols,
                        float* y, float* mean, float* rstd, int threads);
// With xhat = (x - mean) * rstd and g = dy * gamma:
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),  dgamma = sum_rows dy * xhat,  dbeta = sum_rows dy.
void layer_norm_backward(const float* dy, const float* x, const float* mean, const float* rstd, const float* gamma,
                         long rows, long cols, float* dx, float* dgamma, float* dbeta, int threads);

// y = softmax(scale * x) over each row of `cols` values.
void softmax_forward(const float* x, float scale, long rows, long cols, float* y, int threads);
// dx = scale * y * (dy - sum(dy * y)) per row.
void softmax_backward(const float* y, const float* dy, float scale, long rows, long cols, float* dx, int threads);

// Inverted dropout with a counter-based random stream: element i is kept when
// hash(seed, i) / 2^24 >= rate and then scaled by 1 / (1 - rate); dropped elements are 0. The
// same (seed, rate) gives the same mask, so the backward pass applies this same function to dy
// instead of keeping a mask tensor.
void dropout(const float* x, float* y, long n, unsigned seed, float rate, int threads);

// One AdamW step (torch.optim.AdamW) in float64, stored as float32; the same operations in the
// same order as masksub's JS kernel (kernels/adamw.ts), so both give identical bits.
struct AdamWArgs {
  double beta1, beta2, eps, lr, weight_decay, bias_correction1, bias_correction2;
};
void adamw_update(const float* p, const float* g, const float* m, const float* v, float* p_out, float* m_out, float* v_out,
                  long n, const AdamWArgs& a, int threads);

// One LAMB step (timm's Lamb, grad averaging) in float64, stored as float32; the same operations
// in the same order as masksub's JS kernel (kernels/lamb.ts), norms included: their squares are
// summed in blocks of kLambBlock elements, four interleaved lanes per block, lanes joined as
// (0 + 1) + (2 + 3), blocks joined in order. The gradient is divided by `clip` first.
constexpr long kLambBlock = 8192;
struct LambArgs {
  double beta1, beta2, eps, lr, weight_decay, bias_correction1, bias_correction2, clip;
  bool adapt, trust_clip;
};
void lamb_update(const float* p, const float* g, const float* m, const float* v, float* p_out, float* m_out, float* v_out,
                 long n, const LambArgs& a, int threads);

// sum[i] += addend[i]: a gradient summed into the block of a partial sum its owner consumes
// (IEEE float32 adds, the same bits as any other x + y).
void add_into(float* sum, const float* addend, long n, int threads);

// out[id * inner + j] += x[s * inner + j] with id = ids[s], for s in order (ids outside
// [0, segments) skipped): gather's gradient. The adds into each output element run in the order of
// s, so the bits equal a sequential loop's; threads split the inner columns.
void segment_sum(const float* x, const int* ids, long positions, long inner, long segments, float* out, int threads);

// y = x transposed by perm (rank <= 8, perm[rank - 1] == rank - 1) for 4-byte elements: each row
// of y (its last axis, shape[rank - 1] elements) is one contiguous run of x, copied whole.
// Attention's head split and merge ([B, T, H, D] <-> [B, H, T, D]) and window partitions.
void permute_rows(const float* x, float* y, const long* shape, const int* perm, int rank, int threads);

// out[c] = sum_r x[r * cols + c] (bias gradients), accumulated in float32 per thread block.
void column_sums(const float* x, long rows, long cols, float* out, int threads);

// Training-mode batch norm over the rows of [rows, cols] (channels last): mean and biased
// variance per column (two passes), then y = (x - mean) / sqrt(var + eps) * gamma + beta.
void batch_norm_stats(const float* x, long rows, long cols, float* mean, float* var, int threads);
// Optionally fused with what follows it in a ResNet: `residual` (nullptr = none) is added to the
// normalised value, then max(0, .) when `relu`.
void batch_norm_apply(const float* x, const float* gamma, const float* beta, const float* mean, const float* var, float eps, long rows,
                      long cols, float* y, int threads, const float* residual = nullptr, bool relu = false);
// Its gradient with the statistics' dependence on x included (the closed form):
//   dx = gamma rstd (dy - mean(dy) - xhat mean(dy xhat)),  dgamma = sum dy xhat,  dbeta = sum dy.
// With `relu_out` (the forward's output y of a fused ReLU; nullptr = no ReLU) dy is first masked
// to dy * (y > 0); `dresidual` (nullptr = no residual) receives that masked dy, the gradient of
// the residual input.
void batch_norm_train_backward(const float* dy, const float* x, const float* mean, const float* var, const float* gamma, float eps,
                               long rows, long cols, float* dx, float* dgamma, float* dbeta, int threads,
                               const float* relu_out = nullptr, float* dresidual = nullptr);

}  // namespace masksub
