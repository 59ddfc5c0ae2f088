// FP8 GEMM (src/ops/fp8.h): every kernel this build holds (ops/kernels.h fp8_gemm family, and
// fp8_gemm_by_runs on each bf16_matmul implementation) against its scalar twin — bit for bit where the
// arithmetic allows — and against a float64 reference on the dequantized operands (error bound from
// fp8_gemm_error_bound); the three training GEMM layouts; and the emulated narrow tensor-core
// accumulator with and without promotion at K = 4096.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/parallel.h"
#include "kernel_paths.h"
#include "ops/fp8.h"
#include "ops/gemm.h"

using namespace dsv3;

namespace {

// A quantized matrix that owns its storage.
struct Quantized {
  std::vector<uint8_t> q;
  std::vector<float> s;
  Fp8Matrix m;
};

Quantized quantize(const std::vector<float>& x, int64_t rows, int64_t cols, Fp8Format f, Fp8Tiling t) {
  Quantized r;
  r.q.resize(size_t(rows * cols));
  r.s.resize(size_t(fp8_scale_rows(t, rows) * fp8_scale_cols(t, cols)));
  quantize_fp8(x.data(), rows, cols, f, t, false, r.q.data(), r.s.data());
  r.m = Fp8Matrix{r.q.data(), r.s.data(), rows, cols, f, t};
  return r;
}

std::vector<float> random_normal(int64_t n, uint32_t seed, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = normal(rng);
  return x;
}

// Random operand [outer, k] stored directly or as its transpose [k, outer], quantized with tiling t.
struct Operand {
  Quantized storage;
  Fp8Operand op;
};
Operand random_operand(int64_t outer, int64_t k, Fp8Format f, Fp8Tiling t, bool transposed, uint32_t seed) {
  Operand r;
  const int64_t rows = transposed ? k : outer, cols = transposed ? outer : k;
  r.storage = quantize(random_normal(rows * cols, seed), rows, cols, f, t);
  r.op = Fp8Operand{r.storage.m, transposed};
  return r;
}

// Σ_k A·B and Σ_k |A·B| in double on the dequantized operands.
void exact_gemm(const Fp8Operand& a, const Fp8Operand& b, std::vector<double>& c, std::vector<double>& abs_dot) {
  const int64_t m_len = a.outer(), n_len = b.outer(), k_len = a.inner();
  std::vector<double> ad(size_t(m_len * k_len)), bd(size_t(n_len * k_len));
  for (int64_t i = 0; i < m_len; ++i)
    for (int64_t k = 0; k < k_len; ++k) ad[size_t(i * k_len + k)] = double(a.value(i, k)) * double(a.scale(i, k));
  for (int64_t i = 0; i < n_len; ++i)
    for (int64_t k = 0; k < k_len; ++k) bd[size_t(i * k_len + k)] = double(b.value(i, k)) * double(b.scale(i, k));
  c.assign(size_t(m_len * n_len), 0.0);
  abs_dot.assign(size_t(m_len * n_len), 0.0);
  for (int64_t m = 0; m < m_len; ++m)
    for (int64_t n = 0; n < n_len; ++n) {
      double s = 0, t = 0;
      for (int64_t k = 0; k < k_len; ++k) {
        const double p = ad[size_t(m * k_len + k)] * bd[size_t(n * k_len + k)];
        s += p;
        t += std::fabs(p);
      }
      c[size_t(m * n_len + n)] = s;
      abs_dot[size_t(m * n_len + n)] = t;
    }
}

bool kernel_is_k_ordered() { return std::string(fp8_gemm_kernel()) != "avx512_bf16"; }

// An operand whose every sum is exact in f32 in any order: E4M3 codes with exponents 2^0..2^3 (values
// 1..15 in steps of 1/8, so products are multiples of 2^-6 below 2^8) and power-of-two scales that
// depend on the outer index only (so sA·sB is the same for every run of an output). A run of 128
// products stays below 2^15, and three promoted runs below 2^17: at most 23 bits of multiples of
// 2^-6·sA·sB. Every kernel, whatever its order of summation, must give the reference's bits here.
Operand exact_sum_operand(int64_t outer, int64_t k, Fp8Tiling t, bool transposed, uint32_t seed) {
  Operand r;
  const int64_t rows = transposed ? k : outer, cols = transposed ? outer : k;
  std::mt19937 rng(seed);
  r.storage.q.resize(size_t(rows * cols));
  for (uint8_t& code : r.storage.q) {
    const uint32_t bits = rng();
    code = uint8_t((bits & 0x80) | ((7 + (bits >> 8) % 4) << 3) | ((bits >> 16) & 7));
  }
  const int64_t scale_rows = fp8_scale_rows(t, rows), scale_cols = fp8_scale_cols(t, cols);
  r.storage.s.resize(size_t(scale_rows * scale_cols));
  for (int64_t i = 0; i < scale_rows; ++i)
    for (int64_t j = 0; j < scale_cols; ++j) {
      const int64_t outer = transposed ? j : i;
      r.storage.s[size_t(i * scale_cols + j)] = std::ldexp(1.0f, int((outer * 7 + seed) % 5) - 2);
    }
  r.storage.m = Fp8Matrix{r.storage.q.data(), r.storage.s.data(), rows, cols, Fp8Format::e4m3, t};
  r.op = Fp8Operand{r.storage.m, transposed};
  return r;
}

// fp8_gemm with each implementation of the fp8_gemm family.
class Fp8GemmKernels : public dsv3::testing::KernelChoiceTest {};
DSV3_KERNEL_CHOICES(Fp8GemmKernels, KernelFamily::fp8_gemm);

// fp8_gemm_by_runs with each implementation of the bf16_matmul family (oneDNN's bf16 matmul where the CPU
// has one, and the fallback every CPU runs).
class Fp8GemmByRuns : public dsv3::testing::KernelChoiceTest {};
DSV3_KERNEL_CHOICES(Fp8GemmByRuns, KernelFamily::bf16_matmul);

struct Layout {
  const char* name;
  Fp8Tiling a_tiling;
  bool a_transposed;
  Fp8Tiling b_tiling;
  bool b_transposed;
};
constexpr Layout kLayouts[] = {
    {"fprop", Fp8Tiling::tile_1x128, false, Fp8Tiling::block_128x128, false},
    {"dgrad", Fp8Tiling::tile_1x128, false, Fp8Tiling::block_128x128, true},
    {"wgrad", Fp8Tiling::tile_128x1, true, Fp8Tiling::tile_128x1, true},
    {"blocks", Fp8Tiling::block_128x128, true, Fp8Tiling::tile_1x128, false},
};

// Error figures of c against exact, over elements whose |exact| is at least the RMS of exact (the
// elements not dominated by cancellation, where a relative error means something).
struct ErrorStats {
  double max_rel = 0;       // max |c - exact| / |exact| over those elements
  double max_abs_norm = 0;  // max |c - exact| / max |exact| over all elements
};
ErrorStats error_stats(const std::vector<float>& c, const std::vector<double>& exact) {
  double rms = 0, max_exact = 0;
  for (double e : exact) rms += e * e, max_exact = std::max(max_exact, std::fabs(e));
  rms = std::sqrt(rms / double(exact.size()));
  ErrorStats s;
  for (size_t i = 0; i < exact.size(); ++i) {
    const double err = std::fabs(double(c[i]) - exact[i]);
    s.max_abs_norm = std::max(s.max_abs_norm, err / max_exact);
    if (std::fabs(exact[i]) >= rms) s.max_rel = std::max(s.max_rel, err / std::fabs(exact[i]));
  }
  return s;
}

}  // namespace

