#include "ops/ops.h"

#include "core/dtype.h"

#include <cmath>
#include <limits>

namespace dsv3::reference {

void rmsnorm(const float* x, const float* weight, float eps, float* out, int64_t n_rows, int64_t dim) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = out + r * dim;
    double sum_sq = 0;
    for (int64_t i = 0; i < dim; ++i) sum_sq += double(xr[i]) * xr[i];
    const float inv = float(1.0 / std::sqrt(sum_sq / double(dim) + double(eps)));
    for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * inv * weight[i];
  }
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    out[i] = float(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

void silu_mul_backward(const float* gate, const float* up, const float* dh, float* dgate, float* dup, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i], s = 1.0 / (1.0 + std::exp(-g)), d = dh[i], u = up[i];
    dgate[i] = float(d * u * s * (1.0 + g * (1.0 - s)));
    dup[i] = float(d * g * s);
  }
}

void rmsnorm_backward(const float* x, int64_t ldx, const float* weight, const float* dy, int64_t ldy, int64_t rows,
                      int64_t dim, float eps, float* dx, int64_t lddx, float* dweight) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    const float* dyr = dy + r * ldy;
    double sum_sq = 0, gx = 0;
    for (int64_t i = 0; i < dim; ++i) {
      sum_sq += double(xr[i]) * xr[i];
      gx += double(dyr[i]) * weight[i] * xr[i];
    }
    const double inv = 1.0 / std::sqrt(sum_sq / double(dim) + double(eps));
    for (int64_t i = 0; i < dim; ++i) {
      if (dx) dx[r * lddx + i] += float(inv * dyr[i] * weight[i] - xr[i] * inv * inv * inv * gx / double(dim));
      dweight[i] += float(double(dyr[i]) * xr[i] * inv);
    }
  }
}

void softmax_inplace(float* x, int64_t n) {
  float max_value = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) max_value = std::fmax(max_value, x[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(double(x[i]) - max_value);
  for (int64_t i = 0; i < n; ++i) x[i] = float(std::exp(double(x[i]) - max_value) / sum);
}

void add_inplace(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void scale_inplace(float* x, float a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] *= a;
}

float dot_f32(const float* a, const float* b, int64_t n) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += double(a[i]) * b[i];
  return float(sum);
}

void axpy(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

float stream_sum(const float* x, int64_t n, int /*streams*/, bool /*prefetch*/) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += x[i];
  return float(sum);
}

void f32_to_bf16_2d(const float* x, int64_t rows, int64_t cols, int64_t ld, uint16_t* out) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = f32_to_bf16(x[r * ld + c]);
}

void bf16_to_f32_2d(const uint16_t* x, int64_t rows, int64_t cols, int64_t ld, float* out) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = bf16_to_f32(x[r * ld + c]);
}

}  // namespace dsv3::reference
