#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "infer/sampler.h"
#include "io/tokenizer.h"

using namespace dsv3;

namespace {

SamplingParams params(float temperature, int64_t top_k, float top_p, uint64_t seed,
                      std::shared_ptr<const TokenMask> allowed_ids = nullptr) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.seed = seed;
  p.allowed_ids = std::move(allowed_ids);
  return p;
}

}  // namespace

TEST(Sampler, GreedyPicksArgmaxAndFirstOnTies) {
  std::vector<float> logits = {0.1f, 2.0f, -1.0f, 2.0f};
  Sampler s({});
  EXPECT_EQ(s.sample(logits.data(), 4), 1);
}

TEST(Sampler, SameSeedSameSequence) {
  std::vector<float> logits = {0.5f, 0.4f, 0.3f, 0.2f, 0.1f};
  Sampler a(params(1.0f, 0, 1.0f, 42)), b(params(1.0f, 0, 1.0f, 42));
  for (int i = 0; i < 50; ++i) EXPECT_EQ(a.sample(logits.data(), 5), b.sample(logits.data(), 5));
}

TEST(Sampler, TopKOnlyReturnsTopK) {
  std::vector<float> logits = {3.0f, 2.9f, 0.0f, -1.0f, 2.8f};
  Sampler s(params(10.0f, 2, 1.0f, 7));
  for (int i = 0; i < 200; ++i) {
    const int32_t t = s.sample(logits.data(), 5);
    EXPECT_TRUE(t == 0 || t == 1) << t;
  }
}

TEST(Sampler, TopPKeepsSmallestPrefixReachingMass) {
  // Probabilities 0.5, 0.3, 0.2 at temperature 1: top_p 0.75 keeps the first two only.
  std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  Sampler s(params(1.0f, 0, 0.75f, 3));
  std::map<int32_t, int> counts;
  for (int i = 0; i < 4000; ++i) counts[s.sample(logits.data(), 3)]++;
  EXPECT_EQ(counts[2], 0);
  // Renormalised 0.5/0.8 = 0.625 for token 0; 4000 draws give a standard deviation of ~31.
  EXPECT_NEAR(counts[0], 2500, 150);
}

// Top-p over a large vocabulary: the kept set is the best-first prefix a brute-force sort finds, both when
// it is small and when it runs past the 256 candidates sorted first (and the 2048 after them).
TEST(Sampler, TopPPrefixMatchesAFullSortAtAnySize) {
  const int64_t V = 20000;
  std::mt19937 rng(5);
  for (const float spread : {8.0f, 1.0f, 0.2f}) {
    std::normal_distribution<float> normal(0.0f, spread);
    std::vector<float> logits(static_cast<size_t>(V));
    for (float& l : logits) l = normal(rng);
    Sampler s(params(0.7f, 0, 0.9f, 1));
    std::vector<double> probs;
    s.distribution(logits.data(), V, probs);
    // Brute force: ids by logit (ties by id), weights exp((l - max) / T), smallest prefix reaching 0.9.
    std::vector<int32_t> order(static_cast<size_t>(V));
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
      return logits[size_t(a)] > logits[size_t(b)] || (logits[size_t(a)] == logits[size_t(b)] && a < b);
    });
    const float max_logit = logits[size_t(order[0])];
    double total = 0;
    for (float l : logits) total += std::exp(double(l - max_logit) / 0.7);
    double mass = 0;
    size_t keep = 0;
    while (keep < order.size() && mass < 0.9) mass += std::exp(double(logits[size_t(order[keep++])] - max_logit) / 0.7) / total;
    size_t kept = 0;
    for (double p : probs) kept += p > 0;
    EXPECT_EQ(kept, keep) << "spread " << spread;
    for (size_t i = 0; i < keep; ++i) EXPECT_GT(probs[size_t(order[i])], 0.0) << "spread " << spread << " rank " << i;
    if (spread == 0.2f) EXPECT_GT(keep, 2048u);  // the growth past the first sorts is exercised
    if (spread == 8.0f) EXPECT_LT(keep, 256u);
  }
}

TEST(Sampler, FrequenciesFollowSoftmax) {
  std::vector<float> logits = {1.0f, 0.0f};
  Sampler s(params(1.0f, 0, 1.0f, 11));
  int ones = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) ones += s.sample(logits.data(), 2) == 0;
  const double p = 1.0 / (1.0 + std::exp(-1.0));  // 0.731
  EXPECT_NEAR(double(ones) / n, p, 4 * std::sqrt(p * (1 - p) / n));
}