// Fast kernel vs reference (bit-exact for the k-ordered kernels) and vs float64 (error bound), at sizes
// around the register tiles (6×16, 12×32) and the 128-runs of k, for every operand layout.
TEST_P(Fp8GemmKernels, FastMatchesReferenceAndBound) {
  const int64_t shapes[][3] = {{1, 1, 1},     {1, 33, 7},  {5, 17, 130},   {13, 31, 257}, {6, 16, 128},
                               {12, 32, 256}, {7, 1, 129}, {97, 100, 384}, {50, 257, 200}};
  std::printf("[ fp8 gemm ] kernel %s\n", fp8_gemm_kernel());
  uint32_t seed = 1;
  for (auto [m_len, n_len, k_len] : shapes)
    for (const Layout& l : kLayouts)
      for (Fp8Format bf : {Fp8Format::e4m3, Fp8Format::e5m2}) {
        const Operand a = random_operand(m_len, k_len, Fp8Format::e4m3, l.a_tiling, l.a_transposed, seed++);
        const Operand b = random_operand(n_len, k_len, bf, l.b_tiling, l.b_transposed, seed++);
        std::vector<float> c(size_t(m_len * n_len), -1.0f), c_ref(c.size(), -2.0f);
        fp8_gemm(a.op, b.op, c.data());
        reference::fp8_gemm(a.op, b.op, c_ref.data());
        std::vector<double> exact, abs_dot;
        exact_gemm(a.op, b.op, exact, abs_dot);
        const std::string where = std::string(l.name) + " " + std::to_string(m_len) + "x" + std::to_string(n_len) +
                                  "x" + std::to_string(k_len) + " B " + fp8_format_name(bf);
        int64_t bad = 0;
        for (size_t i = 0; i < c.size(); ++i) {
          const double bound = fp8_gemm_error_bound(k_len, abs_dot[i]);
          if (kernel_is_k_ordered()) bad += f32_to_bits(c[i]) != f32_to_bits(c_ref[i]);
          bad += std::fabs(double(c[i]) - exact[i]) > bound;
          bad += std::fabs(double(c_ref[i]) - exact[i]) > bound;
          if (bad && bad < 3)
            ADD_FAILURE() << where << " element " << i << ": fast " << c[i] << " ref " << c_ref[i] << " exact "
                          << exact[i] << " bound " << bound;
        }
        EXPECT_EQ(bad, 0) << where << " (kernel " << fp8_gemm_kernel() << ")";
      }
}

