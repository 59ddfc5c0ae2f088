// Element-wise and normalisation ops on f32 vectors. Each has a scalar twin in dsv3::reference
// (src/ops/reference/ops.cpp) that the vectorized version (src/ops/cpu/ops.cpp) is tested against.
// In-place use: `out` may alias the input in rmsnorm and silu_mul (element i is read before it is written).
#pragma once

#include <cstdint>

namespace dsv3 {

// DeepSeek's RMSNorm (SPEC.md §1, rms_norm_eps): per row, out = x · rsqrt(mean(x²) + eps) · weight,
// computed in f32. x, out: [n_rows, dim]; weight: [dim].
void rmsnorm(const float* x, const float* weight, float eps, float* out, int64_t n_rows, int64_t dim);

// SwiGLU gating of the experts and dense MLPs: out[i] = silu(gate[i]) · up[i], silu(g) = g / (1 + e^-g).
void silu_mul(const float* gate, const float* up, float* out, int64_t n);

// The gradient of silu_mul for the upstream dh: dgate = dh·up·silu'(gate), dup = dh·silu(gate), with
// silu'(g) = s·(1 + g·(1 − s)), s = sigmoid(g). Written; dgate and dup may alias dh.
void silu_mul_backward(const float* gate, const float* up, const float* dh, float* dgate, float* dup, int64_t n);

// RMSNorm's gradient over `rows` rows (row strides ldx, ldy, lddx), for y = x·r·w, r = (mean(x²)+eps)^-1/2:
//   dx += r·(dy ⊙ w) − x·r³·Σ(dy ⊙ w ⊙ x)/dim   (skipped when dx is null),   dweight += Σ_rows dy ⊙ x·r.
// Single-threaded: callers split rows and sum dweight partials in a fixed order.
void rmsnorm_backward(const float* x, int64_t ldx, const float* weight, const float* dy, int64_t ldy, int64_t rows,
                      int64_t dim, float eps, float* dx, int64_t lddx, float* dweight);

// x = softmax(x), subtracting max(x) first; -inf entries give exactly 0. n must be > 0.
void softmax_inplace(float* x, int64_t n);

void add_inplace(float* y, const float* x, int64_t n);   // y += x
void scale_inplace(float* x, float a, int64_t n);        // x *= a
float dot_f32(const float* a, const float* b, int64_t n);  // Σ a·b, f32 accumulation in several lanes
// Σ x over n floats read as `streams` (1..16) contiguous parts in lockstep, one vector from each per step,
// optionally with software prefetch 8 KB ahead in every part: how a GEMV reads several weight rows at once.
// The benchmarks' read-bandwidth probe (bench/bench_common.h) takes the fastest of these access patterns.
float stream_sum(const float* x, int64_t n, int streams, bool prefetch);
void axpy(float a, const float* x, float* y, int64_t n);   // y += a·x

// bfloat16 conversions of a [rows, cols] matrix with row stride ld into a packed [rows, cols] one
// (the operands of BF16 GEMMs): round to nearest even, bit-exact with dtype.h's f32_to_bf16 (NaN stays
// NaN, subnormals are rounded, not flushed), and the exact widening. Threaded over rows.
void f32_to_bf16_2d(const float* x, int64_t rows, int64_t cols, int64_t ld, uint16_t* out);
void bf16_to_f32_2d(const uint16_t* x, int64_t rows, int64_t cols, int64_t ld, float* out);

namespace reference {
void f32_to_bf16_2d(const float* x, int64_t rows, int64_t cols, int64_t ld, uint16_t* out);
void bf16_to_f32_2d(const uint16_t* x, int64_t rows, int64_t cols, int64_t ld, float* out);
// Scalar twins; reductions (rmsnorm's mean, softmax's sum, dot) accumulate in double.
void rmsnorm(const float* x, const float* weight, float eps, float* out, int64_t n_rows, int64_t dim);
void silu_mul(const float* gate, const float* up, float* out, int64_t n);
void silu_mul_backward(const float* gate, const float* up, const float* dh, float* dgate, float* dup, int64_t n);
void rmsnorm_backward(const float* x, int64_t ldx, const float* weight, const float* dy, int64_t ldy, int64_t rows,
                      int64_t dim, float eps, float* dx, int64_t lddx, float* dweight);
void softmax_inplace(float* x, int64_t n);
void add_inplace(float* y, const float* x, int64_t n);
void scale_inplace(float* x, float a, int64_t n);
float dot_f32(const float* a, const float* b, int64_t n);
void axpy(float a, const float* x, float* y, int64_t n);
float stream_sum(const float* x, int64_t n, int streams, bool prefetch);  // Σ x in double
}  // namespace reference

}  // namespace dsv3
