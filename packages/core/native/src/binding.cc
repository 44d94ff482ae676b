// N-API entry point of masksub's native GEMM. This file is compiled WITHOUT -mavx2/-mfma: it
// checks the CPU first and refuses to load (a JS error, not SIGILL) when AVX2 or FMA is missing,
// before any code from the AVX2 library can run.
#include <node_api.h>

#include <string>
#include <thread>

#include "conv.h"
#include "fused.h"
#include "sgemm.h"

namespace {

napi_value Throw(napi_env env, const std::string& msg) {
  napi_throw_error(env, "ERR_MASKSUB_NATIVE", msg.c_str());
  return nullptr;
}

// The data of a typed array of `want` (a view on an ArrayBuffer or a SharedArrayBuffer, e.g. the
// wasm heap). Throws "<fn>: <name> must be a <what>" otherwise.
bool GetTyped(napi_env env, napi_value v, const char* fn, const char* name, napi_typedarray_type want, const char* what, void** data,
              size_t* length) {
  bool is_typed = false;
  napi_is_typedarray(env, v, &is_typed);
  napi_typedarray_type type;
  napi_value buffer;
  size_t offset = 0;
  if (!is_typed || napi_get_typedarray_info(env, v, &type, length, data, &buffer, &offset) != napi_ok || type != want) {
    Throw(env, std::string(fn) + ": " + name + " must be " + what);
    return false;
  }
  return true;
}

bool GetFloat32(napi_env env, napi_value v, const char* fn, const char* name, float** data, size_t* length) {
  void* ptr = nullptr;
  if (!GetTyped(env, v, fn, name, napi_float32_array, "a Float32Array", &ptr, length)) return false;
  *data = static_cast<float*>(ptr);
  return true;
}

bool GetInt(napi_env env, napi_value v, const char* name, long* out) {
  double d = 0;
  if (napi_get_value_double(env, v, &d) != napi_ok || d < 0 || d != static_cast<double>(static_cast<long>(d))) {
    Throw(env, std::string("sgemm: ") + name + " must be a non-negative integer");
    return false;
  }
  *out = static_cast<long>(d);
  return true;
}

bool GetBool(napi_env env, napi_value v, const char* name, bool* out) {
  if (napi_get_value_bool(env, v, out) != napi_ok) {
    Throw(env, std::string("sgemm: ") + name + " must be a boolean");
    return false;
  }
  return true;
}

int g_threads = 2;

// sgemm(a, b, out, batch, m, k, n, transA, transB, aBatchStride, bBatchStride, bias?, relu?)
napi_value Sgemm(napi_env env, napi_callback_info info) {
  size_t argc = 13;
  napi_value argv[13];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (argc < 11) return Throw(env, "sgemm: expected at least 11 arguments");
  masksub::GemmArgs g{};
  float *a, *b, *out;
  size_t a_len, b_len, out_len;
  if (!GetFloat32(env, argv[0], "sgemm", "a", &a, &a_len) || !GetFloat32(env, argv[1], "sgemm", "b", &b, &b_len) ||
      !GetFloat32(env, argv[2], "sgemm", "out", &out, &out_len))
    return nullptr;
  if (!GetInt(env, argv[3], "batch", &g.batch) || !GetInt(env, argv[4], "m", &g.m) || !GetInt(env, argv[5], "k", &g.k) ||
      !GetInt(env, argv[6], "n", &g.n) || !GetBool(env, argv[7], "transA", &g.trans_a) ||
      !GetBool(env, argv[8], "transB", &g.trans_b) || !GetInt(env, argv[9], "aBatchStride", &g.a_batch_stride) ||
      !GetInt(env, argv[10], "bBatchStride", &g.b_batch_stride))
    return nullptr;
  g.a = a;
  g.b = b;
  g.out = out;
  if (argc > 11) {
    napi_valuetype t;
    napi_typeof(env, argv[11], &t);
    if (t != napi_null && t != napi_undefined) {
      float* bias;
      size_t bias_len;
      if (!GetFloat32(env, argv[11], "sgemm", "bias", &bias, &bias_len)) return nullptr;
      if (static_cast<long>(bias_len) != g.n) return Throw(env, "sgemm: bias must have n elements");
      g.bias = bias;
    }
  }
  if (argc > 12 && !GetBool(env, argv[12], "relu", &g.relu)) return nullptr;
  // Bounds: every slice must lie inside its array (a wrong stride must not read past the heap).
  if (g.batch > 0 && g.m > 0 && g.n > 0) {
    const double last = static_cast<double>(g.batch - 1);
    if (last * g.a_batch_stride + static_cast<double>(g.m) * g.k > static_cast<double>(a_len))
      return Throw(env, "sgemm: a is too short for batch, m, k and aBatchStride");
    if (last * g.b_batch_stride + static_cast<double>(g.k) * g.n > static_cast<double>(b_len))
      return Throw(env, "sgemm: b is too short for batch, k, n and bBatchStride");
    if (static_cast<double>(g.batch) * g.m * g.n > static_cast<double>(out_len))
      return Throw(env, "sgemm: out is too short for batch x m x n");
  }
  masksub::sgemm(g, g_threads);
  return nullptr;
}

napi_value SetThreads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  long t = 0;
  if (argc < 1 || !GetInt(env, argv[0], "threads", &t) || t < 1) return Throw(env, "setThreads: expected an integer >= 1");
  g_threads = static_cast<int>(t);
  return nullptr;
}


