// FP8 conversions and fine-grained quantizers (src/ops/fp8.h): every implementation of the fp8_convert
// family (ops/kernels.h: AVX-512, AVX2, scalar — those this build holds) against the scalar definitions
// (dtype.h, quantize.h, reference::quantize_fp8), bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "kernel_paths.h"
#include "ops/fp8.h"
#include "ops/quantize.h"

using namespace dsv3;

namespace {

constexpr Fp8Format kFormats[] = {Fp8Format::e4m3, Fp8Format::e5m2};
constexpr Fp8Tiling kTilings[] = {Fp8Tiling::tile_1x128, Fp8Tiling::tile_128x1, Fp8Tiling::block_128x128};

uint8_t scalar_encode(float x, Fp8Format f) { return f == Fp8Format::e4m3 ? f32_to_e4m3(x) : f32_to_e5m2(x); }
float scalar_decode(uint8_t v, Fp8Format f) { return f == Fp8Format::e4m3 ? e4m3_to_f32(v) : e5m2_to_f32(v); }

// Encodes `x` with the vector path at several alignments and lengths (so both the vector body and the
// scalar tail see every element) and expects the scalar codes. Returns the number of mismatches.
int64_t count_encode_mismatches(const std::vector<float>& x, Fp8Format f) {
  std::vector<uint8_t> out(x.size() + 64);
  int64_t bad = 0;
  for (size_t offset : {size_t(0), size_t(3)}) {
    if (offset >= x.size()) break;
    const int64_t n = int64_t(x.size() - offset);
    f32_to_fp8(x.data() + offset, n, f, out.data());
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t want = scalar_encode(x[offset + size_t(i)], f);
      if (out[size_t(i)] != want) {
        if (bad < 5)
          ADD_FAILURE() << fp8_format_name(f) << " encode of " << x[offset + size_t(i)] << " (bits 0x" << std::hex
                        << f32_to_bits(x[offset + size_t(i)]) << ") gave 0x" << int(out[size_t(i)]) << ", want 0x"
                        << int(want) << std::dec;
        ++bad;
      }
    }
  }
  return bad;
}

// All representable non-negative finite values of a format, ascending (codes 0x00.. up to max).
std::vector<float> finite_values(Fp8Format f) {
  std::vector<float> v;
  for (int c = 0; c < 0x80; ++c) {
    const float x = scalar_decode(uint8_t(c), f);
    if (std::isfinite(x)) v.push_back(x);
  }
  return v;
}

std::vector<float> random_matrix(int64_t rows, int64_t cols, uint32_t seed, float spread_decades = 0) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> decade(-spread_decades, spread_decades);
  std::vector<float> x(size_t(rows * cols));
  for (auto& v : x) v = normal(rng) * std::pow(10.0f, decade(rng));
  return x;
}

class Fp8ConvertKernels : public dsv3::testing::KernelChoiceTest {};
DSV3_KERNEL_CHOICES(Fp8ConvertKernels, KernelFamily::fp8_convert);

}  // namespace

TEST(Fp8Convert, FormatConstants) {
  EXPECT_EQ(fp8_max(Fp8Format::e4m3), 448.0f);
  EXPECT_EQ(fp8_max(Fp8Format::e5m2), 57344.0f);
  for (Fp8Format f : kFormats) {
    const std::vector<float> v = finite_values(f);
    EXPECT_EQ(v.back(), fp8_max(f));
    EXPECT_EQ(v[1], f == Fp8Format::e4m3 ? 0x1p-9f : 0x1p-16f);  // smallest subnormal
  }
}

TEST_P(Fp8ConvertKernels, DecodeEveryCode) {
  for (Fp8Format f : kFormats) {
    std::vector<uint8_t> codes(256 + 37);
    for (size_t i = 0; i < codes.size(); ++i) codes[i] = uint8_t(i * 7 + 3);  // all 256 codes, shuffled
    std::vector<float> out(codes.size()), scaled(codes.size());
    fp8_to_f32(codes.data(), int64_t(codes.size()), f, out.data());
    fp8_to_f32_scaled(codes.data(), int64_t(codes.size()), 0.375f, f, scaled.data());
    for (size_t i = 0; i < codes.size(); ++i) {
      const float want = scalar_decode(codes[i], f);
      EXPECT_EQ(f32_to_bits(out[i]), f32_to_bits(want))
          << fp8_format_name(f) << " code 0x" << std::hex << int(codes[i]);
      EXPECT_EQ(f32_to_bits(scaled[i]), f32_to_bits(want * 0.375f)) << fp8_format_name(f) << " code " << int(codes[i]);
    }
  }
}

