// The kernel registry (ops/kernels.h): every family lists its implementations with the scalar or portable
// one last, selection and its errors, and — in a build for this machine (DSV3_NATIVE) — every SIMD path
// this CPU can run is in the build, so the parametrized kernel tests (kernel_paths.h) exercise all of them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "core/error.h"
#include "ops/kernels.h"
#include "test_support.h"

namespace dsv3 {
namespace {

bool has(KernelFamily family, const std::string& variant) {
  const std::vector<std::string>& v = kernel_variants(family);
  return std::find(v.begin(), v.end(), variant) != v.end();
}

TEST(KernelPaths, EveryFamilyEndsWithItsPortableTwinAndDefaultsToTheFirst) {
  for (KernelFamily f : kKernelFamilies) {
    const std::vector<std::string>& v = kernel_variants(f);
    ASSERT_FALSE(v.empty()) << kernel_family_name(f);
    EXPECT_EQ(v.back(), f == KernelFamily::bf16_matmul ? "f32_matmul" : "scalar") << kernel_family_name(f);
    EXPECT_EQ(active_kernel(f), v.front()) << kernel_family_name(f);
    std::string list;
    for (const std::string& name : v) list += " " + name;
    std::printf("[ kernels ] %-12s%s\n", kernel_family_name(f), list.c_str());
  }
}

TEST(KernelPaths, SelectionIsScopedAndUnknownNamesAreRefused) {
  for (KernelFamily f : kKernelFamilies) {
    const std::string first = kernel_variants(f).front(), last = kernel_variants(f).back();
    {
      ScopedKernel use(f, last);
      EXPECT_EQ(active_kernel(f), last);
    }
    EXPECT_EQ(active_kernel(f), first);
  }
  const std::string message = testing::error_of([] { select_kernel(KernelFamily::fp8_gemm, "avx1024"); });
  EXPECT_NE(message.find("[kernels] fp8_gemm has no implementation 'avx1024'"), std::string::npos) << message;
  EXPECT_NE(message.find("scalar"), std::string::npos) << message;
  select_kernel(KernelFamily::gemv, "");
  EXPECT_EQ(active_kernel(KernelFamily::gemv), kernel_variants(KernelFamily::gemv).front());
}

// A build for this machine holds every SIMD implementation the CPU can run (the kernels' own tests then
// run each of them); a portable build (DSV3_NATIVE=OFF) holds what its flags allow, and says so.
TEST(KernelPaths, NativeBuildHoldsEveryPathThisCpuRuns) {
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl");
  const bool avx512_bf16 = avx512 && __builtin_cpu_supports("avx512bf16");
  // The GEMV's SIMD files are compiled for their own instruction sets in every x86-64 build and chosen
  // by what the CPU has.
  const bool f16c_dq = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx512dq");
  EXPECT_EQ(has(KernelFamily::gemv, "avx2"), avx2 && __builtin_cpu_supports("f16c"));
  EXPECT_EQ(has(KernelFamily::gemv, "avx512"), avx2 && avx512 && f16c_dq);
  EXPECT_EQ(has(KernelFamily::gemv, "avx512_bf16"), avx2 && avx512_bf16 && f16c_dq);
#if defined(DSV3_NATIVE_BUILD)
  EXPECT_EQ(has(KernelFamily::fp8_convert, "avx2"), avx2);
  EXPECT_EQ(has(KernelFamily::fp8_gemm, "avx2_fma"), avx2);
  EXPECT_EQ(has(KernelFamily::fp8_convert, "avx512"), avx512);
  EXPECT_EQ(has(KernelFamily::fp8_gemm, "avx512_fma"), avx512);
  EXPECT_EQ(has(KernelFamily::fp8_gemm, "avx512_bf16"), avx512_bf16);
#else
  std::printf("[ kernels ] portable build: CPU has avx2 %d, avx512 %d, avx512_bf16 %d; the build holds what its "
              "flags allow\n", avx2, avx512, avx512_bf16);
#endif
  // oneDNN's bf16 matmul exists on CPUs with AVX512-BF16 or AMX (it decides at run time, in any build).
  if (avx512_bf16) {
    EXPECT_TRUE(has(KernelFamily::bf16_matmul, "onednn_bf16"));
  }
}

}  // namespace
}  // namespace dsv3
