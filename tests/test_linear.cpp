// linear(): every kernel path (GEMV, oneDNN GEMM) against reference::linear, for every weight dtype,
// both precisions, awkward shapes around the 16-column chunk and the 128×128 FP8 block, and real
// DeepSeek-V3 shapes — each test once per implementation of the kernel families linear() runs on
// (ops/kernels.h: gemv for the GEMV and the weight decoders, bf16_matmul for BF16 weights' GEMMs,
// fp8_gemm and fp8_convert for FP8 activations). Tolerance from the error bound of f32 accumulation:
//   |y - y_ref| <= (cols + 16) · 2^-24 · Σ_c |w_rc · x_c|
// (the reference accumulates in double and rounds once; with Precision::bf16 both round x to bf16
// first, so that rounding is not part of the difference).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "kernel_paths.h"
#include "ops/fp8.h"
#include "ops/linear.h"
#include "ops/quantize.h"

using namespace dsv3;

namespace {

struct TestWeight {
  LinearWeight w;
  std::vector<uint8_t> data;
  std::vector<float> scales;
};

// Weights with varied magnitudes; FP8 bytes cover the whole E4M3 range (subnormals included, NaN
// codes 0x7f/0xff excluded) and block scales span several binades.
TestWeight make_weight(DType dtype, int64_t rows, int64_t cols, uint32_t seed, int64_t block = 128) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  TestWeight t;
  t.w.dtype = dtype;
  t.w.rows = rows;
  t.w.cols = cols;
  t.w.block = block;
  const size_t n = size_t(rows * cols);
  t.data.resize(n * dtype_size(dtype) + 1);
  for (size_t i = 0; i < n; ++i) {
    const float v = normal(rng) * 0.1f;
    switch (dtype) {
      case DType::F32: std::memcpy(&t.data[4 * i], &v, 4); break;
      case DType::BF16: {
        const uint16_t b = f32_to_bf16(v);
        std::memcpy(&t.data[2 * i], &b, 2);
        break;
      }
      case DType::F16: {
        const uint16_t h = f32_to_f16(v);
        std::memcpy(&t.data[2 * i], &h, 2);
        break;
      }
      default: {
        uint8_t b = uint8_t(rng());
        if ((b & 0x7f) == 0x7f) b &= 0xfe;
        t.data[i] = b;
        break;
      }
    }
  }
  t.w.data = t.data.data();
  if (dtype == DType::F8_E4M3) {
    t.scales.resize(size_t((rows + block - 1) / block * t.w.scale_cols()));
    std::uniform_real_distribution<float> log_scale(-12.0f, -4.0f);
    for (float& s : t.scales) s = std::exp2(log_scale(rng));
    t.w.scale_inv = t.scales.data();
  }
  return t;
}

std::vector<float> make_x(int64_t n_tokens, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(size_t(n_tokens * cols));
  for (float& v : x) v = normal(rng);
  return x;
}

const char* name(Precision p) { return p == Precision::f32 ? "f32" : "bf16"; }

// Runs linear() on the given path and compares every output with the reference.
void expect_matches_reference(const LinearWeight& w, int64_t n_tokens, Precision p,
                              LinearPath path = LinearPath::automatic, uint32_t seed = 1) {
  const std::vector<float> x = make_x(n_tokens, w.cols, seed);
  std::vector<float> y(size_t(n_tokens * w.rows), NAN), ref(size_t(n_tokens * w.rows));
  linear(w, x.data(), y.data(), n_tokens, p, path);
  reference::linear(w, x.data(), ref.data(), n_tokens, p);
  int failures = 0;
  for (int64_t t = 0; t < n_tokens && failures < 5; ++t) {
    for (int64_t r = 0; r < w.rows && failures < 5; ++r) {
      double mag = 0;
      for (int64_t c = 0; c < w.cols; ++c) {
        float a = x[size_t(t * w.cols + c)];
        if (p == Precision::bf16) a = bf16_to_f32(f32_to_bf16(a));
        mag += std::fabs(double(a) * double(w.at(r, c)));
      }
      const double bound = double(w.cols + 16) * 0x1p-24 * mag + 1e-37;
      const size_t i = size_t(t * w.rows + r);
      const double err = std::fabs(double(y[i]) - double(ref[i]));
      if (!(err <= bound)) {
        ++failures;
        ADD_FAILURE() << dtype_name(w.dtype) << " [" << w.rows << " x " << w.cols << "] tokens " << n_tokens
                      << " precision " << name(p) << " path " << int(path) << ": y[" << t << ", " << r
                      << "] = " << y[i] << ", reference " << ref[i] << ", error " << err << " > bound " << bound;
      }
    }
  }
}