// The fused kernels: argument parsing shared by all of them. `Args` reads positional arguments
// by name so that every error says which one is wrong.
struct Args {
  napi_env env;
  const char* fn;
  napi_value argv[20];
  size_t argc = 20;
  bool ok = true;
  Args(napi_env e, napi_callback_info info, const char* name, size_t want) : env(e), fn(name) {
    napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
    if (argc < want) fail(std::string("expected ") + std::to_string(want) + " arguments");
  }
  void fail(const std::string& msg) {
    if (ok) Throw(env, std::string(fn) + ": " + msg);
    ok = false;
  }
  float* f32(size_t i, const char* name, size_t* length) {
    float* data = nullptr;
    if (ok && !GetFloat32(env, argv[i], fn, name, &data, length)) ok = false;
    return data;
  }
  int* i32(size_t i, const char* name, size_t* length) {
    void* data = nullptr;
    if (ok && !GetTyped(env, argv[i], fn, name, napi_int32_array, "an Int32Array", &data, length)) ok = false;
    return static_cast<int*>(data);
  }
  double num(size_t i, const char* name) {
    double d = 0;
    if (ok && napi_get_value_double(env, argv[i], &d) != napi_ok) fail(std::string(name) + " must be a number");
    return d;
  }
  long count(size_t i, const char* name) {
    const double d = num(i, name);
    if (ok && (d < 1 || d != static_cast<double>(static_cast<long>(d)))) fail(std::string(name) + " must be a positive integer");
    return static_cast<long>(d);
  }
  // An optional Float32Array argument: nullptr when absent, null or undefined.
  float* optional_f32(size_t i, const char* name, size_t* length) {
    *length = 0;
    if (!ok || i >= argc) return nullptr;
    napi_valuetype t;
    napi_typeof(env, argv[i], &t);
    if (t == napi_null || t == napi_undefined) return nullptr;
    return f32(i, name, length);
  }
  bool optional_bool(size_t i, const char* name) {
    if (!ok || i >= argc) return false;
    napi_valuetype t;
    napi_typeof(env, argv[i], &t);
    if (t == napi_undefined) return false;
    bool v = false;
    if (napi_get_value_bool(env, argv[i], &v) != napi_ok) fail(std::string(name) + " must be a boolean");
    return v;
  }
  void same(size_t a, size_t b, const char* what) {
    if (ok && a != b) fail(std::string(what) + " (" + std::to_string(a) + " vs " + std::to_string(b) + ")");
  }
};

// An activation's forward f(x, y, n, threads) / backward f(x, dy, dx, n, threads): element-wise,
// equal lengths. geluForward / geluBackward (exact GELU), quickGeluForward / quickGeluBackward.
using ActivationForward = void (*)(const float*, float*, long, int);
using ActivationBackward = void (*)(const float*, const float*, float*, long, int);

