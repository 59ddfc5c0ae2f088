// General matrix multiply for training (forward, input-gradient and weight-gradient GEMMs):
//
//   C = alpha · op(A) · op(B) + beta · C        all row-major
//
// op(A) is [m, k]: A is stored [m, k] with row stride lda, or with trans_a as [k, m] (its transpose).
// op(B) is [k, n]: B is stored [k, n] with row stride ldb, or with trans_b as [n, k].
// C is [m, n] with row stride ldc. With beta == 0, C is only written (its old contents may be NaN).
// Hugging Face weights are [out, in], so a linear layer y = x·Wᵀ is gemm(no, yes, ...), its input
// gradient dx = dy·W is gemm(no, no, ...) and its weight gradient dW += dyᵀ·x is gemm(yes, no, ..., beta 1).
//
// The f32 version runs oneDNN's matmul (threaded through OpenMP like the rest of dsv3; called from
// inside a parallel_for worker it runs on that thread alone). For a fixed thread count the result is
// deterministic. The f64 version is plain scalar code: it serves the double-precision gradient checks.
#pragma once

#include <cstdint>

namespace dsv3 {

enum class Trans : bool { no = false, yes = true };

void gemm(Trans trans_a, Trans trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

void gemm(Trans trans_a, Trans trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
          const double* b, int64_t ldb, double beta, double* c, int64_t ldc);

// BF16 GEMM: the arithmetic of a BF16 tensor-core/AMX GEMM. The operands are rounded to bfloat16
// (nearest even), their products accumulated in FP32 into the f32 C (same alpha/beta semantics). Runs
// oneDNN's bf16 matmul where the CPU has one (AMX, AVX512-BF16); elsewhere the f32 matmul on the
// rounded operands (bf16 × bf16 products are exact in f32, so only the summation order differs).
// The f32 overload rounds into per-thread buffers; the uint16_t overload takes bf16 bits as they are.
void gemm_bf16(Trans trans_a, Trans trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
               const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
void gemm_bf16(Trans trans_a, Trans trans_b, int64_t m, int64_t n, int64_t k, float alpha, const uint16_t* a,
               int64_t lda, const uint16_t* b, int64_t ldb, float beta, float* c, int64_t ldc);
// Whether gemm_bf16 runs on oneDNN's bf16 matmul: the bf16_matmul family's active implementation
// (ops/kernels.h) is "onednn_bf16", which it is by default where the CPU has one. Tests select
// "f32_matmul" to run the fallback on any machine.
bool has_native_bf16_gemm();

namespace reference {
// Scalar twin of gemm_bf16 (operands rounded to bf16, products accumulated in double).
void gemm_bf16(Trans trans_a, Trans trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
               const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
// Scalar twin of the f32 gemm (products accumulated in double), the reference it is tested against.
void gemm(Trans trans_a, Trans trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
}  // namespace reference

}  // namespace dsv3