constexpr DType kDtypes[] = {DType::F32, DType::BF16, DType::F16, DType::F8_E4M3};
constexpr Precision kPrecisions[] = {Precision::f32, Precision::bf16};

}  // namespace

// Tests of the GEMV, the weight decoders and the GEMM path, with each gemv and bf16_matmul implementation.
class LinearKernels : public dsv3::testing::KernelChoiceTest {};
DSV3_KERNEL_CHOICES(LinearKernels, KernelFamily::gemv, KernelFamily::bf16_matmul);
// Precision::fp8, with each implementation of the FP8 families and of the bf16 matmul.
class LinearFp8Kernels : public dsv3::testing::KernelChoiceTest {};
DSV3_KERNEL_CHOICES(LinearFp8Kernels, KernelFamily::fp8_gemm, KernelFamily::fp8_convert, KernelFamily::bf16_matmul);

TEST_P(LinearKernels, AwkwardShapesEveryDtypeFewTokens) {
  const int64_t sizes[] = {1, 31, 32, 33, 127, 128, 129, 300};
  uint32_t seed = 1;
  for (DType dtype : kDtypes)
    for (int64_t rows : sizes)
      for (int64_t cols : sizes) {
        const TestWeight t = make_weight(dtype, rows, cols, seed++);
        for (Precision p : kPrecisions)
          for (int64_t n : {1, 3, 8}) expect_matches_reference(t.w, n, p, LinearPath::automatic, seed);
      }
}

TEST_P(LinearKernels, ManyTokensBothPaths) {
  const int64_t shapes[][2] = {{33, 129}, {300, 127}, {129, 300}, {1, 31}};
  uint32_t seed = 100;
  for (DType dtype : kDtypes)
    for (const auto& s : shapes) {
      const TestWeight t = make_weight(dtype, s[0], s[1], seed++);
      for (Precision p : kPrecisions) {
        expect_matches_reference(t.w, 64, p, LinearPath::automatic, seed);
        expect_matches_reference(t.w, 64, p, LinearPath::gemv, seed);
        expect_matches_reference(t.w, 3, p, LinearPath::gemm, seed);
      }
    }
  for (DType dtype : kDtypes) {
    const TestWeight t = make_weight(dtype, 129, 300, seed++);
    for (Precision p : kPrecisions) expect_matches_reference(t.w, 513, p, LinearPath::automatic, seed);
  }
}

// kv_a_proj_with_mqa [kv_lora + rope, H] = [576, 7168] and q_a_proj [q_lora, H] = [1536, 7168] (SPEC.md §1).
TEST_P(LinearKernels, DeepSeekV3Shapes) {
  const TestWeight fp8 = make_weight(DType::F8_E4M3, 576, 7168, 7);
  const TestWeight bf16 = make_weight(DType::BF16, 576, 7168, 8);
  for (Precision p : kPrecisions) {
    expect_matches_reference(fp8.w, 1, p);
    expect_matches_reference(fp8.w, 3, p);
    expect_matches_reference(bf16.w, 1, p);
    expect_matches_reference(fp8.w, 2, p, LinearPath::gemm);
    expect_matches_reference(bf16.w, 2, p, LinearPath::gemm);
  }
  const TestWeight q_a = make_weight(DType::F8_E4M3, 1536, 7168, 9);
  expect_matches_reference(q_a.w, 1, Precision::bf16);
}

TEST_P(LinearKernels, Fp8OtherBlockSizes) {
  // 64 is a multiple of the FP8 kernels' 32-column chunk (fast path); 100 is not (reference fallback).
  for (int64_t block : {64, 100}) {
    const TestWeight t = make_weight(DType::F8_E4M3, 150, 230, 11, block);
    for (Precision p : kPrecisions) {
      expect_matches_reference(t.w, 1, p);
      expect_matches_reference(t.w, 5, p);
      expect_matches_reference(t.w, 40, p);
    }
  }
}

TEST_P(LinearKernels, SameResultForAnyThreadCount) {
  const TestWeight t = make_weight(DType::F8_E4M3, 1000, 700, 12);
  const std::vector<float> x = make_x(3, 700, 13);
  std::vector<float> y1(3000), y2(3000);
  const int saved = num_threads();
  set_num_threads(1);
  linear(t.w, x.data(), y1.data(), 3, Precision::bf16);
  set_num_threads(2);
  linear(t.w, x.data(), y2.data(), 3, Precision::bf16);
  set_num_threads(saved);
  EXPECT_EQ(0, std::memcmp(y1.data(), y2.data(), y1.size() * sizeof(float)));
}