napi_value RunActivationForward(napi_env env, napi_callback_info info, const char* name, ActivationForward fn) {
  Args a(env, info, name, 2);
  size_t nx, ny;
  const float* x = a.f32(0, "x", &nx);
  float* y = a.f32(1, "y", &ny);
  a.same(nx, ny, "x and y differ in length");
  if (a.ok) fn(x, y, static_cast<long>(nx), g_threads);
  return nullptr;
}

napi_value RunActivationBackward(napi_env env, napi_callback_info info, const char* name, ActivationBackward fn) {
  Args a(env, info, name, 3);
  size_t nx, ndy, ndx;
  const float* x = a.f32(0, "x", &nx);
  const float* dy = a.f32(1, "dy", &ndy);
  float* dx = a.f32(2, "dx", &ndx);
  a.same(nx, ndy, "x and dy differ in length");
  a.same(nx, ndx, "x and dx differ in length");
  if (a.ok) fn(x, dy, dx, static_cast<long>(nx), g_threads);
  return nullptr;
}

napi_value GeluForward(napi_env env, napi_callback_info info) { return RunActivationForward(env, info, "geluForward", masksub::gelu_forward); }
napi_value GeluBackward(napi_env env, napi_callback_info info) { return RunActivationBackward(env, info, "geluBackward", masksub::gelu_backward); }
napi_value QuickGeluForward(napi_env env, napi_callback_info info) {
  return RunActivationForward(env, info, "quickGeluForward", masksub::quick_gelu_forward);
}
napi_value QuickGeluBackward(napi_env env, napi_callback_info info) {
  return RunActivationBackward(env, info, "quickGeluBackward", masksub::quick_gelu_backward);
}

// layerNormForward(x, gamma, beta, eps, y, mean, rstd): rows = mean.length, cols = gamma.length.
napi_value LayerNormForward(napi_env env, napi_callback_info info) {
  Args a(env, info, "layerNormForward", 7);
  size_t nx, ng, nb, ny, nm, nr;
  const float* x = a.f32(0, "x", &nx);
  const float* gamma = a.f32(1, "gamma", &ng);
  const float* beta = a.f32(2, "beta", &nb);
  const double eps = a.num(3, "eps");
  float* y = a.f32(4, "y", &ny);
  float* mean = a.f32(5, "mean", &nm);
  float* rstd = a.f32(6, "rstd", &nr);
  a.same(ng, nb, "gamma and beta differ in length");
  a.same(nx, nm * ng, "x is not rows (mean.length) x cols (gamma.length)");
  a.same(nx, ny, "x and y differ in length");
  a.same(nm, nr, "mean and rstd differ in length");
  if (a.ok && ng == 0) a.fail("gamma is empty");
  if (a.ok) masksub::layer_norm_forward(x, gamma, beta, static_cast<float>(eps), static_cast<long>(nm), static_cast<long>(ng), y, mean, rstd, g_threads);
  return nullptr;
}

// layerNormBackward(dy, x, mean, rstd, gamma, dx, dgamma, dbeta).
napi_value LayerNormBackward(napi_env env, napi_callback_info info) {
  Args a(env, info, "layerNormBackward", 8);
  size_t ndy, nx, nm, nr, ng, ndx, ndg, ndb;
  const float* dy = a.f32(0, "dy", &ndy);
  const float* x = a.f32(1, "x", &nx);
  const float* mean = a.f32(2, "mean", &nm);
  const float* rstd = a.f32(3, "rstd", &nr);
  const float* gamma = a.f32(4, "gamma", &ng);
  float* dx = a.f32(5, "dx", &ndx);
  float* dgamma = a.f32(6, "dgamma", &ndg);
  float* dbeta = a.f32(7, "dbeta", &ndb);
  a.same(nx, nm * ng, "x is not rows (mean.length) x cols (gamma.length)");
  a.same(nx, ndy, "x and dy differ in length");
  a.same(nx, ndx, "x and dx differ in length");
  a.same(nm, nr, "mean and rstd differ in length");
  a.same(ng, ndg, "gamma and dgamma differ in length");
  a.same(ng, ndb, "gamma and dbeta differ in length");
  if (a.ok && ng == 0) a.fail("gamma is empty");
  if (a.ok)
    masksub::layer_norm_backward(dy, x, mean, rstd, gamma, static_cast<long>(nm), static_cast<long>(ng), dx, dgamma, dbeta, g_threads);
  return nullptr;
}