// Fprop, Dgrad and Wgrad of a linear layer y = x·Wᵀ, quantized as DeepSeek does, against float64
// sums written out with the layers' own index formulas (so the layouts mean what fp8.h says).
TEST_P(Fp8GemmKernels, TrainingGemmLayouts) {
  const int64_t tokens = 130, in = 200, out = 260;
  const std::vector<float> x = random_normal(tokens * in, 1), w = random_normal(out * in, 2, 0.02f),
                           dy = random_normal(tokens * out, 3, 1e-3f);
  const Quantized x_1x128 = quantize(x, tokens, in, Fp8Format::e4m3, Fp8Tiling::tile_1x128);
  const Quantized x_128x1 = quantize(x, tokens, in, Fp8Format::e4m3, Fp8Tiling::tile_128x1);
  const Quantized w_blocks = quantize(w, out, in, Fp8Format::e4m3, Fp8Tiling::block_128x128);
  const Quantized dy_1x128 = quantize(dy, tokens, out, Fp8Format::e4m3, Fp8Tiling::tile_1x128);
  const Quantized dy_128x1 = quantize(dy, tokens, out, Fp8Format::e4m3, Fp8Tiling::tile_128x1);

  auto check = [](const char* name, const std::vector<float>& c, int64_t rows, int64_t cols, int64_t k_len,
                  auto&& term) {
    int64_t bad = 0;
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) {
        double s = 0, t = 0;
        for (int64_t k = 0; k < k_len; ++k) {
          const double p = term(i, j, k);
          s += p;
          t += std::fabs(p);
        }
        const double err = std::fabs(double(c[size_t(i * cols + j)]) - s);
        if (err > fp8_gemm_error_bound(k_len, t) && bad++ < 3)
          ADD_FAILURE() << name << " [" << i << ", " << j << "]: " << c[size_t(i * cols + j)] << " vs " << s;
      }
    EXPECT_EQ(bad, 0) << name;
  };

  std::vector<float> y(size_t(tokens * out));
  fp8_gemm({x_1x128.m, false}, {w_blocks.m, false}, y.data());
  check("fprop", y, tokens, out, in,
        [&](int64_t t, int64_t o, int64_t i) { return double(x_1x128.m.at(t, i)) * double(w_blocks.m.at(o, i)); });

  std::vector<float> dx(size_t(tokens * in));
  fp8_gemm({dy_1x128.m, false}, {w_blocks.m, true}, dx.data());
  check("dgrad", dx, tokens, in, out,
        [&](int64_t t, int64_t i, int64_t o) { return double(dy_1x128.m.at(t, o)) * double(w_blocks.m.at(o, i)); });

  std::vector<float> dw(size_t(out * in));
  fp8_gemm({dy_128x1.m, true}, {x_128x1.m, true}, dw.data());
  check("wgrad", dw, out, in, tokens,
        [&](int64_t o, int64_t i, int64_t t) { return double(dy_128x1.m.at(t, o)) * double(x_128x1.m.at(t, i)); });

  // Dgrad through an explicitly transposed weight is the same computation, bit for bit.
  std::vector<uint8_t> wt_q(w_blocks.q.size());
  std::vector<float> wt_s(w_blocks.s.size()), dx2(dx.size());
  const Fp8Matrix wt = transpose_fp8(w_blocks.m, wt_q.data(), wt_s.data());
  fp8_gemm({dy_1x128.m, false}, {wt, false}, dx2.data());
  for (size_t i = 0; i < dx.size(); ++i) ASSERT_EQ(f32_to_bits(dx[i]), f32_to_bits(dx2[i])) << i;
}

