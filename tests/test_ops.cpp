// Vectorized ops (src/ops/cpu/ops.cpp) against their scalar twins, at sizes around every vector width
// (AVX2 8 lanes, AVX-512 16) and DeepSeek-V3 sizes. Tolerances from error bounds (eps = 2^-24).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "ops/ops.h"

using namespace dsv3;

namespace {

constexpr double kEps = 0x1p-24;
const int64_t kSizes[] = {1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 129, 1000, 7168};

std::vector<float> random_vector(int64_t n, uint32_t seed, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = normal(rng);
  return v;
}

}  // namespace

TEST(Ops, RmsNormMatchesReference) {
  for (int64_t dim : kSizes) {
    const int64_t rows = 3;
    const std::vector<float> x = random_vector(rows * dim, uint32_t(dim), 3.0f);
    const std::vector<float> w = random_vector(dim, uint32_t(dim) + 1);
    std::vector<float> y(x.size()), ref(x.size());
    rmsnorm(x.data(), w.data(), 1e-6f, y.data(), rows, dim);
    reference::rmsnorm(x.data(), w.data(), 1e-6f, ref.data(), rows, dim);
    for (size_t i = 0; i < y.size(); ++i) {
      // Sum of squares in f32 (relative error <= dim·eps), then sqrt, divide and two products.
      const double bound = (double(dim) + 8) * kEps * std::fabs(double(ref[i])) + 1e-37;
      ASSERT_LE(std::fabs(double(y[i]) - double(ref[i])), bound) << "dim " << dim << " i " << i;
    }
  }
}

TEST(Ops, RmsNormInPlaceAndNormalises) {
  std::vector<float> x = random_vector(2 * 100, 5, 10.0f);
  const std::vector<float> ones(100, 1.0f);
  rmsnorm(x.data(), ones.data(), 0.0f, x.data(), 2, 100);
  for (int r = 0; r < 2; ++r) {
    double mean_sq = 0;
    for (int i = 0; i < 100; ++i) mean_sq += double(x[size_t(r * 100 + i)]) * x[size_t(r * 100 + i)];
    EXPECT_NEAR(mean_sq / 100, 1.0, 1e-5);
  }
}

TEST(Ops, SiluMulMatchesReference) {
  for (int64_t n : kSizes) {
    std::vector<float> g = random_vector(n, uint32_t(n) + 10, 6.0f);
    const std::vector<float> u = random_vector(n, uint32_t(n) + 11);
    if (n >= 4) {
      g[0] = -100.0f;  // e^100 overflows f32: must not be computed
      g[1] = 100.0f;
      g[2] = 0.0f;
      g[3] = -87.5f;
    }
    std::vector<float> y(static_cast<size_t>(n)), ref(static_cast<size_t>(n));
    silu_mul(g.data(), u.data(), y.data(), n);
    reference::silu_mul(g.data(), u.data(), ref.data(), n);
    for (size_t i = 0; i < y.size(); ++i) {
      // Exp within 1 ulp, then add, divide, multiply: a few ulp relative.
      const double bound = 8 * kEps * std::fabs(double(ref[i])) + 1e-38;
      ASSERT_LE(std::fabs(double(y[i]) - double(ref[i])), bound) << "n " << n << " g " << g[i];
    }
  }
}

TEST(Ops, SoftmaxMatchesReference) {
  for (int64_t n : kSizes) {
    std::vector<float> x = random_vector(n, uint32_t(n) + 20, 8.0f);
    if (n >= 3) x[size_t(n / 2)] = -INFINITY;  // masked position
    std::vector<float> ref = x;
    const std::vector<float> in = x;
    softmax_inplace(x.data(), n);
    reference::softmax_inplace(ref.data(), n);
    float max_in = -INFINITY;
    for (float v : in) max_in = std::fmax(max_in, v);
    double sum = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      sum += x[i];
      if (std::isinf(in[i])) {
        EXPECT_EQ(x[i], 0.0f);
        continue;
      }
      // Rounding of (x - max) moves e^(x-max) by |x - max|·eps relative; the f32 sum adds n·eps.
      const double bound = (double(n) + 16 + std::fabs(double(in[i]) - max_in)) * kEps * double(ref[i]) + 1e-38;
      ASSERT_LE(std::fabs(double(x[i]) - double(ref[i])), bound) << "n " << n << " i " << i;
    }
    EXPECT_NEAR(sum, 1.0, 1e-5);
  }
}

TEST(Ops, SoftmaxOfEqualValuesIsUniform) {
  std::vector<float> x(37, 3.5f);
  softmax_inplace(x.data(), 37);
  for (float v : x) EXPECT_FLOAT_EQ(v, 1.0f / 37);
}

TEST(Ops, AddScaleAxpyDotMatchReference) {
  for (int64_t n : kSizes) {
    const std::vector<float> a = random_vector(n, uint32_t(n) + 30);
    const std::vector<float> b = random_vector(n, uint32_t(n) + 31);

    std::vector<float> y = b, ref = b;
    add_inplace(y.data(), a.data(), n);
    reference::add_inplace(ref.data(), a.data(), n);
    EXPECT_EQ(y, ref) << "add n " << n;

    y = a;
    ref = a;
    scale_inplace(y.data(), -1.7f, n);
    reference::scale_inplace(ref.data(), -1.7f, n);
    EXPECT_EQ(y, ref) << "scale n " << n;

    y = b;
    ref = b;
    axpy(0.3f, a.data(), y.data(), n);
    reference::axpy(0.3f, a.data(), ref.data(), n);
    for (size_t i = 0; i < y.size(); ++i) {
      // fused vs separate multiply-add: at most one extra rounding of the product and of the sum
      const double bound = 2 * kEps * (std::fabs(0.3 * a[i]) + std::fabs(double(b[i])) + std::fabs(double(ref[i])));
      ASSERT_LE(std::fabs(double(y[i]) - double(ref[i])), bound) << "axpy n " << n;
    }

    double mag = 0;
    for (size_t i = 0; i < a.size(); ++i) mag += std::fabs(double(a[i]) * b[i]);
    const float d = dot_f32(a.data(), b.data(), n);
    const float dref = reference::dot_f32(a.data(), b.data(), n);
    EXPECT_LE(std::fabs(double(d) - double(dref)), (double(n) + 4) * kEps * mag) << "dot n " << n;
  }
}