// Every value, every midpoint between neighbours (the round-to-even ties), and the f32 neighbours of
// both, positive and negative, past the largest value and below the smallest subnormal.
TEST_P(Fp8ConvertKernels, EncodeValuesMidpointsAndNeighbours) {
  for (Fp8Format f : kFormats) {
    const std::vector<float> v = finite_values(f);
    std::vector<float> x;
    auto add_around = [&](float p) {
      for (float q : {p, std::nextafter(p, 0.0f), std::nextafter(p, INFINITY)}) {
        x.push_back(q);
        x.push_back(-q);
      }
    };
    for (size_t i = 0; i < v.size(); ++i) {
      add_around(v[i]);
      if (i + 1 < v.size()) add_around(0.5f * (v[i] + v[i + 1]));  // exact in f32
    }
    const float top = v.back(), step = top - v[v.size() - 2];
    add_around(top + 0.5f * step);  // would round to the next binade: saturates
    add_around(top + step);
    add_around(0.5f * v[1]);  // half the smallest subnormal: ties to zero
    add_around(0.75f * v[1]);
    EXPECT_EQ(count_encode_mismatches(x, f), 0);

    // The ties themselves round to the even code (independent of the scalar definition).
    for (size_t i = 0; i + 1 < v.size(); ++i) {
      const float mid = 0.5f * (v[i] + v[i + 1]);
      uint8_t code;
      f32_to_fp8(&mid, 1, f, &code);
      EXPECT_EQ(code % 2, 0) << fp8_format_name(f) << " tie " << mid;
      EXPECT_TRUE(scalar_decode(code, f) == v[i] || scalar_decode(code, f) == v[i + 1]);
    }
  }
}

TEST_P(Fp8ConvertKernels, EncodeSpecials) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x = {0.0f,
                          -0.0f,
                          inf,
                          -inf,
                          std::numeric_limits<float>::quiet_NaN(),
                          -std::numeric_limits<float>::quiet_NaN(),
                          std::numeric_limits<float>::signaling_NaN(),
                          bits_to_f32(0x7f800001u),
                          bits_to_f32(0xffc12345u),
                          std::numeric_limits<float>::max(),
                          -std::numeric_limits<float>::max(),
                          std::numeric_limits<float>::min(),
                          std::numeric_limits<float>::denorm_min(),
                          -std::numeric_limits<float>::denorm_min(),
                          bits_to_f32(0x007fffffu),
                          447.9f,
                          448.0f,
                          463.99f,
                          464.0f,
                          464.01f,
                          479.0f,
                          480.0f,
                          1e30f,
                          57343.0f,
                          57344.0f,
                          61439.0f,
                          61440.0f,
                          65504.0f,
                          65536.0f,
                          0x1p-6f,
                          0x1p-14f,
                          0x1p-10f,
                          0x1p-17f,
                          0x1p-16f,
                          1.5f * 0x1p-17f};
  for (Fp8Format f : kFormats) EXPECT_EQ(count_encode_mismatches(x, f), 0);
  uint8_t code;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  f32_to_fp8(&nan, 1, Fp8Format::e4m3, &code);
  EXPECT_EQ(code, 0x7f);
  f32_to_fp8(&inf, 1, Fp8Format::e4m3, &code);
  EXPECT_EQ(code, 0x7e);  // saturates: E4M3 has no infinity
  f32_to_fp8(&inf, 1, Fp8Format::e5m2, &code);
  EXPECT_EQ(code, 0x7b);  // saturates to 57344 as DeepSeek's quantizers do
}

