#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "core/error.h"
#include "infer/sampler.h"

using namespace dsv3;

TEST(Sampler, GreedyPicksArgmaxAndFirstOnTies) {
  std::vector<float> logits = {0.1f, 2.0f, -1.0f, 2.0f};
  Sampler s({});
  EXPECT_EQ(s.sample(logits.data(), 4), 1);
}

TEST(Sampler, SameSeedSameSequence) {
  std::vector<float> logits = {0.5f, 0.4f, 0.3f, 0.2f, 0.1f};
  Sampler a({1.0f, 0, 1.0f, 42}), b({1.0f, 0, 1.0f, 42});
  for (int i = 0; i < 50; ++i) EXPECT_EQ(a.sample(logits.data(), 5), b.sample(logits.data(), 5));
}

TEST(Sampler, TopKOnlyReturnsTopK) {
  std::vector<float> logits = {3.0f, 2.9f, 0.0f, -1.0f, 2.8f};
  Sampler s({10.0f, 2, 1.0f, 7});
  for (int i = 0; i < 200; ++i) {
    const int32_t t = s.sample(logits.data(), 5);
    EXPECT_TRUE(t == 0 || t == 1) << t;
  }
}

TEST(Sampler, TopPKeepsSmallestPrefixReachingMass) {
  // Probabilities 0.5, 0.3, 0.2 at temperature 1: top_p 0.75 keeps the first two only.
  std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  Sampler s({1.0f, 0, 0.75f, 3});
  std::map<int32_t, int> counts;
  for (int i = 0; i < 4000; ++i) counts[s.sample(logits.data(), 3)]++;
  EXPECT_EQ(counts[2], 0);
  // Renormalised 0.5/0.8 = 0.625 for token 0; 4000 draws give a standard deviation of ~31.
  EXPECT_NEAR(counts[0], 2500, 150);
}

TEST(Sampler, FrequenciesFollowSoftmax) {
  std::vector<float> logits = {1.0f, 0.0f};
  Sampler s({1.0f, 0, 1.0f, 11});
  int ones = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) ones += s.sample(logits.data(), 2) == 0;
  const double p = 1.0 / (1.0 + std::exp(-1.0));  // 0.731
  EXPECT_NEAR(double(ones) / n, p, 4 * std::sqrt(p * (1 - p) / n));
}

TEST(Sampler, RejectsBadParameters) {
  EXPECT_THROW(Sampler({-1.0f, 0, 1.0f, 0}), Error);
  EXPECT_THROW(Sampler({1.0f, -2, 1.0f, 0}), Error);
  EXPECT_THROW(Sampler({1.0f, 0, 0.0f, 0}), Error);
  EXPECT_THROW(Sampler({1.0f, 0, 1.5f, 0}), Error);
}
