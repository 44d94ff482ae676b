// NHWC 2-D convolution for training (forward, input gradient, filter gradient) as im2col +
// the packed AVX2 GEMM, threaded over images (see conv_avx2.cc). Filters are HWIO.
#pragma once

namespace masksub {

struct ConvShape {
  long batch, in_h, in_w, in_c;
  long out_h, out_w, out_c;
  long k_h, k_w;
  long stride_h, stride_w;
  long dilation_h, dilation_w;
  long pad_top, pad_left;  // zero padding before the first row / column (after is implied)
};

// y[n, oy, ox, co] = sum_{ky, kx, ci} x[n, oy*sh - pt + ky*dh, ox*sw - pl + kx*dw, ci] w[ky, kx, ci, co]
void conv2d_forward(const float* x, const float* w, float* y, const ConvShape& s, int threads);
// dx = the adjoint of conv2d_forward in x (dx is overwritten).
void conv2d_backprop_input(const float* dy, const float* w, float* dx, const ConvShape& s, int threads);
// dw = the adjoint of conv2d_forward in w (dw is overwritten).
void conv2d_backprop_filter(const float* x, const float* dy, float* dw, const ConvShape& s, int threads);

// Test hook: the patch-matrix budget per chunk of images (floats); returns the previous one.
// Small values make small tests walk several chunks per thread.
long set_conv_chunk_floats(long floats);

}  // namespace masksub