// A group of products, some on the GEMV (few tokens) and some on the GEMM (many), as a MoE layer's
// experts in prefill: the GEMV ones give linear()'s bits, the GEMM ones its values up to the matmul's
// summation order (they run on one thread inside the group).
TEST_P(LinearKernels, GroupEqualsEachLinearAlone) {
  for (DType dtype : {DType::BF16, DType::F8_E4M3})
    for (Precision p : {Precision::bf16, Precision::f32}) {
      std::vector<TestWeight> weights;
      const int64_t tokens[] = {1, 3, 70, 2, 130, 17, 5};
      std::vector<std::vector<float>> xs, grouped, alone;
      std::vector<LinearCall> calls;
      for (size_t i = 0; i < std::size(tokens); ++i) {
        weights.push_back(make_weight(dtype, 96 + 32 * int64_t(i % 3), 256, uint32_t(40 + i)));
        xs.push_back(make_x(tokens[i], 256, uint32_t(60 + i)));
        grouped.emplace_back(size_t(tokens[i] * weights.back().w.rows), NAN);
        alone.emplace_back(grouped.back().size());
      }
      for (size_t i = 0; i < std::size(tokens); ++i)
        calls.push_back({&weights[i].w, xs[i].data(), grouped[i].data(), tokens[i]});
      linear_group(calls.data(), int64_t(calls.size()), p);
      for (size_t i = 0; i < std::size(tokens); ++i) {
        linear(weights[i].w, xs[i].data(), alone[i].data(), tokens[i], p);
        const bool on_gemv = tokens[i] < gemm_min_tokens(weights[i].w, p);
        for (size_t j = 0; j < alone[i].size(); ++j) {
          if (on_gemv) {
            ASSERT_EQ(grouped[i][j], alone[i][j]) << dtype_name(dtype) << " " << name(p) << " call " << i << " @" << j;
          } else {
            ASSERT_NEAR(grouped[i][j], alone[i][j], 1e-4f * (1.0f + std::fabs(alone[i][j])))
                << dtype_name(dtype) << " " << name(p) << " call " << i << " @" << j;
          }
        }
      }
    }
}

TEST_P(LinearKernels, DequantizeRowsIsExact) {
  for (DType dtype : kDtypes) {
    const TestWeight t = make_weight(dtype, 260, 145, 14);
    std::vector<float> out(size_t(100 * 145));
    dequantize_rows(t.w, 130, 230, out.data());
    for (int64_t r = 130; r < 230; ++r)
      for (int64_t c = 0; c < 145; ++c)
        ASSERT_EQ(out[size_t((r - 130) * 145 + c)], t.w.at(r, c)) << dtype_name(dtype) << " " << r << "," << c;
  }
}

TEST_P(LinearKernels, F16InfinityAndLargeValuesSurvive) {
  TestWeight t = make_weight(DType::F16, 2, 40, 15);
  uint16_t* h = reinterpret_cast<uint16_t*>(t.data.data());
  h[3] = 0x7c00;          // +inf in row 0
  h[40 + 17] = 0x7bff;    // 65504 in row 1
  std::vector<float> x(40, 1.0f), y(2);
  linear(t.w, x.data(), y.data(), 1, Precision::f32);
  EXPECT_TRUE(std::isinf(y[0]) && y[0] > 0);
  EXPECT_GT(y[1], 60000.0f);
}

TEST(Linear, RejectsBadWeights) {
  std::vector<float> x(64, 1.0f), y(64);
  TestWeight t = make_weight(DType::F8_E4M3, 4, 16, 16);
  t.w.scale_inv = nullptr;
  EXPECT_THROW(linear(t.w, x.data(), y.data(), 1, Precision::f32), Error);
  LinearWeight ints;
  ints.dtype = DType::I32;
  ints.rows = 2;
  ints.cols = 2;
  ints.data = x.data();
  EXPECT_THROW(linear(ints, x.data(), y.data(), 1, Precision::f32), Error);
  LinearWeight empty;
  empty.dtype = DType::BF16;
  empty.rows = 4;
  empty.cols = 4;
  EXPECT_THROW(linear(empty, x.data(), y.data(), 1, Precision::f32), Error);
  const TestWeight ok = make_weight(DType::BF16, 4, 4, 17);
  EXPECT_THROW(dequantize_rows(ok.w, 2, 5, y.data()), Error);
}