// softmaxForward(x, scale, cols, y) / softmaxBackward(y, dy, scale, cols, dx): over rows of cols.
napi_value SoftmaxForward(napi_env env, napi_callback_info info) {
  Args a(env, info, "softmaxForward", 4);
  size_t nx, ny;
  const float* x = a.f32(0, "x", &nx);
  const double scale = a.num(1, "scale");
  const long cols = a.count(2, "cols");
  float* y = a.f32(3, "y", &ny);
  a.same(nx, ny, "x and y differ in length");
  if (a.ok && nx % static_cast<size_t>(cols) != 0) a.fail("x's length is not a multiple of cols");
  if (a.ok) masksub::softmax_forward(x, static_cast<float>(scale), static_cast<long>(nx) / cols, cols, y, g_threads);
  return nullptr;
}

napi_value SoftmaxBackward(napi_env env, napi_callback_info info) {
  Args a(env, info, "softmaxBackward", 5);
  size_t ny, ndy, ndx;
  const float* y = a.f32(0, "y", &ny);
  const float* dy = a.f32(1, "dy", &ndy);
  const double scale = a.num(2, "scale");
  const long cols = a.count(3, "cols");
  float* dx = a.f32(4, "dx", &ndx);
  a.same(ny, ndy, "y and dy differ in length");
  a.same(ny, ndx, "y and dx differ in length");
  if (a.ok && ny % static_cast<size_t>(cols) != 0) a.fail("y's length is not a multiple of cols");
  if (a.ok) masksub::softmax_backward(y, dy, static_cast<float>(scale), static_cast<long>(ny) / cols, cols, dx, g_threads);
  return nullptr;
}

// The seven arrays of an Adam-family update (p, g, m, v, pOut, mOut, vOut), one length, and the
// hyper-parameters after them (beta1, beta2, eps, lr, weightDecay, biasCorrection1,
// biasCorrection2): what adamwUpdate and lambUpdate read first.
struct MomentUpdate {
  float* arrays[7];
  size_t n = 0;
  masksub::AdamWArgs h{};
  explicit MomentUpdate(Args& a) {
    const char* names[7] = {"p", "g", "m", "v", "pOut", "mOut", "vOut"};
    size_t lengths[7];
    for (size_t i = 0; i < 7; i++) arrays[i] = a.f32(i, names[i], &lengths[i]);
    for (size_t i = 1; i < 7; i++) a.same(lengths[0], lengths[i], (std::string(names[i]) + " differs in length from p").c_str());
    n = lengths[0];
    h = {a.num(7, "beta1"), a.num(8, "beta2"), a.num(9, "eps"), a.num(10, "lr"), a.num(11, "weightDecay"), a.num(12, "biasCorrection1"), a.num(13, "biasCorrection2")};
  }
};

// lambUpdate(p, g, m, v, pOut, mOut, vOut, beta1, beta2, eps, lr, weightDecay, biasCorrection1,
// biasCorrection2, clip, adapt, trustClip).
napi_value LambUpdate(napi_env env, napi_callback_info info) {
  Args a(env, info, "lambUpdate", 17);
  MomentUpdate u(a);
  const masksub::LambArgs h{u.h.beta1, u.h.beta2, u.h.eps, u.h.lr, u.h.weight_decay, u.h.bias_correction1, u.h.bias_correction2,
                            a.num(14, "clip"), a.optional_bool(15, "adapt"), a.optional_bool(16, "trustClip")};
  float** x = u.arrays;
  if (a.ok) masksub::lamb_update(x[0], x[1], x[2], x[3], x[4], x[5], x[6], static_cast<long>(u.n), h, g_threads);
  return nullptr;
}

