// N-API entry point of masksub's native GEMM. This file is compiled WITHOUT -mavx2/-mfma: it
// checks the CPU first and refuses to load (a JS error, not SIGILL) when AVX2 or FMA is missing,
// before any code from the AVX2 library can run.
#include <node_api.h>

#include <string>
#include <thread>

#include "sgemm.h"

namespace {

napi_value Throw(napi_env env, const std::string& msg) {
  napi_throw_error(env, "ERR_MASKSUB_NATIVE", msg.c_str());
  return nullptr;
}

// The data of a Float32Array (a view on an ArrayBuffer or a SharedArrayBuffer, e.g. the wasm heap).
bool GetFloat32(napi_env env, napi_value v, const char* name, float** data, size_t* length) {
  bool is_typed = false;
  napi_is_typedarray(env, v, &is_typed);
  napi_typedarray_type type;
  void* ptr = nullptr;
  napi_value buffer;
  size_t offset = 0;
  if (!is_typed || napi_get_typedarray_info(env, v, &type, length, &ptr, &buffer, &offset) != napi_ok ||
      type != napi_float32_array) {
    Throw(env, std::string("sgemm: ") + name + " must be a Float32Array");
    return false;
  }
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
  if (!GetFloat32(env, argv[0], "a", &a, &a_len) || !GetFloat32(env, argv[1], "b", &b, &b_len) ||
      !GetFloat32(env, argv[2], "out", &out, &out_len))
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
      if (!GetFloat32(env, argv[11], "bias", &bias, &bias_len)) return nullptr;
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
  };
  napi_define_properties(env, exports, 2, props);
  napi_value threads;
  napi_create_int32(env, g_threads, &threads);
  napi_set_named_property(env, exports, "threads", threads);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
