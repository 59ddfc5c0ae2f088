#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "model/rope.h"
#include "test_support.h"

namespace dsv3 {
namespace {

ModelConfig rope_config(bool yarn) {
  ModelConfig c = testing::tiny_v3_config();
  c.qk_rope_head_dim = 64;
  c.rope_theta = 10000.0;
  c.rope_scaling = RopeScaling{};
  if (yarn) {
    c.rope_scaling.yarn = true;
    c.rope_scaling.factor = 40.0;
    c.rope_scaling.beta_fast = 32.0;
    c.rope_scaling.beta_slow = 1.0;
    c.rope_scaling.mscale = 1.0;
    c.rope_scaling.mscale_all_dim = 1.0;
    c.rope_scaling.original_max_position_embeddings = 4096;
  }
  return c;
}

TEST(Rope, PlainFrequencies) {
  const RopeFrequencies r = rope_frequencies(rope_config(false));
  ASSERT_EQ(r.dim, 64);
  ASSERT_EQ(r.inv_freq.size(), 32u);
  EXPECT_EQ(r.cos_sin_scale, 1.0f);
  for (int i = 0; i < 32; ++i) {
    const double expected = std::pow(10000.0, -2.0 * i / 64.0);
    EXPECT_NEAR(r.inv_freq[size_t(i)], expected, expected * 1e-7) << "i=" << i;
  }
}

TEST(Rope, YarnFrequenciesMatchHandComputedFormula) {
  const RopeFrequencies r = rope_frequencies(rope_config(true));
  // Correction range by hand: dim·ln(orig / (2π·rotations)) / (2·ln base) for rotations 32 and 1:
  // 64·ln(4096/(64π)) / (2 ln 1e4) = 10.47 -> floor 10;  64·ln(4096/(2π)) / (2 ln 1e4) = 22.52 -> ceil 23.
  const double d = 64, base = 1e4, orig = 4096;
  const double low_dim = d * std::log(orig / (32 * 2 * M_PI)) / (2 * std::log(base));
  const double high_dim = d * std::log(orig / (1 * 2 * M_PI)) / (2 * std::log(base));
  ASSERT_NEAR(low_dim, 10.47, 0.01);
  ASSERT_NEAR(high_dim, 22.52, 0.01);
  const double low = 10, high = 23;
  for (int i = 0; i < 32; ++i) {
    const double theta = std::pow(base, -2.0 * i / d);
    const double ramp = std::min(1.0, std::max(0.0, (i - low) / (high - low)));
    // ramp 0: high-frequency dims keep θ; ramp 1: low-frequency dims are interpolated to θ / factor.
    const double expected = theta * (1 - ramp) + theta / 40.0 * ramp;
    EXPECT_NEAR(r.inv_freq[size_t(i)], expected, expected * 1e-6) << "i=" << i;
  }
  // Spot values: untouched below the ramp, fully interpolated above it.
  EXPECT_NEAR(r.inv_freq[5], std::pow(base, -10.0 / 64), 1e-7);
  EXPECT_NEAR(r.inv_freq[30], std::pow(base, -60.0 / 64) / 40, 1e-10);
  EXPECT_EQ(r.cos_sin_scale, 1.0f);  // mscale == mscale_all_dim
}

TEST(Rope, YarnMscaleRatioScalesCosSin) {
  ModelConfig c = rope_config(true);
  c.rope_scaling.mscale = 0.707;
  c.rope_scaling.mscale_all_dim = 0.707;  // DeepSeek-V2-Lite: ratio 1
  EXPECT_FLOAT_EQ(rope_frequencies(c).cos_sin_scale, 1.0f);
  c.rope_scaling.mscale = 1.0;
  c.rope_scaling.mscale_all_dim = 0.0;  // HF: (0.1·1·ln 40 + 1) / 1
  EXPECT_NEAR(rope_frequencies(c).cos_sin_scale, 0.1 * std::log(40.0) + 1.0, 1e-6);
}

TEST(Rope, TablesAreCosSinOfF32Angles) {
  const RopeFrequencies r = rope_frequencies(rope_config(true));
  const int64_t pos = 5000, n = 3, half = 32;
  std::vector<float> cos(size_t(n * half)), sin(size_t(n * half));
  rope_tables(r, pos, n, cos.data(), sin.data());
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const float angle = float(pos + t) * r.inv_freq[size_t(i)];
      EXPECT_NEAR(cos[size_t(t * half + i)], std::cos(double(angle)), 1e-6);
      EXPECT_NEAR(sin[size_t(t * half + i)], std::sin(double(angle)), 1e-6);
    }
}

TEST(Rope, RotationPreservesNormAndPairs) {
  const RopeFrequencies r = rope_frequencies(rope_config(true));
  std::mt19937 rng(7);
  std::normal_distribution<float> dist;
  std::vector<float> cos(32), sin(32);
  for (int64_t pos : {0, 1, 17, 4095, 100000}) {
    rope_tables(r, pos, 1, cos.data(), sin.data());
    std::vector<float> x(64);
    for (float& v : x) v = dist(rng);
    std::vector<float> y = x;
    rope_rotate(y.data(), cos.data(), sin.data(), 32);
    for (int i = 0; i < 32; ++i) {  // each interleaved pair keeps its length
      const double before = std::hypot(double(x[2 * i]), double(x[2 * i + 1]));
      const double after = std::hypot(double(y[2 * i]), double(y[2 * i + 1]));
      EXPECT_NEAR(after, before, 1e-5 * (1 + before)) << "pos " << pos << " pair " << i;
    }
    if (pos == 0) {
      for (int i = 0; i < 64; ++i) EXPECT_EQ(y[size_t(i)], x[size_t(i)]);  // angle 0
    }
  }
}

// Hugging Face's modeling_deepseek.py permutes each rope vector to [evens, odds] and applies
// rotate_half (pairs i, i + d/2) with cos/sin repeated twice. That must equal our interleaved rotation
// followed by the same permutation — which is why checkpoints need no de-interleaving.
TEST(Rope, InterleavedMatchesHuggingFacePermutedRotateHalf) {
  const RopeFrequencies r = rope_frequencies(rope_config(true));
  const int64_t half = 32;
  std::vector<float> cos(32), sin(32);
  rope_tables(r, 1234, 1, cos.data(), sin.data());
  std::mt19937 rng(3);
  std::normal_distribution<float> dist;
  std::vector<float> x(64);
  for (float& v : x) v = dist(rng);

  std::vector<float> ours = x;
  rope_rotate(ours.data(), cos.data(), sin.data(), half);

  std::vector<float> perm(64), hf(64);
  for (int64_t i = 0; i < half; ++i) {
    perm[size_t(i)] = x[size_t(2 * i)];
    perm[size_t(i + half)] = x[size_t(2 * i + 1)];
  }
  for (int64_t j = 0; j < 64; ++j) {
    const float c = cos[size_t(j % half)], s = sin[size_t(j % half)];
    const float rotated_half = j < half ? -perm[size_t(j + half)] : perm[size_t(j - half)];
    hf[size_t(j)] = perm[size_t(j)] * c + rotated_half * s;
  }
  for (int64_t i = 0; i < half; ++i) {
    EXPECT_NEAR(hf[size_t(i)], ours[size_t(2 * i)], 1e-6);
    EXPECT_NEAR(hf[size_t(i + half)], ours[size_t(2 * i + 1)], 1e-6);
  }
}

}  // namespace
}  // namespace dsv3