TEST_P(Fp8GemmKernels, AccumulateAddsToC) {
  const Operand a = random_operand(20, 300, Fp8Format::e4m3, Fp8Tiling::tile_1x128, false, 5);
  const Operand b = random_operand(40, 300, Fp8Format::e4m3, Fp8Tiling::block_128x128, false, 6);
  std::vector<float> c0 = random_normal(20 * 40, 7, 10.0f), c = c0, c_ref = c0;
  Fp8GemmOptions options;
  options.accumulate = true;
  fp8_gemm(a.op, b.op, c.data(), options);
  reference::fp8_gemm(a.op, b.op, c_ref.data(), options);
  std::vector<double> exact, abs_dot;
  exact_gemm(a.op, b.op, exact, abs_dot);
  for (size_t i = 0; i < c.size(); ++i) {
    if (kernel_is_k_ordered()) {
      ASSERT_EQ(f32_to_bits(c[i]), f32_to_bits(c_ref[i])) << i;
    }
    ASSERT_NEAR(c[i], c0[i] + exact[i],
                fp8_gemm_error_bound(300, abs_dot[i] + std::fabs(c0[i])) + 1e-6 * std::fabs(c0[i]));
  }
}

// A DeepSeek-V3 shape: 32 tokens through a slice of a 7168-wide projection (56 runs of k).
TEST_P(Fp8GemmKernels, DeepSeekWidth) {
  const Operand a = random_operand(32, 7168, Fp8Format::e4m3, Fp8Tiling::tile_1x128, false, 8);
  const Operand b = random_operand(96, 7168, Fp8Format::e4m3, Fp8Tiling::block_128x128, false, 9);
  std::vector<float> c(32 * 96), c_ref(c.size());
  fp8_gemm(a.op, b.op, c.data());
  reference::fp8_gemm(a.op, b.op, c_ref.data());
  std::vector<double> exact, abs_dot;
  exact_gemm(a.op, b.op, exact, abs_dot);
  for (size_t i = 0; i < c.size(); ++i) {
    if (kernel_is_k_ordered()) {
      ASSERT_EQ(f32_to_bits(c[i]), f32_to_bits(c_ref[i])) << i;
    }
    ASSERT_LE(std::fabs(double(c[i]) - exact[i]), fp8_gemm_error_bound(7168, abs_dot[i])) << i;
  }
}