// addInto(sum, addend): sum[i] += addend[i].
napi_value AddInto(napi_env env, napi_callback_info info) {
  Args a(env, info, "addInto", 2);
  size_t ns, na;
  float* sum = a.f32(0, "sum", &ns);
  const float* addend = a.f32(1, "addend", &na);
  a.same(ns, na, "sum and addend differ in length");
  if (a.ok) masksub::add_into(sum, addend, static_cast<long>(ns), g_threads);
  return nullptr;
}

// permuteRows(x, y, shape, perm): y = x transposed by perm (Int32Arrays of one length, 2-8,
// perm[rank - 1] = rank - 1), float32 (or int32 bits) of x.length = y.length = prod(shape).
napi_value PermuteRows(napi_env env, napi_callback_info info) {
  Args a(env, info, "permuteRows", 4);
  size_t nx, ny, ns, np;
  const float* x = a.f32(0, "x", &nx);
  float* y = a.f32(1, "y", &ny);
  const int* shape = a.i32(2, "shape", &ns);
  const int* perm = a.i32(3, "perm", &np);
  a.same(nx, ny, "x and y differ in length");
  a.same(ns, np, "shape and perm differ in length");
  if (a.ok && (ns < 2 || ns > 8)) a.fail("rank must be 2-8");
  if (!a.ok) return nullptr;
  const int rank = static_cast<int>(ns);
  long dims[8];
  bool seen[8] = {false};
  double size = 1;
  for (int d = 0; d < rank; d++) {
    if (shape[d] < 0) {
      a.fail("shape has a negative length");
      return nullptr;
    }
    if (perm[d] < 0 || perm[d] >= rank || seen[perm[d]]) {
      a.fail("perm is not a permutation of 0..rank-1");
      return nullptr;
    }
    seen[perm[d]] = true;
    dims[d] = shape[d];
    size *= shape[d];
  }
  if (perm[rank - 1] != rank - 1) {
    a.fail("perm must keep the last axis last");
    return nullptr;
  }
  if (size != static_cast<double>(nx)) {
    a.fail("x's length is not the product of shape");
    return nullptr;
  }
  masksub::permute_rows(x, y, dims, perm, rank, g_threads);
  return nullptr;
}

// segmentSum(x, ids, numSegments, out): out[ids[s], :] += x[s, :] (ids outside [0, numSegments)
// skipped); out holds numSegments rows of x.length / ids.length floats.
napi_value SegmentSum(napi_env env, napi_callback_info info) {
  Args a(env, info, "segmentSum", 4);
  size_t nx, nids, no;
  const float* x = a.f32(0, "x", &nx);
  const int* ids = a.i32(1, "ids", &nids);
  const long segments = a.count(2, "numSegments");
  float* out = a.f32(3, "out", &no);
  if (a.ok && (nids == 0 ? nx != 0 : nx % nids != 0)) a.fail("x's length is not a multiple of ids' length");
  const long inner = a.ok && nids > 0 ? static_cast<long>(nx / nids) : 0;
  a.same(no, static_cast<size_t>(segments * inner), "out's length is not numSegments x (x.length / ids.length)");
  if (a.ok && nids > 0) masksub::segment_sum(x, ids, static_cast<long>(nids), inner, segments, out, g_threads);
  return nullptr;
}

// columnSums(x, cols, out): out[c] = sum over rows of x[r, c].
napi_value ColumnSums(napi_env env, napi_callback_info info) {
  Args a(env, info, "columnSums", 3);
  size_t nx, no;
  const float* x = a.f32(0, "x", &nx);
  const long cols = a.count(1, "cols");
  float* out = a.f32(2, "out", &no);
  a.same(no, static_cast<size_t>(cols), "out's length is not cols");
  if (a.ok && nx % static_cast<size_t>(cols) != 0) a.fail("x's length is not a multiple of cols");
  if (a.ok) masksub::column_sums(x, static_cast<long>(nx) / cols, cols, out, g_threads);
  return nullptr;
}

