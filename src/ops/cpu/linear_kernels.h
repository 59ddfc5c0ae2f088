// Internal to src/ops/cpu: the pieces `linear` (linear.cpp) is assembled from.
//   gemv.cpp         — weight-streaming kernels for few tokens (decode, speculative batches, small MoE batches)
//   gemm_onednn.cpp  — oneDNN matmul for many tokens (prefill): f32 on dequantized row chunks, or bf16
//   linear_fp8.cpp   — FP8 weights × activations quantized per 1×128 tile (Precision::fp8)
#pragma once

#include <cstdint>

#include "ops/linear.h"

namespace dsv3::cpu {

// Activations are packed once per call, zero-padded to a multiple of 64 columns, in the order the
// weight decoder of the active gemv implementation produces weights (gemv_avx2.cpp, gemv_avx512.cpp):
//   natural:    x0, x1, ...                                       (F32, F16 weights; every scalar kernel)
//   even_odd:   chunks of 16, x0,x2,..,x14 | x1,x3,..,x15         (AVX2, BF16: decoding pairs of elements
//                                                                  from 32-bit lanes yields evens and odds apart)
//   quad:       chunks of 32, x0,x4,..,x28 | x1,x5,..,x29 | x2,.. | x3,..,x31
//                                                                 (AVX2, FP8: byte k of each 32-bit lane
//                                                                  decodes apart)
//   even_odd32: chunks of 32, x0,x2,..,x30 | x1,..,x31            (AVX-512, BF16)
//   quad64:     chunks of 64, part k (16 lanes) = x(4i + k)       (AVX-512, FP8)
//   bf16_pairs: x0, x1, ... as bf16 values over the first half of the row
//                                                                 (AVX512-BF16, BF16 weights, bf16 activations)
// and, for FP8 weights under a SIMD kernel, multiplied by a power of two (exact; see gemv.cpp).
enum class XLayout { natural, even_odd, quad, even_odd32, quad64, bf16_pairs };

constexpr int64_t kChunk = 16;      // AVX2: columns per step for 2-byte and 4-byte weights
constexpr int64_t kFp8Chunk = 32;   // AVX2: columns per step for FP8 weights
// Internal linkage: the SIMD files compiled with wider instruction sets must not emit a shared copy.
static inline int64_t padded_cols(int64_t cols) { return (cols + 63) / 64 * 64; }

// FP8 block sizes the active GEMV walks must be multiples of this (linear() sends others to the
// reference kernel).
int64_t gemv_fp8_block_multiple();

// x: [n_tokens, cols] -> out: [n_tokens, padded_cols(cols)] in the layout and scale for weights of
// `weight_dtype`, rounded to bf16 values first for Precision::bf16. y_scales[t] receives the power of
// two the GEMV multiplies token t's sums by (pass the array to gemv_rows).
void pack_activations(const float* x, int64_t n_tokens, int64_t cols, Precision precision, DType weight_dtype,
                      float* out, float* y_scales);

// y[t, r] for rows [row_begin, row_end), all n_tokens; x_packed from pack_activations.
// Single-threaded; linear.cpp splits rows across threads.
void gemv_rows(const LinearWeight& w, const float* x_packed, int64_t n_tokens, Precision precision,
               const float* y_scales, float* y, int64_t row_begin, int64_t row_end);

// Writes the dequantized rows [row_begin, row_end) of w to out ([row_end - row_begin, cols], f32).
// Vectorized (same decoders as the GEMV); single-threaded.
void dequantize_rows_f32(const LinearWeight& w, int64_t row_begin, int64_t row_end, float* out);

// oneDNN f32 matmul y[n_tokens, rows] = x · Wᵀ (x already rounded as the precision requires).
// Returns false when oneDNN cannot create the primitive (the caller falls back to the GEMV).
bool gemm_onednn(const LinearWeight& w, const float* x, int64_t n_tokens, float* y);

// BF16 weights with bf16-rounded activations on the bf16 matmul (AMX / AVX512-BF16): the same products
// as the f32 matmul on the widened weights. Returns false when the CPU has no bf16 matmul.
bool gemm_bf16_weights(const LinearWeight& w, const float* x, int64_t n_tokens, float* y);

// FP8 weights (128×128 blocks) with activations quantized per 1×128 tile (Precision::fp8): few tokens
// through fp8_gemm's register kernel, many through the bf16 matmul one 128-run at a time.
void linear_fp8_dynamic(const LinearWeight& w, const float* x, float* y, int64_t n_tokens);

}  // namespace dsv3::cpu