// Every kernel, the pair-summing avx512_bf16 one included, gives the reference's bits wherever every
// partial sum is exact in f32, for every layout and at sizes around the register tiles.
TEST_P(Fp8GemmKernels, BitExactWhereEverySumIsExact) {
  const int64_t shapes[][3] = {{1, 1, 1}, {13, 31, 257}, {12, 32, 256}, {97, 100, 384}, {200, 300, 130}};
  uint32_t seed = 60;
  for (auto [m_len, n_len, k_len] : shapes)
    for (const Layout& l : kLayouts) {
      const Operand a = exact_sum_operand(m_len, k_len, l.a_tiling, l.a_transposed, seed++);
      const Operand b = exact_sum_operand(n_len, k_len, l.b_tiling, l.b_transposed, seed++);
      std::vector<float> c(size_t(m_len * n_len), -1.0f), c_ref(c.size(), -2.0f);
      fp8_gemm(a.op, b.op, c.data());
      reference::fp8_gemm(a.op, b.op, c_ref.data());
      for (size_t i = 0; i < c.size(); ++i)
        ASSERT_EQ(f32_to_bits(c[i]), f32_to_bits(c_ref[i]))
            << l.name << " " << m_len << "x" << n_len << "x" << k_len << " element " << i << ": " << c[i] << " vs "
            << c_ref[i];
    }
}

TEST_P(Fp8GemmKernels, SameBitsForAnyThreadCount) {
  const Operand a = random_operand(200, 384, Fp8Format::e4m3, Fp8Tiling::tile_128x1, true, 10);
  const Operand b = random_operand(300, 384, Fp8Format::e4m3, Fp8Tiling::tile_128x1, true, 11);
  const int saved = num_threads();
  std::vector<float> c1(200 * 300), c2(c1.size());
  set_num_threads(1);
  fp8_gemm(a.op, b.op, c1.data());
  set_num_threads(std::max(2, saved));
  fp8_gemm(a.op, b.op, c2.data());
  set_num_threads(saved);
  for (size_t i = 0; i < c1.size(); ++i) ASSERT_EQ(f32_to_bits(c1[i]), f32_to_bits(c2[i])) << i;
}

TEST_P(Fp8GemmKernels, NanPropagatesToItsRowOnly) {
  Operand a = random_operand(8, 256, Fp8Format::e4m3, Fp8Tiling::tile_1x128, false, 12);
  const Operand b = random_operand(20, 256, Fp8Format::e4m3, Fp8Tiling::block_128x128, false, 13);
  a.storage.q[3 * 256 + 200] = 0x7f;  // E4M3 NaN in row 3
  std::vector<float> c(8 * 20);
  fp8_gemm(a.op, b.op, c.data());
  for (int64_t m = 0; m < 8; ++m)
    for (int64_t n = 0; n < 20; ++n) EXPECT_EQ(std::isnan(c[size_t(m * 20 + n)]), m == 3) << m << "," << n;
}

