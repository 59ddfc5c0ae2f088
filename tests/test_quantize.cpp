// FP8 block/tile quantization reference (src/ops/quantize.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "ops/quantize.h"

using namespace dsv3;

namespace {

bool is_power_of_two(float s) {
  int e;
  return s > 0 && std::frexp(s, &e) == 0.5f;
}

// Round-to-nearest into E4M3 loses at most half an ulp: 2^-4 relative for normals, 2^-10 absolute
// below the smallest normal (2^-6). In the original units both bounds are multiplied by the scale;
// a few f32 ulps cover the division by the scale and the multiplication back.
float e4m3_error_bound(float w, float scale) {
  return std::max(std::fabs(w) * 0x1p-4f, scale * 0x1p-10f) + std::fabs(w) * 1e-6f;
}

// A matrix whose 128×128 blocks have very different magnitudes, so that reading an element with
// the wrong block's scale breaks the error bound.
std::vector<float> blocky_matrix(int64_t rows, int64_t cols, int64_t block, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> w(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const float magnitude = std::pow(10.0f, float((r / block) * 2 + (c / block)) - 2.0f);
      w[size_t(r * cols + c)] = normal(rng) * magnitude;
    }
  return w;
}

}  // namespace

TEST(Quantize, ScaleForAmax) {
  EXPECT_EQ(fp8_scale_for_amax(448.0f, false), 1.0f);
  EXPECT_EQ(fp8_scale_for_amax(7.0f, false), 7.0f / 448.0f);
  EXPECT_EQ(fp8_scale_for_amax(0.0f, false), 1e-4f / 448.0f);  // floor keeps zero blocks finite
  EXPECT_EQ(fp8_scale_for_amax(3.0f, true), 0x1p-7f);          // 3/448 = 2^-7.22 -> 2^-7
  EXPECT_EQ(fp8_scale_for_amax(448.0f, true), 1.0f);           // already a power of two
  EXPECT_EQ(fp8_scale_for_amax(448.1f, true), 2.0f);
}

// Worked by hand: amax 7 -> scale 7/448 = 2^-6, so w/s = 64·w = 32, -112, 192, 448, 0, -6.4.
// 32 = 1.0·2^5 -> 0x60; -112 = -1.75·2^6 -> 0xEE; 192 = 1.5·2^7 -> 0x74; 448 -> 0x7E; 0 -> 0x00;
// -6.4 lies in [4, 8) where the step is 0.5: -6.4 -> -6.5 = -1.625·2^2 -> 0xCD.
TEST(Quantize, HandWorkedBlock) {
  const float w[] = {0.5f, -1.75f, 3.0f, 7.0f, 0.0f, -0.1f};
  uint8_t q[6];
  float scale;
  quantize_fp8_blocks(w, 2, 3, 128, false, q, &scale);
  EXPECT_EQ(scale, 0.015625f);
  const uint8_t expected[] = {0x60, 0xEE, 0x74, 0x7E, 0x00, 0xCD};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(q[i], expected[i]) << i;
  float back[6];
  dequantize_fp8_blocks(q, &scale, 2, 3, 128, back);
  const float expected_back[] = {0.5f, -1.75f, 3.0f, 7.0f, 0.0f, -6.5f / 64};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(back[i], expected_back[i]) << i;
}

// amax 3: plain scale 3/448 maps 3 -> 448 (0x7E) and -1 -> -149.33 -> -144 = -1.125·2^7 (0xF1);
// ue8m0 scale 2^-7 maps 3 -> 384 = 1.5·2^8 (0x7C) and -1 -> -128 (0xF0).
TEST(Quantize, HandWorkedPowerOfTwoScale) {
  const float w[] = {3.0f, -1.0f};
  uint8_t q[2];
  float scale;
  quantize_fp8_blocks(w, 1, 2, 128, false, q, &scale);
  EXPECT_EQ(scale, 3.0f / 448.0f);
  EXPECT_EQ(q[0], 0x7E);
  EXPECT_EQ(q[1], 0xF1);
  quantize_fp8_blocks(w, 1, 2, 128, true, q, &scale);
  EXPECT_EQ(scale, 0x1p-7f);
  EXPECT_EQ(q[0], 0x7C);
  EXPECT_EQ(q[1], 0xF0);
}

