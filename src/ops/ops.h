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

// x = softmax(x), subtracting max(x) first; -inf entries give exactly 0. n must be > 0.
void softmax_inplace(float* x, int64_t n);

void add_inplace(float* y, const float* x, int64_t n);   // y += x
void scale_inplace(float* x, float a, int64_t n);        // x *= a
float dot_f32(const float* a, const float* b, int64_t n);  // Σ a·b, f32 accumulation in several lanes
void axpy(float a, const float* x, float* y, int64_t n);   // y += a·x

namespace reference {
// Scalar twins; reductions (rmsnorm's mean, softmax's sum, dot) accumulate in double.
void rmsnorm(const float* x, const float* weight, float eps, float* out, int64_t n_rows, int64_t dim);
void silu_mul(const float* gate, const float* up, float* out, int64_t n);
void softmax_inplace(float* x, int64_t n);
void add_inplace(float* y, const float* x, int64_t n);
void scale_inplace(float* x, float a, int64_t n);
float dot_f32(const float* a, const float* b, int64_t n);
void axpy(float a, const float* x, float* y, int64_t n);
}  // namespace reference

}  // namespace dsv3
