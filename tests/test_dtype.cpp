// Scalar dtype conversions (src/core/dtype.h) against definitions written out independently here.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "core/dtype.h"

using namespace dsv3;

namespace {

// OCP FP8 E4M3 ("fn"): 1 sign, 4 exponent (bias 7), 3 mantissa bits; S.1111.111 is NaN, no infinities.
double ocp_e4m3(uint8_t c) {
  const int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
  if (e == 15 && m == 7) return std::numeric_limits<double>::quiet_NaN();
  const double mag = e == 0 ? (m / 8.0) * std::pow(2.0, -6) : (1.0 + m / 8.0) * std::pow(2.0, e - 7);
  return s ? -mag : mag;
}

// OCP FP8 E5M2: 1 sign, 5 exponent (bias 15), 2 mantissa bits; IEEE-style infinities and NaNs.
double ocp_e5m2(uint8_t c) {
  const int s = c >> 7, e = (c >> 2) & 31, m = c & 3;
  double mag;
  if (e == 31)
    mag = m == 0 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
  else
    mag = e == 0 ? (m / 4.0) * std::pow(2.0, -14) : (1.0 + m / 4.0) * std::pow(2.0, e - 15);
  return s ? -mag : mag;
}

// IEEE binary16.
double ieee_f16(uint16_t c) {
  const int s = c >> 15, e = (c >> 10) & 31, m = c & 1023;
  double mag;
  if (e == 31)
    mag = m == 0 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
  else
    mag = e == 0 ? (m / 1024.0) * std::pow(2.0, -14) : (1.0 + m / 1024.0) * std::pow(2.0, e - 15);
  return s ? -mag : mag;
}

bool same_value(double expected, float got) {
  if (std::isnan(expected)) return std::isnan(got);
  return double(got) == expected && std::signbit(expected) == std::signbit(got);
}

// Non-negative finite codes sorted by value, for walking midpoints.
template <typename Decode>
std::vector<std::pair<double, int>> finite_positive_codes(int n_codes, Decode decode) {
  std::vector<std::pair<double, int>> v;
  for (int c = 0; c < n_codes; ++c) {
    const double x = decode(c);
    if (std::isfinite(x) && !std::signbit(x)) v.emplace_back(x, c);
  }
  std::sort(v.begin(), v.end());
  return v;
}

// At each midpoint between adjacent representable values the even code must win, and a hair to
// either side must go to the nearer value. Works for any format whose code LSB is the mantissa LSB.
template <typename Encode>
void check_midpoints(const std::vector<std::pair<double, int>>& codes, Encode encode, int sign_bit) {
  for (size_t i = 0; i + 1 < codes.size(); ++i) {
    const auto [lo, lo_code] = codes[i];
    const auto [hi, hi_code] = codes[i + 1];
    const float mid = float((lo + hi) / 2);
    ASSERT_EQ(double(mid), (lo + hi) / 2) << "midpoint not exact in f32";
    const int even = (lo_code % 2 == 0) ? lo_code : hi_code;
    EXPECT_EQ(encode(mid), even) << "tie between " << lo << " and " << hi;
    EXPECT_EQ(encode(-mid), even | sign_bit) << "tie between " << -lo << " and " << -hi;
    EXPECT_EQ(encode(std::nextafter(mid, 0.0f)), lo_code) << "just below the midpoint of " << lo << ", " << hi;
    EXPECT_EQ(encode(std::nextafter(mid, 1e30f)), hi_code) << "just above the midpoint of " << lo << ", " << hi;
  }
}

}  // namespace

TEST(Dtype, SizesAndNames) {
  for (DType t : {DType::F32, DType::BF16, DType::F16, DType::F8_E4M3, DType::F64, DType::I64, DType::I32}) {
    DType parsed;
    ASSERT_TRUE(parse_dtype(dtype_name(t), &parsed));
    EXPECT_EQ(parsed, t);
  }
  EXPECT_EQ(dtype_size(DType::F8_E4M3), 1u);
  EXPECT_EQ(dtype_size(DType::BF16), 2u);
  EXPECT_EQ(dtype_size(DType::F64), 8u);
  DType unused;
  EXPECT_FALSE(parse_dtype("F8_E5M2", &unused));
  EXPECT_FALSE(parse_dtype("bf16", &unused));
}

