// Which implementation each SIMD kernel family of src/ops/cpu runs.
//
// A build holds every implementation its target instruction set allows — an AVX-512 build also holds
// the AVX2 kernels that AVX2-only CPUs run, and every family keeps its scalar twin; the gemv family,
// which decode's speed rests on, holds its AVX2 and AVX-512 kernels in every x86-64 build, portable
// ones included, and lists those the CPU runs — and each family
// uses its best one unless told otherwise. Tests run every family with each of its implementations in
// turn (tests/test_kernel_paths.cpp and the kernels' own tests), so every path is exercised on every
// CPU the tests run on, not only the one this CPU would pick; benchmarks name the one they time.
//
//   family        implementations, best first (those this build and CPU have)
//   gemv          avx512_bf16, avx512, avx2, scalar  linear() for few tokens (ops/linear.h); chosen by
//                                                    the CPU at run time in any build (ops/cpu/gemv.cpp);
//                                                    avx512_bf16 differs from avx512 only for BF16
//                                                    weights with bf16 activations
//   fp8_convert   avx512, avx2, scalar               FP8 conversions and quantizers (ops/fp8.h)
//   fp8_gemm      avx512_bf16, avx512_fma, avx2_fma, scalar   fp8_gemm's default accumulation
//   bf16_matmul   onednn_bf16, f32_matmul            gemm_bf16 and fp8_gemm_by_runs (ops/gemm.h):
//                                                    oneDNN's bf16 matmul (AMX / AVX512-BF16), or the
//                                                    f32 matmul on the exactly widened operands
#pragma once

#include <string>
#include <vector>

namespace dsv3 {

enum class KernelFamily { gemv, fp8_convert, fp8_gemm, bf16_matmul };
inline constexpr KernelFamily kKernelFamilies[] = {KernelFamily::gemv, KernelFamily::fp8_convert,
                                                   KernelFamily::fp8_gemm, KernelFamily::bf16_matmul};
const char* kernel_family_name(KernelFamily family);

// The implementations of `family` this build holds and this CPU runs, best (the default) first; the
// last is always the scalar or portable one.
const std::vector<std::string>& kernel_variants(KernelFamily family);
// The implementation in use.
const std::string& active_kernel(KernelFamily family);
// Makes `family` use `variant` (one of kernel_variants; "" restores the default) until changed. Throws
// dsv3::Error naming the family's implementations otherwise. Call it between kernel calls, not while
// kernels of that family are running on other threads.
void select_kernel(KernelFamily family, const std::string& variant);

// select_kernel for a scope: the previous choice is restored on destruction.
class ScopedKernel {
 public:
  ScopedKernel(KernelFamily family, const std::string& variant);
  ~ScopedKernel();
  ScopedKernel(const ScopedKernel&) = delete;
  ScopedKernel& operator=(const ScopedKernel&) = delete;

 private:
  KernelFamily family_;
  std::string previous_;
};

}  // namespace dsv3