TEST(Fp8Gemm, RejectsBadArguments) {
  const Operand a = random_operand(4, 256, Fp8Format::e4m3, Fp8Tiling::tile_1x128, false, 14);
  const Operand b = random_operand(4, 256, Fp8Format::e4m3, Fp8Tiling::block_128x128, false, 15);
  const Operand short_k = random_operand(4, 200, Fp8Format::e4m3, Fp8Tiling::block_128x128, false, 16);
  std::vector<float> c(16);
  EXPECT_THROW(fp8_gemm(a.op, short_k.op, c.data()), Error);
  // 1×128 scales read transposed would change along k at every element.
  EXPECT_THROW(fp8_gemm(a.op, Fp8Operand{a.storage.m, true}, c.data()), Error);
  Fp8Operand no_scales = b.op;
  no_scales.matrix.scales = nullptr;
  EXPECT_THROW(fp8_gemm(a.op, no_scales, c.data()), Error);
  Fp8GemmOptions bad_bits;
  bad_bits.accumulation.accumulator_bits = 30;
  EXPECT_THROW(fp8_gemm(a.op, b.op, c.data(), bad_bits), Error);
  Fp8GemmOptions bad_interval;
  bad_interval.accumulation.promote_interval = -1;
  EXPECT_THROW(fp8_gemm(a.op, b.op, c.data(), bad_interval), Error);
  try {
    fp8_gemm(a.op, short_k.op, c.data());
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[fp8_gemm]"), std::string::npos);
  }
}

// The emulated accumulator step, worked by hand with a 4-bit window.
TEST(Fp8Gemm, TruncatedFusedAddByHand) {
  auto add = [](double acc, std::vector<double> t) {
    return reference::truncated_fused_add(acc, t.data(), int(t.size()), 4);
  };
  EXPECT_EQ(add(0, {1.0, 0.125}), 1.125);  // 1.001b: fits in 4 bits
  EXPECT_EQ(add(0, {1.0, 0.0625}), 1.0);   // 2^-4 lies below the window of 2^0 .. 2^-3
  EXPECT_EQ(add(0, {1.0, -0.0625}), 1.0);  // dropped toward zero, not rounded down to 0.9375
  EXPECT_EQ(add(0, {-1.0, -0.0625}), -1.0);
  EXPECT_EQ(add(0, {1.875, 0.25}), 2.0);      // 2.125 = 10.001b carries out; truncated to 4 bits
  EXPECT_EQ(add(8.0, {0.5, 0.5, 0.5}), 8.0);  // the accumulator sets the window: 2^3 .. 2^0
  EXPECT_EQ(add(0.5, {8.0}), 8.0);            // ... or a term does
  EXPECT_EQ(add(-3.0, {3.0}), 0.0);
  EXPECT_EQ(add(0, {0.0, 0.0}), 0.0);
  EXPECT_EQ(add(0, {0.75, 0.75}), 1.5);
  EXPECT_TRUE(std::isnan(add(0, {1.0, std::nan("")})));
}

// With 24 bits the emulation is an f32-like accumulator with truncation: each aligned addition loses
// under one ulp of the window and the renormalisation another, so it stays within 4× the bound of
// the FP32 path (whose additions lose half an ulp).
TEST(Fp8Gemm, EmulationWith24BitsIsNearFp32) {
  const Operand a = random_operand(16, 1000, Fp8Format::e4m3, Fp8Tiling::tile_1x128, false, 17);
  const Operand b = random_operand(24, 1000, Fp8Format::e4m3, Fp8Tiling::block_128x128, false, 18);
  std::vector<double> exact, abs_dot;
  exact_gemm(a.op, b.op, exact, abs_dot);
  for (int fused : {1, 32}) {
    Fp8GemmOptions o;
    o.accumulation.accumulator_bits = 24;
    o.accumulation.fused_terms = fused;
    std::vector<float> c(16 * 24);
    fp8_gemm(a.op, b.op, c.data(), o);
    for (size_t i = 0; i < c.size(); ++i)
      ASSERT_LE(std::fabs(double(c[i]) - exact[i]), 4 * fp8_gemm_error_bound(1000, abs_dot[i])) << i;
  }
}