// dropout(x, y, seed, rate): y = x * keep(seed, i) / (1 - rate); also the backward on dy.
napi_value Dropout(napi_env env, napi_callback_info info) {
  Args a(env, info, "dropout", 4);
  size_t nx, ny;
  const float* x = a.f32(0, "x", &nx);
  float* y = a.f32(1, "y", &ny);
  const double seed = a.num(2, "seed");
  const double rate = a.num(3, "rate");
  a.same(nx, ny, "x and y differ in length");
  if (a.ok && (seed < 0 || seed > 4294967295.0 || seed != static_cast<double>(static_cast<unsigned long>(seed))))
    a.fail("seed must be an integer in [0, 2^32)");
  if (a.ok && !(rate >= 0 && rate < 1)) a.fail("rate must be in [0, 1)");
  if (a.ok) masksub::dropout(x, y, static_cast<long>(nx), static_cast<unsigned>(seed), static_cast<float>(rate), g_threads);
  return nullptr;
}

// adamwUpdate(p, g, m, v, pOut, mOut, vOut, beta1, beta2, eps, lr, weightDecay, biasCorrection1, biasCorrection2).
napi_value AdamWUpdate(napi_env env, napi_callback_info info) {
  Args a(env, info, "adamwUpdate", 14);
  MomentUpdate u(a);
  float** x = u.arrays;
  if (a.ok) masksub::adamw_update(x[0], x[1], x[2], x[3], x[4], x[5], x[6], static_cast<long>(u.n), u.h, g_threads);
  return nullptr;
}

// conv2dForward(x, w, y, dims) / conv2dBackpropInput(dy, w, dx, dims) /
// conv2dBackpropFilter(x, dy, dw, dims), NHWC with HWIO filters. dims (an array of 15 integers):
// batch, inH, inW, inC, outH, outW, outC, kH, kW, strideH, strideW, dilationH, dilationW, padTop,
// padLeft. Every array's length is checked against dims, so no dims can read or write out of range.
enum class ConvKind { kForward, kBackpropInput, kBackpropFilter };

napi_value Conv2D(napi_env env, napi_callback_info info, ConvKind kind) {
  const char* fn = kind == ConvKind::kForward ? "conv2dForward" : kind == ConvKind::kBackpropInput ? "conv2dBackpropInput" : "conv2dBackpropFilter";
  Args a(env, info, fn, 4);
  size_t n0, n1, n2;
  const char* names[3] = {"x", "w", "y"};
  if (kind == ConvKind::kBackpropInput) names[0] = "dy", names[2] = "dx";
  if (kind == ConvKind::kBackpropFilter) names[1] = "dy", names[2] = "dw";
  const float* p0 = a.f32(0, names[0], &n0);
  const float* p1 = a.f32(1, names[1], &n1);
  float* p2 = a.f32(2, names[2], &n2);
  if (!a.ok) return nullptr;
  bool is_array = false;
  napi_is_array(env, a.argv[3], &is_array);
  uint32_t len = 0;
  if (is_array) napi_get_array_length(env, a.argv[3], &len);
  if (!is_array || len != 15) {
    a.fail("dims must be an array of 15 integers");
    return nullptr;
  }
  long d[15];
  for (uint32_t i = 0; i < 15; i++) {
    napi_value v;
    double x = -1;
    napi_get_element(env, a.argv[3], i, &v);
    if (napi_get_value_double(env, v, &x) != napi_ok || x < 0 || x > 1e9 || x != static_cast<double>(static_cast<long>(x))) {
      a.fail("dims[" + std::to_string(i) + "] must be a non-negative integer");
      return nullptr;
    }
    d[i] = static_cast<long>(x);
  }
  masksub::ConvShape s{d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12], d[13], d[14]};
  if (s.k_h < 1 || s.k_w < 1 || s.stride_h < 1 || s.stride_w < 1 || s.dilation_h < 1 || s.dilation_w < 1) {
    a.fail("kernel, stride and dilation must be >= 1");
    return nullptr;
  }
  const size_t x_len = static_cast<size_t>(s.batch * s.in_h * s.in_w * s.in_c);
  const size_t w_len = static_cast<size_t>(s.k_h * s.k_w * s.in_c * s.out_c);
  const size_t y_len = static_cast<size_t>(s.batch * s.out_h * s.out_w * s.out_c);
  const size_t want[3][3] = {{x_len, w_len, y_len}, {y_len, w_len, x_len}, {x_len, y_len, w_len}};
  const size_t* exp = want[static_cast<int>(kind)];
  const size_t got[3] = {n0, n1, n2};
  for (int i = 0; i < 3; i++) {
    if (got[i] != exp[i]) {
      a.fail(std::string(names[i]) + " has " + std::to_string(got[i]) + " elements, dims imply " + std::to_string(exp[i]));
      return nullptr;
    }
  }
  if (kind == ConvKind::kForward) masksub::conv2d_forward(p0, p1, p2, s, g_threads);
  else if (kind == ConvKind::kBackpropInput) masksub::conv2d_backprop_input(p0, p1, p2, s, g_threads);
  else masksub::conv2d_backprop_filter(p0, p1, p2, s, g_threads);
  return nullptr;
}