// With an identity weight y = x exactly, so this pins the activation rounding of Precision::bf16
// (round to nearest even, as f32_to_bf16) and the FP8 path's exact power-of-two activation scaling.
TEST_P(LinearKernels, IdentityWeightReturnsRoundedActivations) {
  const int64_t n = 40;
  for (DType dtype : kDtypes) {
    TestWeight t = make_weight(dtype, n, n, 18);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < n; ++c) {
        const float v = r == c ? 1.0f : 0.0f;
        const size_t i = size_t(r * n + c);
        switch (dtype) {
          case DType::F32: std::memcpy(&t.data[4 * i], &v, 4); break;
          case DType::BF16: {
            const uint16_t b = f32_to_bf16(v);
            std::memcpy(&t.data[2 * i], &b, 2);
            break;
          }
          case DType::F16: {
            const uint16_t h = f32_to_f16(v);
            std::memcpy(&t.data[2 * i], &h, 2);
            break;
          }
          default: t.data[i] = f32_to_e4m3(v); break;
        }
      }
    for (float& s : t.scales) s = 1.0f;
    std::vector<float> x = make_x(3, n, 19);
    x[0] = bf16_to_f32(0x3f81) + 0x1p-16f;  // exactly halfway between two bf16 values: rounds to even 0x3f82
    x[1] = bf16_to_f32(0x3f80) + 0x1p-16f;  // halfway, rounds down to even 0x3f80
    for (int64_t c = 0; c < n; ++c) {
      x[size_t(n + c)] *= 1e30f;      // huge token: the FP8 path's activation scaling must not overflow
      x[size_t(2 * n + c)] *= 1e-30f;  // tiny token: nor lose it in subnormals
    }
    for (LinearPath path : {LinearPath::gemv, LinearPath::gemm})
      for (Precision p : kPrecisions) {
        std::vector<float> y(x.size());
        linear(t.w, x.data(), y.data(), 3, p, path);
        for (size_t i = 0; i < x.size(); ++i) {
          const float expected = p == Precision::bf16 ? bf16_to_f32(f32_to_bf16(x[i])) : x[i];
          ASSERT_EQ(y[i], expected) << dtype_name(dtype) << " " << name(p) << " path " << int(path) << " i " << i;
        }
      }
  }
}

// Precision::fp8 (activations quantized per 1×128 tile, DeepSeek's dynamic scheme) against the reference
// on the same quantized activations: the register kernel for few tokens, the bf16-matmul one for many.
TEST_P(LinearFp8Kernels, Fp8DynamicActivations) {
  const int64_t shapes[][2] = {{33, 129}, {300, 127}, {129, 300}, {256, 1024}};
  uint32_t seed = 300;
  for (const auto& s : shapes) {
    const TestWeight t = make_weight(DType::F8_E4M3, s[0], s[1], seed++);
    for (int64_t n : {1, 3, 31, 32, 33, 100}) {
      const std::vector<float> x = make_x(n, t.w.cols, seed++);
      std::vector<float> y(size_t(n * t.w.rows), NAN), ref(y.size());
      linear(t.w, x.data(), y.data(), n, Precision::fp8);
      reference::linear(t.w, x.data(), ref.data(), n, Precision::fp8);
      std::vector<uint8_t> q(x.size());
      std::vector<float> scales(size_t(n * ((t.w.cols + 127) / 128))), xq(x.size());
      quantize_fp8_tiles_1x128(x.data(), n, t.w.cols, false, q.data(), scales.data());
      dequantize_fp8_tiles_1x128(q.data(), scales.data(), n, t.w.cols, xq.data());
      for (int64_t tok = 0; tok < n; ++tok)
        for (int64_t r = 0; r < t.w.rows; ++r) {
          double mag = 0;
          for (int64_t c = 0; c < t.w.cols; ++c) mag += std::fabs(double(xq[size_t(tok * t.w.cols + c)]) * t.w.at(r, c));
          const size_t i = size_t(tok * t.w.rows + r);
          ASSERT_LE(std::fabs(double(y[i]) - ref[i]), fp8_gemm_error_bound(t.w.cols, mag) + 1e-37)
              << s[0] << "x" << s[1] << " tokens " << n << " y[" << tok << ", " << r << "]";
        }
    }
  }
  // Activations of other weights are rounded as bf16.
  const TestWeight bf16 = make_weight(DType::BF16, 33, 129, seed++);
  const std::vector<float> x = make_x(5, 129, seed++);
  std::vector<float> a(5 * 33), b(5 * 33);
  linear(bf16.w, x.data(), a.data(), 5, Precision::fp8);
  linear(bf16.w, x.data(), b.data(), 5, Precision::bf16);
  EXPECT_EQ(a, b);
}
