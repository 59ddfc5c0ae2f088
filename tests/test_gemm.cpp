// The training GEMMs (ops/gemm.h: f32 and BF16, the latter with each bf16_matmul implementation of
// ops/kernels.h) and the bf16 conversions of BF16 operands (ops/ops.h) against their scalar twins.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "core/dtype.h"
#include "core/error.h"
#include "kernel_paths.h"
#include "ops/gemm.h"
#include "ops/ops.h"

namespace dsv3 {
namespace {

TEST(Bf16Convert, BitExactWithTheScalarDefinition) {
  // Awkward values: ties (even and odd), NaNs, infinities, subnormals, the largest finite values.
  std::vector<uint32_t> bits = {0x00000000u, 0x80000000u, 0x3f808000u, 0x3f818000u, 0x3f80ffffu, 0x7f7fffffu,
                                0xff7fffffu, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0x7f800001u, 0xffa00000u,
                                0x00000001u, 0x807fffffu, 0x00008000u, 0x00018000u, 0x7f7f8000u};
  std::mt19937 rng(3);
  for (int i = 0; i < 5000; ++i) bits.push_back(rng());
  for (const int64_t cols : {1, 15, 16, 17, 33, 100}) {
    const int64_t rows = int64_t(bits.size()) / cols, ld = cols + 3;
    std::vector<float> x(size_t(rows * ld), 7.0f);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) std::memcpy(&x[size_t(r * ld + c)], &bits[size_t(r * cols + c)], 4);
    std::vector<uint16_t> fast(size_t(rows * cols)), slow(size_t(rows * cols));
    f32_to_bf16_2d(x.data(), rows, cols, ld, fast.data());
    reference::f32_to_bf16_2d(x.data(), rows, cols, ld, slow.data());
    ASSERT_EQ(fast, slow) << "cols " << cols;
    std::vector<float> wide(size_t(rows * cols)), wide_ref(size_t(rows * cols));
    bf16_to_f32_2d(fast.data(), rows, cols, cols, wide.data());
    reference::bf16_to_f32_2d(fast.data(), rows, cols, cols, wide_ref.data());
    ASSERT_EQ(std::memcmp(wide.data(), wide_ref.data(), wide.size() * sizeof(float)), 0);
  }
  EXPECT_EQ(f32_to_bf16(1.0f + 1.0f / 256), 0x3f80);  // tie to even: down
  EXPECT_EQ(f32_to_bf16(1.0f + 3.0f / 256), 0x3f82);  // tie to even: up
}

using GemmFn = void (*)(Trans, Trans, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t,
                        float, float*, int64_t);

// fast vs twin at sizes around the vector widths, every transpose, beta 0 and 1, padded strides.
void check_against_twin(GemmFn fast, GemmFn twin, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist;
  for (int64_t m : {1, 31, 33, 96})
    for (int64_t n : {7, 32, 65})
      for (int64_t k : {1, 33, 128})
        for (int ta = 0; ta < 2; ++ta)
          for (int tb = 0; tb < 2; ++tb)
            for (float beta : {0.0f, 1.0f}) {
              const int64_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
              std::vector<float> a(size_t((ta ? k : m) * lda)), b(size_t((tb ? n : k) * ldb)), c(size_t(m * ldc));
              for (float& v : a) v = dist(rng);
              for (float& v : b) v = dist(rng);
              for (float& v : c) v = dist(rng);
              std::vector<float> ref = c;
              fast(Trans(ta), Trans(tb), m, n, k, 0.5f, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
              twin(Trans(ta), Trans(tb), m, n, k, 0.5f, a.data(), lda, b.data(), ldb, beta, ref.data(), ldc);
              // The twins sum in double; f32 accumulation of k products (exact for bf16 operands) is off
              // by at most (k + 2)·2^-24·(Σ|a||b| + |beta·c|), and Σ|a||b| <~ 3k here.
              const double bound = double(k + 2) * 6e-8 * (3.0 * double(k) + 4.0);
              for (size_t i = 0; i < c.size(); ++i)
                ASSERT_NEAR(c[i], ref[i], bound) << "m=" << m << " n=" << n << " k=" << k << " ta=" << ta
                                                 << " tb=" << tb << " beta=" << beta;
            }
}

TEST(GemmF32, MatchesTheScalarTwinAllTransposes) {
  check_against_twin(static_cast<GemmFn>(&gemm), static_cast<GemmFn>(&reference::gemm), 19);
  std::vector<float> x(4);
  EXPECT_THROW(gemm(Trans::no, Trans::no, 2, 2, 2, 1.0f, x.data(), 1, x.data(), 2, 0.0f, x.data(), 2), Error);
}

class GemmBf16Kernels : public dsv3::testing::KernelChoiceTest {};
DSV3_KERNEL_CHOICES(GemmBf16Kernels, KernelFamily::bf16_matmul);

TEST_P(GemmBf16Kernels, MatchesTheScalarTwinAllTransposes) {
  check_against_twin(static_cast<GemmFn>(&gemm_bf16), static_cast<GemmFn>(&reference::gemm_bf16), 23);
}

TEST_P(GemmBf16Kernels, RoundsItsOperands) {
  // 1 + 2^-10 is not a bf16 value (8 significant bits): it rounds to 1, so a BF16 GEMM of ones gives k.
  const int64_t k = 64;
  std::vector<float> a(size_t(k), 1.0f + 1.0f / 1024), b(size_t(k), 1.0f);
  float c = 0, c32 = 0;
  gemm_bf16(Trans::no, Trans::no, 1, 1, k, 1.0f, a.data(), k, b.data(), 1, 0.0f, &c, 1);
  gemm(Trans::no, Trans::no, 1, 1, k, 1.0f, a.data(), k, b.data(), 1, 0.0f, &c32, 1);
  EXPECT_EQ(c, float(k));
  EXPECT_NEAR(c32, float(k) * (1.0f + 1.0f / 1024), 1e-4);
}

TEST_P(GemmBf16Kernels, TrainingShapes) {
  // The expert and projection shapes of the `small` training preset, against the scalar twin.
  std::mt19937 rng(29);
  std::normal_distribution<float> dist(0.0f, 0.05f);
  struct Shape {
    int64_t m, n, k;
  };
  for (const Shape s : {Shape{200, 256, 512}, Shape{256, 512, 200}, Shape{512, 96, 256}}) {
    std::vector<float> a(size_t(s.m * s.k)), b(size_t(s.n * s.k)), c(size_t(s.m * s.n)), ref(size_t(s.m * s.n));
    for (float& v : a) v = dist(rng);
    for (float& v : b) v = dist(rng);
    gemm_bf16(Trans::no, Trans::yes, s.m, s.n, s.k, 1.0f, a.data(), s.k, b.data(), s.k, 0.0f, c.data(), s.n);
    reference::gemm_bf16(Trans::no, Trans::yes, s.m, s.n, s.k, 1.0f, a.data(), s.k, b.data(), s.k, 0.0f, ref.data(),
                         s.n);
    double worst = 0;
    for (size_t i = 0; i < c.size(); ++i) worst = std::max(worst, double(std::fabs(c[i] - ref[i])));
    EXPECT_LT(worst, double(s.k + 2) * 6e-8 * double(s.k) * 0.05 * 0.05 * 3) << s.m << "x" << s.n << "x" << s.k;
  }
}

}  // namespace
}  // namespace dsv3