// Every f32 subnormal exponent and the binades around the FP8 subnormal range.
TEST_P(Fp8ConvertKernels, EncodeSubnormalsAndSmallValues) {
  std::mt19937 rng(7);
  std::vector<float> x;
  for (int e = -149; e <= -3; ++e)
    for (int i = 0; i < 64; ++i) {
      const float v = std::ldexp(1.0f + float(rng() % 1024) / 1024.0f, e);
      x.push_back(v);
      x.push_back(-v);
    }
  for (uint32_t b = 1; b < 0x00800000u; b = b * 3 + 1) x.push_back(bits_to_f32(b));  // f32 subnormals
  for (Fp8Format f : kFormats) EXPECT_EQ(count_encode_mismatches(x, f), 0);
}

// 10M random f32: half uniform bit patterns (every class: NaN, inf, huge, subnormal), half log-uniform
// magnitudes over the FP8 range and a little beyond.
TEST_P(Fp8ConvertKernels, EncodeTenMillionRandom) {
  constexpr size_t kN = 10'000'000;
  std::mt19937 rng(2024);
  std::vector<float> x(kN);
  std::uniform_real_distribution<float> log2mag(-28.0f, 18.0f);
  for (size_t i = 0; i < kN; ++i)
    x[i] = i % 2 ? bits_to_f32(uint32_t(rng())) : (rng() & 1 ? -1.0f : 1.0f) * std::exp2(log2mag(rng));
  std::vector<uint8_t> out(kN);
  for (Fp8Format f : kFormats) {
    f32_to_fp8(x.data(), int64_t(kN), f, out.data());
    int64_t bad = 0;
    for (size_t i = 0; i < kN; ++i) bad += out[i] != scalar_encode(x[i], f);
    EXPECT_EQ(bad, 0) << fp8_format_name(f);
  }
}

TEST_P(Fp8ConvertKernels, ScaledEncodeDividesByScale) {
  const std::vector<float> x = random_matrix(1, 1000, 3, 3.0f);
  for (Fp8Format f : kFormats)
    for (float scale : {1.0f, 0.0078125f, 3.7e-3f, 112.5f}) {
      std::vector<uint8_t> out(x.size());
      f32_to_fp8_scaled(x.data(), int64_t(x.size()), scale, f, out.data());
      for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(out[i], scalar_encode(x[i] / scale, f)) << i;
    }
}

TEST(Fp8Convert, ScaleFormula) {
  for (float amax : {0.0f, 1e-5f, 1e-4f, 0.3f, 7.0f, 448.0f, 1e6f}) {
    EXPECT_EQ(fp8_scale(amax, Fp8Format::e4m3, false), fp8_scale_for_amax(amax, false));
    EXPECT_EQ(fp8_scale(amax, Fp8Format::e4m3, true), fp8_scale_for_amax(amax, true));
    EXPECT_EQ(fp8_scale(amax, Fp8Format::e5m2, false), std::max(amax, 1e-4f) / 57344.0f);
    const float p = fp8_scale(amax, Fp8Format::e5m2, true);
    int e;
    EXPECT_EQ(std::frexp(p, &e), 0.5f) << "ue8m0 scale must be a power of two";
    EXPECT_LE(std::max(amax, 1e-4f) / p, 57344.0f);
    EXPECT_GT(std::max(amax, 1e-4f) / p, 57344.0f / 2);
  }
}

// Fast quantizers == scalar twins for every format × tiling × scale kind, at awkward shapes.
TEST_P(Fp8ConvertKernels, QuantizeMatchesReference) {
  const int64_t shapes[][2] = {{1, 1}, {3, 127}, {1, 129}, {129, 130}, {128, 128}, {257, 385}, {5, 300}};
  for (auto [rows, cols] : shapes)
    for (Fp8Format f : kFormats)
      for (Fp8Tiling t : kTilings)
        for (bool pow2 : {false, true}) {
          std::vector<float> x = random_matrix(rows, cols, uint32_t(rows * 1000 + cols), 2.0f);
          if (rows * cols > 7) x[5] = 0.0f, x[6] = -0.0f;
          const int64_t ns = fp8_scale_rows(t, rows) * fp8_scale_cols(t, cols);
          std::vector<uint8_t> q(x.size()), q_ref(x.size());
          std::vector<float> s(static_cast<size_t>(ns)), s_ref(static_cast<size_t>(ns));
          quantize_fp8(x.data(), rows, cols, f, t, pow2, q.data(), s.data());
          reference::quantize_fp8(x.data(), rows, cols, f, t, pow2, q_ref.data(), s_ref.data());
          EXPECT_EQ(q, q_ref) << rows << "x" << cols << " " << fp8_format_name(f) << " " << fp8_tiling_name(t);
          EXPECT_EQ(s, s_ref) << rows << "x" << cols << " " << fp8_format_name(f) << " " << fp8_tiling_name(t);
        }
}