TEST(Quantize, PartialBlocksScalesAndErrorBound) {
  const int64_t rows = 300, cols = 200, block = 128;
  for (bool pow2 : {false, true}) {
    const std::vector<float> w = blocky_matrix(rows, cols, block, 7);
    std::vector<uint8_t> q(w.size());
    const int64_t srows = 3, scols = 2;  // ceil(300/128), ceil(200/128)
    std::vector<float> scale(size_t(srows * scols), -1.0f);
    quantize_fp8_blocks(w.data(), rows, cols, block, pow2, q.data(), scale.data());
    for (int64_t br = 0; br < srows; ++br)
      for (int64_t bc = 0; bc < scols; ++bc) {
        float amax = 0;
        for (int64_t r = br * block; r < std::min(rows, (br + 1) * block); ++r)
          for (int64_t c = bc * block; c < std::min(cols, (bc + 1) * block); ++c)
            amax = std::max(amax, std::fabs(w[size_t(r * cols + c)]));
        const float s = scale[size_t(br * scols + bc)];
        if (pow2) {
          EXPECT_TRUE(is_power_of_two(s)) << s;
          EXPECT_GE(s, amax / 448.0f);
          EXPECT_LT(s, 2 * amax / 448.0f);
        } else {
          EXPECT_EQ(s, amax / 448.0f) << "block " << br << "," << bc;
        }
      }
    std::vector<float> back(w.size());
    dequantize_fp8_blocks(q.data(), scale.data(), rows, cols, block, back.data());
    int64_t violations = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const size_t i = size_t(r * cols + c);
        const float s = scale[size_t((r / block) * scols + c / block)];
        if (std::fabs(back[i] - w[i]) > e4m3_error_bound(w[i], s)) ++violations;
        // Dequantizing one element by hand must agree with the bulk routine.
        ASSERT_EQ(back[i], e4m3_to_f32(q[i]) * s);
      }
    EXPECT_EQ(violations, 0) << "pow2 " << pow2;
  }
}

TEST(Quantize, ZeroBlockHasFiniteScaleAndZeroCodes) {
  const int64_t rows = 130, cols = 130;
  std::vector<float> w(size_t(rows * cols), 0.0f);
  w[size_t(129 * cols + 129)] = 3.5f;  // only the bottom-right (partial) block is non-zero
  std::vector<uint8_t> q(w.size(), 0xAA);
  std::vector<float> scale(4);
  quantize_fp8_blocks(w.data(), rows, cols, 128, false, q.data(), scale.data());
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(std::isfinite(scale[size_t(i)]));
    EXPECT_GT(scale[size_t(i)], 0.0f);
  }
  EXPECT_EQ(scale[3], 0x1p-7f);  // 3.5 / 448
  std::vector<float> back(w.size());
  dequantize_fp8_blocks(q.data(), scale.data(), rows, cols, 128, back.data());
  for (size_t i = 0; i < w.size(); ++i) ASSERT_EQ(back[i], w[i]) << i;  // 3.5 -> 448 · 2^-7 exactly
}

TEST(Quantize, ActivationTilesPerRowPer128Columns) {
  const int64_t rows = 3, cols = 300;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) x[size_t(r * cols + c)] = normal(rng) * std::pow(10.0f, float(r + c / 128));
  std::vector<uint8_t> q(x.size());
  std::vector<float> scales(size_t(rows * 3));
  quantize_fp8_tiles_1x128(x.data(), rows, cols, false, q.data(), scales.data());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t t = 0; t < 3; ++t) {
      float amax = 0;
      for (int64_t c = t * 128; c < std::min(cols, (t + 1) * 128); ++c)
        amax = std::max(amax, std::fabs(x[size_t(r * cols + c)]));
      EXPECT_EQ(scales[size_t(r * 3 + t)], amax / 448.0f);
    }
  std::vector<float> back(x.size());
  dequantize_fp8_tiles_1x128(q.data(), scales.data(), rows, cols, back.data());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const size_t i = size_t(r * cols + c);
      EXPECT_LE(std::fabs(back[i] - x[i]), e4m3_error_bound(x[i], scales[size_t(r * 3 + c / 128)]));
    }
}