// DeepSeek-V3 TR §3.3.2: Hopper's FP8 tensor cores keep about 14 bits of the running sum, which at
// K = 4096 gives errors near 2%; promoting partial sums to FP32 every 128 products recovers most of it.
// Inputs as in training: N(0, 1) activations quantized per 1×128, N(0, 0.02²) weights per 128×128.
TEST(Fp8Gemm, NarrowAccumulatorAtK4096) {
  const int64_t m_len = 48, n_len = 48, k_len = 4096;
  const Quantized x = quantize(random_normal(m_len * k_len, 19), m_len, k_len, Fp8Format::e4m3, Fp8Tiling::tile_1x128);
  const Quantized w =
      quantize(random_normal(n_len * k_len, 20, 0.02f), n_len, k_len, Fp8Format::e4m3, Fp8Tiling::block_128x128);
  const Fp8Operand a{x.m, false}, b{w.m, false};
  std::vector<double> exact, abs_dot;
  exact_gemm(a, b, exact, abs_dot);

  auto run = [&](int64_t interval, int bits) {
    Fp8GemmOptions o;
    o.accumulation.promote_interval = interval;
    o.accumulation.accumulator_bits = bits;
    std::vector<float> c(size_t(m_len * n_len));
    fp8_gemm(a, b, c.data(), o);
    return error_stats(c, exact);
  };
  const ErrorStats narrow = run(0, 14), promoted = run(128, 14), fp32 = run(128, 0);
  std::printf(
      "[ fp8 acc  ] K=4096, 14-bit accumulator, 32 products per aligned add; max relative error over "
      "|C| >= RMS (max |err| / max |C|):\n"
      "[ fp8 acc  ]   no promotion      %.3e (%.3e)\n"
      "[ fp8 acc  ]   promotion / 128   %.3e (%.3e)\n"
      "[ fp8 acc  ]   FP32 accumulation %.3e (%.3e)\n",
      narrow.max_rel, narrow.max_abs_norm, promoted.max_rel, promoted.max_abs_norm, fp32.max_rel, fp32.max_abs_norm);
  // DeepSeek reports "nearly 2%"; the emulation gives the same order (its exact value depends on the
  // metric and on details of the hardware the model simplifies, see docs/FP8.md).
  EXPECT_GT(narrow.max_rel, 0.005);
  EXPECT_LT(narrow.max_rel, 0.05);
  // A 128-product partial sum still has 14-bit precision (relative error ~2^-13 per partial), so the
  // promoted result sits near 1e-4..1e-3, at least 10× better than without promotion ...
  EXPECT_LT(promoted.max_rel, 1e-3);
  EXPECT_LT(promoted.max_rel * 10, narrow.max_rel);
  // ... and FP32 accumulation is at f32 rounding level.
  EXPECT_LT(fp32.max_rel, 1e-5);
  // More bits, less error.
  EXPECT_LT(run(0, 16).max_rel, narrow.max_rel);
  EXPECT_GT(run(0, 12).max_rel, narrow.max_rel);
}