// For E4M3 the reference agrees with quantize.h, the quantizer the checkpoints' weights follow.
TEST_P(Fp8ConvertKernels, QuantizeAgreesWithCheckpointQuantizer) {
  for (bool pow2 : {false, true}) {
    const int64_t rows = 200, cols = 300;
    const std::vector<float> x = random_matrix(rows, cols, 11, 1.0f);
    std::vector<uint8_t> q(x.size()), q_old(x.size());
    std::vector<float> s(size_t(rows * 3)), s_old(size_t(rows * 3));
    quantize_fp8(x.data(), rows, cols, Fp8Format::e4m3, Fp8Tiling::tile_1x128, pow2, q.data(), s.data());
    quantize_fp8_tiles_1x128(x.data(), rows, cols, pow2, q_old.data(), s_old.data());
    EXPECT_EQ(q, q_old);
    EXPECT_EQ(s, s_old);
    s.resize(2 * 3);
    s_old.resize(2 * 3);
    quantize_fp8(x.data(), rows, cols, Fp8Format::e4m3, Fp8Tiling::block_128x128, pow2, q.data(), s.data());
    quantize_fp8_blocks(x.data(), rows, cols, 128, pow2, q_old.data(), s_old.data());
    EXPECT_EQ(q, q_old);
    EXPECT_EQ(s, s_old);
  }
}

// 128×1 worked by hand: each column of a 130-row matrix has its own scale per 128 rows.
TEST_P(Fp8ConvertKernels, Tile128x1ScalesPerColumn) {
  const int64_t rows = 130, cols = 2;
  std::vector<float> x(size_t(rows * cols), 0.0f);
  x[10 * cols + 0] = -7.0f;    // column 0, rows 0..127: amax 7 -> scale 7/448 = 2^-6
  x[20 * cols + 1] = 0.5f;     // column 1, rows 0..127: amax 0.5 -> 0.5/448
  x[129 * cols + 0] = 448.0f;  // column 0, rows 128..129: amax 448 -> 1
  std::vector<uint8_t> q(x.size());
  std::vector<float> s(4);
  quantize_fp8(x.data(), rows, cols, Fp8Format::e4m3, Fp8Tiling::tile_128x1, false, q.data(), s.data());
  EXPECT_EQ(s[0], 0x1p-6f);
  EXPECT_EQ(s[1], 0.5f / 448.0f);
  EXPECT_EQ(s[2], 1.0f);
  EXPECT_EQ(s[3], 1e-4f / 448.0f);    // all-zero tile: the floor
  EXPECT_EQ(q[10 * cols + 0], 0xfe);  // -448
  EXPECT_EQ(q[20 * cols + 1], 0x7e);
  EXPECT_EQ(q[129 * cols + 0], 0x7e);
}

// Round trip: |dequantized - x| <= half an FP8 ulp of x/s, times s (plus a few f32 ulps).
TEST_P(Fp8ConvertKernels, DequantizeRoundTripWithinHalfUlp) {
  const int64_t rows = 131, cols = 259;
  const std::vector<float> x = random_matrix(rows, cols, 5, 2.0f);
  for (Fp8Format f : kFormats)
    for (Fp8Tiling t : kTilings) {
      std::vector<uint8_t> q(x.size());
      std::vector<float> s(size_t(fp8_scale_rows(t, rows) * fp8_scale_cols(t, cols))), y(x.size());
      quantize_fp8(x.data(), rows, cols, f, t, false, q.data(), s.data());
      const Fp8Matrix m{q.data(), s.data(), rows, cols, f, t};
      dequantize_fp8(m, y.data());
      const float rel = f == Fp8Format::e4m3 ? 0x1p-4f : 0x1p-3f;    // half ulp, normals
      const float sub = f == Fp8Format::e4m3 ? 0x1p-10f : 0x1p-17f;  // half the subnormal step
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
          const size_t i = size_t(r * cols + c);
          const float sc = m.scale_at(r, c);
          ASSERT_EQ(y[i], m.at(r, c));
          ASSERT_LE(std::fabs(y[i] - x[i]), std::max(std::fabs(x[i]) * rel, sc * sub) + std::fabs(x[i]) * 1e-6f)
              << fp8_format_name(f) << " " << fp8_tiling_name(t) << " at " << r << "," << c;
        }
    }
}