// batchNormStats(x, mean, var): channels = mean.length, rows = x.length / channels.
napi_value BatchNormStats(napi_env env, napi_callback_info info) {
  Args a(env, info, "batchNormStats", 3);
  size_t nx, nm, nv;
  const float* x = a.f32(0, "x", &nx);
  float* mean = a.f32(1, "mean", &nm);
  float* var = a.f32(2, "var", &nv);
  if (a.ok && nm == 0) a.fail("mean is empty");
  a.same(nm, nv, "mean and var differ in length");
  if (a.ok && nx % nm != 0) a.fail("x's length is not a multiple of the channel count (mean.length)");
  if (a.ok) masksub::batch_norm_stats(x, static_cast<long>(nx / nm), static_cast<long>(nm), mean, var, g_threads);
  return nullptr;
}

// batchNormApply(x, gamma, beta, mean, var, eps, y, residual?, relu?): y = relu?(bn(x) + residual?).
napi_value BatchNormApply(napi_env env, napi_callback_info info) {
  Args a(env, info, "batchNormApply", 7);
  size_t nx, ng, nb, nm, nv, ny;
  const float* x = a.f32(0, "x", &nx);
  const float* gamma = a.f32(1, "gamma", &ng);
  const float* beta = a.f32(2, "beta", &nb);
  const float* mean = a.f32(3, "mean", &nm);
  const float* var = a.f32(4, "var", &nv);
  const double eps = a.num(5, "eps");
  float* y = a.f32(6, "y", &ny);
  size_t nr = 0;
  const float* residual = a.optional_f32(7, "residual", &nr);
  const bool relu = a.optional_bool(8, "relu");
  if (a.ok && residual != nullptr) a.same(nx, nr, "x and residual differ in length");
  if (a.ok && ng == 0) a.fail("gamma is empty");
  a.same(ng, nb, "gamma and beta differ in length");
  a.same(ng, nm, "gamma and mean differ in length");
  a.same(ng, nv, "gamma and var differ in length");
  a.same(nx, ny, "x and y differ in length");
  if (a.ok && nx % ng != 0) a.fail("x's length is not a multiple of the channel count (gamma.length)");
  if (a.ok)
    masksub::batch_norm_apply(x, gamma, beta, mean, var, static_cast<float>(eps), static_cast<long>(nx / ng), static_cast<long>(ng), y, g_threads,
                              residual, relu);
  return nullptr;
}