// The training GEMM: every layout of the three linear-layer GEMMs, partial runs of k, accumulation, and
// pre-decoded operands, against its scalar twin (whose partial sums are exact before one rounding, so
// the two differ by at most the run sums' f32 rounding) and the FP32-promotion error bound; bit for bit
// with the twin where every sum is exact.
TEST_P(Fp8GemmByRuns, MatchesItsTwinWithinTheBoundForEveryLayout) {
  struct Case {
    int64_t m, n, k;
    Fp8Tiling ta, tb;
    bool a_transposed, b_transposed;
  };
  const Case cases[] = {
      {33, 70, 300, Fp8Tiling::tile_1x128, Fp8Tiling::block_128x128, false, false},   // Fprop
      {33, 70, 300, Fp8Tiling::tile_1x128, Fp8Tiling::block_128x128, false, true},    // Dgrad
      {70, 50, 300, Fp8Tiling::tile_128x1, Fp8Tiling::tile_128x1, true, true},        // Wgrad
      {256, 128, 512, Fp8Tiling::tile_1x128, Fp8Tiling::block_128x128, false, false},
      {300, 200, 384, Fp8Tiling::tile_128x1, Fp8Tiling::block_128x128, true, true},  // 3 row panels, last partial
  };
  uint32_t seed = 40;
  for (const Case& t : cases) {
    for (bool accumulate : {false, true}) {
      const Operand a = random_operand(t.m, t.k, Fp8Format::e4m3, t.ta, t.a_transposed, seed++);
      const Operand b = random_operand(t.n, t.k, Fp8Format::e4m3, t.tb, t.b_transposed, seed++);
      std::vector<float> c0 = random_normal(t.m * t.n, seed++, 3.0f), c = c0, c2 = c0, c_twin = c0;
      Fp8GemmOptions options;
      options.accumulate = accumulate;
      fp8_gemm_by_runs(a.op, b.op, c.data(), options);
      reference::fp8_gemm_by_runs(a.op, b.op, c_twin.data(), options);
      // Pre-decoded operands give the same bits.
      std::vector<uint16_t> ad(a.op.matrix.rows * a.op.matrix.cols), bd(b.op.matrix.rows * b.op.matrix.cols);
      fp8_to_bf16(a.op.matrix.data, int64_t(ad.size()), Fp8Format::e4m3, ad.data());
      fp8_to_bf16(b.op.matrix.data, int64_t(bd.size()), Fp8Format::e4m3, bd.data());
      fp8_gemm_by_runs(a.op, b.op, c2.data(), options, ad.data(), bd.data());
      std::vector<double> exact, abs_dot;
      exact_gemm(a.op, b.op, exact, abs_dot);
      const std::string where = std::to_string(t.m) + "x" + std::to_string(t.n) + "x" + std::to_string(t.k);
      for (size_t i = 0; i < c.size(); ++i) {
        const double base = accumulate ? c0[i] : 0.0;
        const double bound = fp8_gemm_error_bound(t.k, abs_dot[i] + std::fabs(base)) + 1e-6 * std::fabs(base);
        ASSERT_LE(std::fabs(double(c[i]) - (base + exact[i])), bound) << where << " i " << i;
        ASSERT_LE(std::fabs(double(c_twin[i]) - (base + exact[i])), bound) << where << " twin, i " << i;
        ASSERT_LE(std::fabs(double(c[i]) - double(c_twin[i])), bound) << where << " vs twin, i " << i;
        ASSERT_EQ(f32_to_bits(c[i]), f32_to_bits(c2[i])) << i;
      }
    }
  }
}

TEST_P(Fp8GemmByRuns, BitExactWithItsTwinWhereEverySumIsExact) {
  std::printf("[ fp8 gemm by runs ] bf16 matmul %s: %s\n", GetParam().variant.c_str(),
              has_native_bf16_gemm() ? "runs by 128-runs on oneDNN's bf16 matmul" : "falls back to fp8_gemm");
  uint32_t seed = 80;
  for (const Layout& l : kLayouts)
    for (auto [m_len, n_len, k_len] : {std::array<int64_t, 3>{33, 70, 300}, std::array<int64_t, 3>{300, 200, 384}}) {
      const Operand a = exact_sum_operand(m_len, k_len, l.a_tiling, l.a_transposed, seed++);
      const Operand b = exact_sum_operand(n_len, k_len, l.b_tiling, l.b_transposed, seed++);
      std::vector<float> c(size_t(m_len * n_len)), c_twin(c.size()), c_ref(c.size());
      fp8_gemm_by_runs(a.op, b.op, c.data());
      reference::fp8_gemm_by_runs(a.op, b.op, c_twin.data());
      reference::fp8_gemm(a.op, b.op, c_ref.data());
      for (size_t i = 0; i < c.size(); ++i) {
        ASSERT_EQ(f32_to_bits(c[i]), f32_to_bits(c_twin[i])) << l.name << " " << m_len << "x" << n_len << " " << i;
        ASSERT_EQ(f32_to_bits(c_twin[i]), f32_to_bits(c_ref[i])) << l.name << " " << m_len << "x" << n_len << " " << i;
      }
    }
}