TEST_P(Fp8ConvertKernels, TransposeIsExact) {
  const int64_t rows = 150, cols = 260;
  const std::vector<float> x = random_matrix(rows, cols, 9, 1.0f);
  for (Fp8Tiling t : kTilings) {
    std::vector<uint8_t> q(x.size()), qt(x.size());
    const int64_t ns = fp8_scale_rows(t, rows) * fp8_scale_cols(t, cols);
    std::vector<float> s(static_cast<size_t>(ns)), st(static_cast<size_t>(ns));
    quantize_fp8(x.data(), rows, cols, Fp8Format::e4m3, t, false, q.data(), s.data());
    const Fp8Matrix m{q.data(), s.data(), rows, cols, Fp8Format::e4m3, t};
    const Fp8Matrix mt = transpose_fp8(m, qt.data(), st.data());
    ASSERT_EQ(mt.rows, cols);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(mt.at(c, r), m.at(r, c)) << fp8_tiling_name(t);
  }
}

// DeepSeek-V3 sizes: a hidden-state batch (7168 = 56 tiles) and a weight slab with a partial block.
TEST_P(Fp8ConvertKernels, QuantizeDeepSeekSizes) {
  struct Case {
    int64_t rows, cols;
    Fp8Tiling tiling;
  };
  for (const Case& k : {Case{4, 7168, Fp8Tiling::tile_1x128}, Case{200, 7168, Fp8Tiling::block_128x128},
                        Case{300, 2048, Fp8Tiling::tile_128x1}}) {
    const std::vector<float> x = random_matrix(k.rows, k.cols, 21, 1.0f);
    const int64_t ns = fp8_scale_rows(k.tiling, k.rows) * fp8_scale_cols(k.tiling, k.cols);
    std::vector<uint8_t> q(x.size()), q_ref(x.size());
    std::vector<float> s(static_cast<size_t>(ns)), s_ref(static_cast<size_t>(ns));
    quantize_fp8(x.data(), k.rows, k.cols, Fp8Format::e4m3, k.tiling, true, q.data(), s.data());
    reference::quantize_fp8(x.data(), k.rows, k.cols, Fp8Format::e4m3, k.tiling, true, q_ref.data(), s_ref.data());
    EXPECT_EQ(q, q_ref) << fp8_tiling_name(k.tiling);
    EXPECT_EQ(s, s_ref) << fp8_tiling_name(k.tiling);
  }
}

TEST_P(Fp8ConvertKernels, NanAndInfinityInQuantizerMatchReference) {
  std::vector<float> x = random_matrix(3, 300, 4);
  x[7] = std::numeric_limits<float>::quiet_NaN();         // tile (0, 0): NaN ignored by amax, encodes 0x7F
  x[300 + 130] = std::numeric_limits<float>::infinity();  // tile (1, 1): scale inf, elements NaN or 0
  for (Fp8Tiling t : kTilings) {
    const int64_t ns = fp8_scale_rows(t, 3) * fp8_scale_cols(t, 300);
    std::vector<uint8_t> q(x.size()), q_ref(x.size());
    std::vector<float> s(static_cast<size_t>(ns)), s_ref(static_cast<size_t>(ns));
    quantize_fp8(x.data(), 3, 300, Fp8Format::e4m3, t, false, q.data(), s.data());
    reference::quantize_fp8(x.data(), 3, 300, Fp8Format::e4m3, t, false, q_ref.data(), s_ref.data());
    EXPECT_EQ(q, q_ref) << fp8_tiling_name(t);
    for (size_t i = 0; i < s.size(); ++i) EXPECT_EQ(f32_to_bits(s[i]), f32_to_bits(s_ref[i])) << i;
    EXPECT_EQ(q[7], 0x7f);
  }
}