TEST(Sampler, RejectsBadParameters) {
  EXPECT_THROW(Sampler(params(-1.0f, 0, 1.0f, 0)), Error);
  EXPECT_THROW(Sampler(params(1.0f, -2, 1.0f, 0)), Error);
  EXPECT_THROW(Sampler(params(1.0f, 0, 0.0f, 0)), Error);
  EXPECT_THROW(Sampler(params(1.0f, 0, 1.5f, 0)), Error);
}

// A model's vocab_size may exceed its tokenizer's (DeepSeek-V3 pads 128,815 ids to 129,280): the mask
// keeps every mode on the allowed ids, even when the logits favour the others.
TEST(Sampler, MaskedIdsAreNeverSampledInAnyMode) {
  // 12 logits; the mask covers ids 0..7 and leaves out 3: ids 3 and 8..11 are not allowed and have
  // the largest logits.
  const std::vector<float> logits = {0.5f, 0.4f, 0.3f, 9.0f, 0.2f, 0.1f, 0.0f, -0.1f, 9.5f, 9.4f, 9.3f, 9.2f};
  auto mask = std::make_shared<TokenMask>(TokenMask{1, 1, 1, 0, 1, 1, 1, 1});
  const std::vector<SamplingParams> modes = {params(0.0f, 0, 1.0f, 1, mask), params(1.0f, 0, 1.0f, 2, mask),
                                             params(50.0f, 0, 1.0f, 3, mask), params(5.0f, 3, 1.0f, 4, mask),
                                             params(5.0f, 0, 0.5f, 5, mask), params(5.0f, 2, 0.9f, 6, mask)};
  for (const SamplingParams& p : modes) {
    Sampler s(p);
    for (int i = 0; i < 300; ++i) {
      const int32_t t = s.sample(logits.data(), 12);
      ASSERT_TRUE(t >= 0 && t < 8 && t != 3) << t << " at temperature " << p.temperature;
    }
  }
  // Greedy is the best allowed id; top-k and top-p count only allowed ids (k = 1: always the best
  // allowed one; top-p 0.15 at temperature 1: id 0 alone holds 0.19 of the allowed mass).
  EXPECT_EQ(Sampler(params(0.0f, 0, 1.0f, 0, mask)).sample(logits.data(), 12), 0);
  Sampler top1(params(50.0f, 1, 1.0f, 7, mask)), nucleus(params(1.0f, 0, 0.15f, 8, mask));
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(top1.sample(logits.data(), 12), 0);
    EXPECT_EQ(nucleus.sample(logits.data(), 12), 0);
  }
  // Unmasked, the same logits give the padded ids.
  EXPECT_EQ(Sampler(params(0.0f, 0, 1.0f, 0)).sample(logits.data(), 12), 8);
}

TEST(Sampler, MaskAllowingNoIdIsAnError) {
  const std::vector<float> logits = {1.0f, 2.0f, 3.0f};
  auto none = std::make_shared<TokenMask>(TokenMask{0, 0, 0, 1});  // id 3 is past the logits
  EXPECT_THROW(Sampler(params(0.0f, 0, 1.0f, 0, none)).sample(logits.data(), 3), Error);
  EXPECT_THROW(Sampler(params(1.0f, 0, 1.0f, 0, none)).sample(logits.data(), 3), Error);
}

// The mask of a tokenizer with gaps (ids 3 and 5) and 7 ids, for a model of 12: sampling from logits
// that favour the gaps and the padding gives only ids the tokenizer decodes.
TEST(Sampler, TokenizerMaskKeepsSamplingDecodable) {
  const nlohmann::json j = {
      {"added_tokens", {{{"id", 6}, {"content", "<s>"}, {"special", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}, {"c", 2}, {"d", 4}}}, {"merges", nlohmann::json::array()}}}};
  const Tokenizer tokenizer = Tokenizer::from_json_text(j.dump(), "", "gaps.json");
  ASSERT_EQ(tokenizer.vocab_size(), 7);
  EXPECT_EQ(*tokenizer.decodable_ids(), (TokenMask{1, 1, 1, 0, 1, 0, 1}));
  EXPECT_EQ(tokenizer.decodable_ids(), tokenizer.decodable_ids());  // built once, shared
  std::vector<float> logits(12, 0.0f);
  for (int32_t padded : {3, 5, 7, 8, 9, 10, 11}) logits[size_t(padded)] = 8.0f;
  for (float temperature : {0.0f, 0.7f, 3.0f}) {
    SamplingParams p = params(temperature, 0, 0.95f, 9);
    p.allowed_ids = tokenizer.decodable_ids();
    Sampler s(p);
    for (int i = 0; i < 200; ++i) {
      const int32_t t = s.sample(logits.data(), 12);
      ASSERT_NO_THROW(tokenizer.decode(std::vector<int32_t>{t})) << t;
    }
  }
}
