{
  "targets": [
    {
      # The AVX2/FMA code lives in its own library so only it is compiled with -mavx2 -mfma;
      # the addon's entry point checks the CPU before calling into it.
      "target_name": "sgemm_avx2",
      "type": "static_library",
      "sources": ["src/sgemm_avx2.cc"],
      "cflags": ["-fPIC"],
      "cflags_cc": ["-O3", "-mavx2", "-mfma", "-std=c++17", "-fno-math-errno"],
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
