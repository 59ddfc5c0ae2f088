// Linear layers: y = x · Wᵀ for weights stored as in Hugging Face checkpoints ([out, in], row-major)
// in F32, BF16, F16 or FP8 E4M3 with 128×128 block scales (SPEC.md §1, "weight_scale_inv").
// FP8 weights stay one byte per parameter; they are dequantized inside the kernels.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "core/tensor.h"

namespace dsv3 {

struct LinearWeight {
  DType dtype = DType::F32;
  int64_t rows = 0;  // out features
  int64_t cols = 0;  // in features
  const void* data = nullptr;
  // FP8 only: scale_inv[(r / block) * ceil(cols / block) + c / block]; dequantized = value × scale.
  const float* scale_inv = nullptr;
  int64_t block = 128;

  int64_t scale_cols() const { return (cols + block - 1) / block; }
  // Dequantized element (reference definition).
  float at(int64_t r, int64_t c) const;
  size_t weight_bytes() const;  // bytes read by one pass over the weight (data + scales)
};

// What the activations are rounded to inside the kernel. `f32` is exact w.r.t. the stored weights
// (used by `dsv3 logits` and the tests); `bf16` rounds activations to bfloat16, as DeepSeek's
// reference inference does, and is the fast default for generation. `fp8` is DeepSeek's
// "activation_scheme": "dynamic" for FP8 weights: activations quantized on the fly to E4M3 per 1×128
// tile (scale amax/448), multiplied with the FP8 weight blocks with FP32 accumulation promoted every
// 128 products (ops/fp8.h); weights of other dtypes treat it as bf16.
enum class Precision { f32, bf16, fp8 };

// Which kernel family linear() uses: `automatic` picks by n_tokens (see gemm_min_tokens); the others
// force one, for benchmarks and tests.
enum class LinearPath { automatic, gemv, gemm };

// y[t, r] = Σ_c W[r, c] · x[t, c] for t < n_tokens. x: [n_tokens, cols], y: [n_tokens, rows], both f32.
// Dispatches to the fastest kernel for the dtype, shape and machine. Thread-safe (callers may run
// concurrently); uses the threads of parallel_for.
void linear(const LinearWeight& w, const float* x, float* y, int64_t n_tokens, Precision precision,
            LinearPath path = LinearPath::automatic);

// One product of a linear_group: y = x · Wᵀ for n_tokens rows of x.
struct LinearCall {
  const LinearWeight* w = nullptr;
  const float* x = nullptr;
  float* y = nullptr;
  int64_t n_tokens = 0;
};

// Runs each call as linear(w, x, y, n_tokens, precision) would, all of them in one parallel region:
// calls on the GEMV split by rows, calls on the GEMM each on one thread, shared out by an estimate of
// their time. GEMV results are identical to linear()'s; a GEMM's are oneDNN's on one thread (the same
// products; its blocking may sum them in another order). For the many small matrices of a MoE layer,
// where a parallel region per matrix costs as much as the matrix at decode and the experts' token
// counts differ by 100× in prefill. The calls' outputs must not overlap their inputs.
void linear_group(const LinearCall* calls, int64_t n_calls, Precision precision);

// Writes rows [row_begin, row_end) of W dequantized to f32 into out ([row_end - row_begin, cols]).
// For model code that needs a weight as numbers (e.g. MLA absorption of kv_b_proj). Single-threaded.
void dequantize_rows(const LinearWeight& w, int64_t row_begin, int64_t row_end, float* out);

// linear() uses oneDNN matmul (dequantizing non-F32 weights in row chunks) from this many tokens
// on; below it, a GEMV that streams the weight once for all tokens. Depends on the activations'
// precision where the GEMV kernel does (avx512_bf16 multiplies BF16 weights by bf16 activations only).
// Exposed for benchmarks and tests.
int64_t gemm_min_tokens(const LinearWeight& w, Precision precision = Precision::bf16);

namespace reference {
// The scalar twin every fast linear kernel is tested against (accumulates in double).
void linear(const LinearWeight& w, const float* x, float* y, int64_t n_tokens, Precision precision);
}  // namespace reference

}  // namespace dsv3