TEST(Dtype, E4M3DecodesAllCodesPerOcp) {
  for (int c = 0; c < 256; ++c) EXPECT_TRUE(same_value(ocp_e4m3(uint8_t(c)), e4m3_to_f32(uint8_t(c)))) << "code " << c;
  EXPECT_EQ(e4m3_to_f32(0x7E), 448.0f);
  EXPECT_EQ(e4m3_to_f32(0xFE), -448.0f);
  EXPECT_EQ(e4m3_to_f32(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(e4m3_to_f32(0x08), std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_TRUE(std::isnan(e4m3_to_f32(0x7F)));
  EXPECT_TRUE(std::isnan(e4m3_to_f32(0xFF)));
  EXPECT_EQ(kE4M3Max, 448.0f);
}

TEST(Dtype, E4M3RoundTripsEveryCode) {
  for (int c = 0; c < 256; ++c) {
    if (c == 0x7F || c == 0xFF) continue;
    EXPECT_EQ(f32_to_e4m3(e4m3_to_f32(uint8_t(c))), c) << "code " << c;
  }
}

TEST(Dtype, E4M3RoundsHalfToEvenAtEveryMidpoint) {
  check_midpoints(
      finite_positive_codes(256, [](int c) { return ocp_e4m3(uint8_t(c)); }),
      [](float f) { return int(f32_to_e4m3(f)); }, 0x80);
  // Below the smallest subnormal: half of it is a tie with zero (even), anything more rounds up.
  EXPECT_EQ(f32_to_e4m3(std::ldexp(1.0f, -10)), 0x00);
  EXPECT_EQ(f32_to_e4m3(std::ldexp(1.0f, -10) * 1.001f), 0x01);
  EXPECT_EQ(f32_to_e4m3(std::ldexp(1.0f, -30)), 0x00);
  EXPECT_EQ(f32_to_e4m3(-std::ldexp(1.0f, -30)), 0x80);
}

TEST(Dtype, E4M3SaturatesAndMapsNaN) {
  for (float f : {448.0f, 449.0f, 463.9f, 464.0f, 480.0f, 1e6f, 3e38f, std::numeric_limits<float>::infinity()}) {
    EXPECT_EQ(f32_to_e4m3(f), 0x7E) << f;
    EXPECT_EQ(f32_to_e4m3(-f), 0xFE) << -f;
  }
  EXPECT_EQ(f32_to_e4m3(std::nanf("")), 0x7F);
  EXPECT_EQ(f32_to_e4m3(0.0f), 0x00);
  EXPECT_EQ(f32_to_e4m3(-0.0f), 0x80);
}

TEST(Dtype, E5M2DecodesAllCodes) {
  for (int c = 0; c < 256; ++c) EXPECT_TRUE(same_value(ocp_e5m2(uint8_t(c)), e5m2_to_f32(uint8_t(c)))) << "code " << c;
  EXPECT_EQ(e5m2_to_f32(0x7B), 57344.0f);
  EXPECT_EQ(e5m2_to_f32(0x7C), std::numeric_limits<float>::infinity());
  EXPECT_EQ(e5m2_to_f32(0xFC), -std::numeric_limits<float>::infinity());
  EXPECT_EQ(kE5M2Max, 57344.0f);
}

TEST(Dtype, E5M2RoundTripsAndRoundsHalfToEven) {
  for (int c = 0; c < 256; ++c) {
    const double v = ocp_e5m2(uint8_t(c));
    if (!std::isfinite(v)) continue;
    EXPECT_EQ(f32_to_e5m2(float(v)), c) << "code " << c;
  }
  check_midpoints(
      finite_positive_codes(256, [](int c) { return ocp_e5m2(uint8_t(c)); }),
      [](float f) { return int(f32_to_e5m2(f)); }, 0x80);
  // Saturating conversion (as the header documents): beyond the max finite value stays at it.
  for (float f : {57344.0f, 61439.0f, 61440.0f, 1e9f, std::numeric_limits<float>::infinity()}) {
    EXPECT_EQ(f32_to_e5m2(f), 0x7B) << f;
    EXPECT_EQ(f32_to_e5m2(-f), 0xFB) << -f;
  }
  EXPECT_TRUE(std::isnan(e5m2_to_f32(f32_to_e5m2(std::nanf("")))));
}

TEST(Dtype, F16DecodesRoundTripsAndRoundsHalfToEven) {
  for (int c = 0; c < 65536; ++c) {
    const double v = ieee_f16(uint16_t(c));
    ASSERT_TRUE(same_value(v, f16_to_f32(uint16_t(c)))) << "code " << c;
    if (!std::isnan(v)) {
      ASSERT_EQ(f32_to_f16(float(v)), c) << "code " << c;
    }
  }
  check_midpoints(
      finite_positive_codes(65536, [](int c) { return ieee_f16(uint16_t(c)); }),
      [](float f) { return int(f32_to_f16(f)); }, 0x8000);
  // Overflow: the midpoint between 65504 and 65536 ties to the even code, infinity.
  EXPECT_EQ(f32_to_f16(65519.99f), 0x7BFF);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7C00);
  EXPECT_EQ(f32_to_f16(-1e10f), 0xFC00);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);  // half the smallest subnormal: tie to 0
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25) * 1.0001f), 0x0001);
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(std::nanf("")))));
}

