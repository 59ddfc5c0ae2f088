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

// The read-bandwidth probe's kernel: every element counted once, for every split into streams (parts
// that are not whole vectors leave a remainder for the tail), with and without prefetch.
TEST(Ops, StreamSumMatchesReference) {
  for (int64_t n : {int64_t(1), int64_t(17), int64_t(1000), int64_t(7168), int64_t(100003)}) {
    const std::vector<float> x = random_vector(n, uint32_t(n) + 40);
    double mag = 0;
    for (float v : x) mag += std::fabs(v);
    const float ref = reference::stream_sum(x.data(), n, 1, false);
    for (int streams : {1, 2, 3, 4, 8, 16})
      for (bool prefetch : {false, true})
        EXPECT_LE(std::fabs(double(stream_sum(x.data(), n, streams, prefetch)) - double(ref)),
                  (double(n) + 4) * kEps * mag)
            << "n " << n << " streams " << streams << " prefetch " << prefetch;
  }
}

TEST(Ops, SiluMulBackwardMatchesReference) {
  for (int64_t n : kSizes) {
    std::vector<float> g = random_vector(n, uint32_t(n) + 20, 6.0f);
    const std::vector<float> u = random_vector(n, uint32_t(n) + 21), dh = random_vector(n, uint32_t(n) + 22);
    if (n >= 4) {
      g[0] = -100.0f;
      g[1] = 100.0f;
      g[2] = 0.0f;
      g[3] = -87.5f;
    }
    std::vector<float> dg(static_cast<size_t>(n)), du(static_cast<size_t>(n)), dg_ref(static_cast<size_t>(n)),
        du_ref(static_cast<size_t>(n));
    silu_mul_backward(g.data(), u.data(), dh.data(), dg.data(), du.data(), n);
    reference::silu_mul_backward(g.data(), u.data(), dh.data(), dg_ref.data(), du_ref.data(), n);
    for (size_t i = 0; i < size_t(n); ++i) {
      // du: as silu_mul (a few ulp). dg = dh·u·s·(1 + g·(1 − s)): 1 − s cancels for large g, so the
      // bound is relative to the terms' magnitude dh·u·s·(1 + |g|).
      ASSERT_LE(std::fabs(double(du[i]) - du_ref[i]), 8 * kEps * std::fabs(double(du_ref[i])) + 1e-38) << n;
      const double s = 1.0 / (1.0 + std::exp(-double(g[i])));
      const double scale = std::fabs(double(dh[i]) * u[i] * s) * (1.0 + std::fabs(double(g[i])));
      ASSERT_LE(std::fabs(double(dg[i]) - dg_ref[i]), 16 * kEps * scale + 1e-38) << n << " g " << g[i];
    }
    // In place: dgate and dup may alias dh.
    std::vector<float> h = dh;
    silu_mul_backward(g.data(), u.data(), h.data(), h.data(), du.data(), n);
    for (size_t i = 0; i < size_t(n); ++i) ASSERT_EQ(h[i], dg[i]);
  }
}

TEST(Ops, RmsNormBackwardMatchesReference) {
  for (int64_t dim : kSizes) {
    const int64_t rows = 3, ld = dim + 5;
    const std::vector<float> x = random_vector(rows * ld, uint32_t(dim) + 30, 3.0f);
    const std::vector<float> w = random_vector(dim, uint32_t(dim) + 31), dy = random_vector(rows * ld, uint32_t(dim) + 32);
    std::vector<float> dx = random_vector(rows * ld, uint32_t(dim) + 33), dx_ref = dx;
    std::vector<float> dw = random_vector(dim, uint32_t(dim) + 34), dw_ref = dw;
    rmsnorm_backward(x.data(), ld, w.data(), dy.data(), ld, rows, dim, 1e-6f, dx.data(), ld, dw.data());
    reference::rmsnorm_backward(x.data(), ld, w.data(), dy.data(), ld, rows, dim, 1e-6f, dx_ref.data(), ld,
                                dw_ref.data());
    // Sums over dim in f32 (relative error <= dim·eps of Σ|terms|) feed every output; bound by the
    // magnitudes: |dx| terms ~ r·|dy·w| + r³·|x|·Σ|dy·w·x|/dim, all O(1) here.
    for (int64_t r = 0; r < rows; ++r) {
      double abs_sum = 0, sum_sq = 0;
      for (int64_t i = 0; i < dim; ++i) {
        abs_sum += std::fabs(double(dy[size_t(r * ld + i)]) * w[size_t(i)] * x[size_t(r * ld + i)]);
        sum_sq += double(x[size_t(r * ld + i)]) * x[size_t(r * ld + i)];
      }
      const double inv = 1.0 / std::sqrt(sum_sq / double(dim) + 1e-6);
      for (int64_t i = 0; i < dim; ++i) {
        const size_t at = size_t(r * ld + i);
        const double terms = inv * std::fabs(double(dy[at]) * w[size_t(i)]) +
                             std::fabs(double(x[at])) * inv * inv * inv * abs_sum / double(dim) + std::fabs(dx_ref[at]);
        ASSERT_LE(std::fabs(double(dx[at]) - dx_ref[at]), (double(dim) + 16) * kEps * terms) << dim << " " << i;
      }
    }
    for (int64_t i = 0; i < dim; ++i) {
      double terms = std::fabs(dw_ref[size_t(i)]);
      for (int64_t r = 0; r < rows; ++r) terms += 4 * std::fabs(double(dy[size_t(r * ld + i)]) * x[size_t(r * ld + i)]);
      ASSERT_LE(std::fabs(double(dw[size_t(i)]) - dw_ref[size_t(i)]), (double(dim) + 16) * kEps * terms) << dim;
    }
  }
}
