{
  "targets": [
    {
      # The AVX2/FMA code lives in its own library so only it is compiled with -mavx2 -mfma;
      # the addon's entry point checks the CPU before calling into it. -ffp-contract=off: GCC
      # would otherwise fuse separate mul/add intrinsics into FMAs, so a product computed twice
      # (LayerNorm's backward) could round differently each time; explicit FMAs stay FMAs.
      "target_name": "sgemm_avx2",
      "type": "static_library",
      "sources": ["src/sgemm_avx2.cc", "src/fused_avx2.cc", "src/conv_avx2.cc", "src/batch_norm_avx2.cc"],
      "cflags": ["-fPIC"],
      "cflags_cc": ["-O3", "-mavx2", "-mfma", "-std=c++17", "-fno-math-errno", "-ffp-contract=off"],
      "cflags_cc!": ["-fno-exceptions"]
    },
    {
      "target_name": "masksub_native",
      "sources": ["src/binding.cc"],
      "dependencies": ["sgemm_avx2"],
      "cflags_cc": ["-O3", "-std=c++17"],
      "cflags_cc!": ["-fno-exceptions"],
      "libraries": ["-pthread"]
    }
  ]
}