TEST(Dtype, Bf16RoundTripsAndRoundsHalfToEven) {
  for (int c = 0; c < 65536; ++c) {
    const float v = bits_to_f32(uint32_t(c) << 16);
    if (std::isnan(v)) {
      EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(v))));
      continue;
    }
    ASSERT_EQ(f32_to_bf16(v), c) << "code " << c;
  }
  // Ties: 1 + 2^-8 lies halfway between 1 (even) and 1 + 2^-7 (odd).
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);
  // Subnormals round the same way: 0x00018000 is halfway between codes 1 and 2 -> 2.
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x00018000u)), 0x0002);
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x00008000u)), 0x0000);
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x00008001u)), 0x0001);
  // The top of the range rounds to infinity at the tie (0x7F7F is odd).
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x7F7F7FFFu)), 0x7F7F);
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x7F7F8000u)), 0x7F80);

  // Random floats against round-to-nearest computed in double from the two bf16 neighbours.
  std::mt19937 rng(1234);
  for (int i = 0; i < 200000; ++i) {
    const uint32_t bits = rng();
    const float x = bits_to_f32(bits);
    if (!std::isfinite(x)) continue;
    const uint16_t lo = uint16_t(bits >> 16);
    const uint16_t hi = uint16_t(lo + 1);
    const double dlo = std::fabs(double(x) - double(bf16_to_f32(lo)));
    const float fhi = bf16_to_f32(hi);
    const double dhi = std::isinf(fhi) ? (std::ldexp(1.0, 128) - std::fabs(double(x)))  // inf sits at 2^128
                                       : std::fabs(double(x) - double(fhi));
    const uint16_t expected = dlo < dhi ? lo : dhi < dlo ? hi : (lo % 2 == 0 ? lo : hi);
    ASSERT_EQ(f32_to_bf16(x), expected) << "bits " << std::hex << bits;
  }
}

TEST(Dtype, LoadAsF32ReadsEveryFloatType) {
  const float f32[] = {1.5f};
  const uint16_t bf16[] = {0x3FC0};
  const uint16_t f16[] = {0x3E00};
  const uint8_t e4m3[] = {0x3C};
  const double f64[] = {1.5};
  EXPECT_EQ(load_as_f32(f32, DType::F32, 0), 1.5f);
  EXPECT_EQ(load_as_f32(bf16, DType::BF16, 0), 1.5f);
  EXPECT_EQ(load_as_f32(f16, DType::F16, 0), 1.5f);
  EXPECT_EQ(load_as_f32(e4m3, DType::F8_E4M3, 0), 1.5f);
  EXPECT_EQ(load_as_f32(f64, DType::F64, 0), 1.5f);
  const int32_t i32[] = {1};
  EXPECT_THROW(load_as_f32(i32, DType::I32, 0), std::exception);
}