// batchNormTrainBackward(dy, x, mean, var, gamma, eps, dx, dgamma, dbeta, reluOut?, dresidual?):
// reluOut is the forward's output when it fused a ReLU (dy is masked by reluOut > 0), dresidual
// receives the (masked) dy when it fused a residual add.
napi_value BatchNormTrainBackward(napi_env env, napi_callback_info info) {
  Args a(env, info, "batchNormTrainBackward", 9);
  size_t ndy, nx, nm, nv, ng, ndx, ndg, ndb;
  const float* dy = a.f32(0, "dy", &ndy);
  const float* x = a.f32(1, "x", &nx);
  const float* mean = a.f32(2, "mean", &nm);
  const float* var = a.f32(3, "var", &nv);
  const float* gamma = a.f32(4, "gamma", &ng);
  const double eps = a.num(5, "eps");
  float* dx = a.f32(6, "dx", &ndx);
  float* dgamma = a.f32(7, "dgamma", &ndg);
  float* dbeta = a.f32(8, "dbeta", &ndb);
  size_t nro = 0, ndr = 0;
  const float* relu_out = a.optional_f32(9, "reluOut", &nro);
  float* dresidual = a.optional_f32(10, "dresidual", &ndr);
  if (a.ok && relu_out != nullptr) a.same(nx, nro, "x and reluOut differ in length");
  if (a.ok && dresidual != nullptr) a.same(nx, ndr, "x and dresidual differ in length");
  if (a.ok && ng == 0) a.fail("gamma is empty");
  a.same(ng, nm, "gamma and mean differ in length");
  a.same(ng, nv, "gamma and var differ in length");
  a.same(ng, ndg, "gamma and dgamma differ in length");
  a.same(ng, ndb, "gamma and dbeta differ in length");
  a.same(nx, ndy, "x and dy differ in length");
  a.same(nx, ndx, "x and dx differ in length");
  if (a.ok && nx % ng != 0) a.fail("x's length is not a multiple of the channel count (gamma.length)");
  if (a.ok)
    masksub::batch_norm_train_backward(dy, x, mean, var, gamma, static_cast<float>(eps), static_cast<long>(nx / ng), static_cast<long>(ng), dx, dgamma,
                                       dbeta, g_threads, relu_out, dresidual);
  return nullptr;
}

// setConvChunkFloats(n) -> previous: test hook, see conv.h.
napi_value SetConvChunkFloats(napi_env env, napi_callback_info info) {
  Args a(env, info, "setConvChunkFloats", 1);
  const long n = a.count(0, "floats");
  if (!a.ok) return nullptr;
  napi_value out;
  napi_create_double(env, static_cast<double>(masksub::set_conv_chunk_floats(n)), &out);
  return out;
}

napi_value Conv2DForward(napi_env env, napi_callback_info info) { return Conv2D(env, info, ConvKind::kForward); }
napi_value Conv2DBackpropInput(napi_env env, napi_callback_info info) { return Conv2D(env, info, ConvKind::kBackpropInput); }
napi_value Conv2DBackpropFilter(napi_env env, napi_callback_info info) { return Conv2D(env, info, ConvKind::kBackpropFilter); }

napi_value Init(napi_env env, napi_value exports) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    return Throw(env, "masksub native gemm needs a CPU with AVX2 and FMA");
  }
  const unsigned hw = std::thread::hardware_concurrency();
  g_threads = hw == 0 ? 1 : static_cast<int>(hw < 8 ? hw : 8);
  napi_property_descriptor props[] = {
      {"sgemm", nullptr, Sgemm, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"setThreads", nullptr, SetThreads, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"geluForward", nullptr, GeluForward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"geluBackward", nullptr, GeluBackward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"quickGeluForward", nullptr, QuickGeluForward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"quickGeluBackward", nullptr, QuickGeluBackward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"layerNormForward", nullptr, LayerNormForward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"layerNormBackward", nullptr, LayerNormBackward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"softmaxForward", nullptr, SoftmaxForward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"softmaxBackward", nullptr, SoftmaxBackward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"columnSums", nullptr, ColumnSums, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"addInto", nullptr, AddInto, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"permuteRows", nullptr, PermuteRows, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"segmentSum", nullptr, SegmentSum, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"lambUpdate", nullptr, LambUpdate, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"dropout", nullptr, Dropout, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"adamwUpdate", nullptr, AdamWUpdate, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"batchNormStats", nullptr, BatchNormStats, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"batchNormApply", nullptr, BatchNormApply, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"batchNormTrainBackward", nullptr, BatchNormTrainBackward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"setConvChunkFloats", nullptr, SetConvChunkFloats, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"conv2dForward", nullptr, Conv2DForward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"conv2dBackpropInput", nullptr, Conv2DBackpropInput, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"conv2dBackpropFilter", nullptr, Conv2DBackpropFilter, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  napi_value threads;
  napi_create_int32(env, g_threads, &threads);
  napi_set_named_property(env, exports, "threads", threads);
  // Feature flags for arguments older builds would silently ignore (the JS side checks them).
  napi_value yes;
  napi_get_boolean(env, true, &yes);
  napi_set_named_property(env, exports, "batchNormEpilogue", yes);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
