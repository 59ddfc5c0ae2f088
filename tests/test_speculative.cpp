// MTP speculative decoding (infer/speculative.h): the accept/resample rule keeps the model's
// distribution exactly, greedy speculation reproduces plain decoding token for token, and sampled
// speculation on a small vocabulary reproduces the model's joint distribution of the next tokens.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "infer/generator.h"
#include "infer/speculative.h"
#include "model/model.h"
#include "test_support.h"

namespace dsv3 {
namespace {

// Pearson's statistic of observed counts against expected probabilities (cells with p > 0).
double chi_square(const std::vector<double>& counts, const std::vector<double>& p, double draws) {
  double x2 = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] <= 0) {
      EXPECT_EQ(counts[i], 0) << "id " << i << " has probability 0 but was emitted";
      continue;
    }
    const double e = p[i] * draws;
    x2 += (counts[i] - e) * (counts[i] - e) / e;
  }
  return x2;
}


TEST(Speculative, AcceptOrResampleEmitsTheTargetDistribution) {
  SamplingParams params;
  params.temperature = 1.0f;
  params.seed = 11;
  Sampler sampler(params);
  const std::vector<std::pair<std::vector<double>, std::vector<double>>> cases = {
      {{0.5, 0.2, 0.2, 0.1, 0.0}, {0.1, 0.1, 0.3, 0.2, 0.3}},  // q puts mass where p has none
      {{0.0, 0.6, 0.4, 0.0, 0.0}, {0.25, 0.25, 0.25, 0.25, 0.0}},
      {{0.3, 0.3, 0.4, 0.0, 0.0}, {0.3, 0.3, 0.4, 0.0, 0.0}},  // q == p: always accepted
  };
  for (const auto& [p, q] : cases) {
    const int draws = 200000;
    std::vector<double> counts(p.size(), 0.0);
    int accepted_count = 0;
    for (int i = 0; i < draws; ++i) {
      const int32_t draft = sampler.draw(q);
      bool accepted = false;
      const int32_t token = accept_or_resample(p, q, draft, sampler, &accepted);
      counts[size_t(token)] += 1;
      accepted_count += accepted;
      if (accepted) {
        ASSERT_EQ(token, draft);
      }
    }
    EXPECT_LT(chi_square(counts, p, draws), testing::chi_square_bound(p.size()));
    // The acceptance probability is Σ min(p, q).
    double overlap = 0;
    for (size_t i = 0; i < p.size(); ++i) overlap += std::min(p[i], q[i]);
    EXPECT_NEAR(double(accepted_count) / draws, overlap, 5 * std::sqrt(overlap * (1 - overlap) / draws) + 1e-9);
  }
}

std::vector<int32_t> run(const Model& m, KVCache& cache, const std::vector<int32_t>& prompt, int64_t n, bool mtp,
                         const SamplingParams& sampling, GenerationStats* stats = nullptr, int64_t draft_vocab = 0) {
  Sampler sampler(sampling);
  ForwardOptions o;  // the generation defaults (bf16 activations)
  std::vector<int32_t> out;
  GenerationRequest request{prompt, n, std::nullopt, mtp, draft_vocab};
  const GenerationStats s = generate(m, cache, request, sampler, o, [&](int32_t t) {
    out.push_back(t);
    return true;
  });
  if (stats) *stats = s;
  return out;
}

// Greedy speculation equals plain greedy decoding, on models with a small vocabulary (drafts often
// accepted) and a larger one (mostly rejected), BF16 and FP8 weights, several prompts; and a second
// call on the same cache (a chat turn) continues identically.
TEST(Speculative, GreedyOutputIsIdenticalWithAndWithoutSpeculation) {
  int64_t accepted = 0, rejected = 0;
  for (const int64_t vocab : {6, 300}) {
    for (const bool fp8 : {false, true}) {
      ModelConfig config = testing::tiny_v3_config();
      config.vocab_size = vocab;
      testing::TempDir dir("speculative");
      testing::write_tiny_checkpoint(config, dir.path(), 40 + uint64_t(vocab) + fp8, DType::BF16, fp8);
      auto m = load_model(dir.path());
      for (int prompt_seed = 0; prompt_seed < 3; ++prompt_seed) {
        SCOPED_TRACE(::testing::Message() << "vocab " << vocab << (fp8 ? " fp8" : " bf16") << " prompt " << prompt_seed);
        std::vector<int32_t> prompt, more;
        for (int i = 0; i < 3 + 4 * prompt_seed; ++i) prompt.push_back(int32_t((i * 7 + prompt_seed * 3 + 2) % vocab));
        for (int i = 0; i < 5; ++i) more.push_back(int32_t((i * 5 + prompt_seed) % vocab));
        KVCache plain_cache(config, 128), mtp_cache(config, 128);
        GenerationStats stats;
        const SamplingParams greedy;
        const std::vector<int32_t> plain = run(*m, plain_cache, prompt, 24, false, greedy);
        const std::vector<int32_t> spec = run(*m, mtp_cache, prompt, 24, true, greedy, &stats);
        ASSERT_EQ(plain, spec);
        KVCache narrow_cache(config, 128);  // drafts among the first third of the ids only
        ASSERT_EQ(plain, run(*m, narrow_cache, prompt, 24, true, greedy, nullptr, std::max<int64_t>(vocab / 3, 1)));
        EXPECT_EQ(mtp_cache.size(), plain_cache.size());
        EXPECT_EQ(mtp_cache.mtp_size(0), mtp_cache.size());
        accepted += stats.accepted_tokens;
        rejected += stats.drafted_tokens - stats.accepted_tokens;
        // A second turn: the last reply token and new tokens appended to the same caches.
        more.insert(more.begin(), plain.back());
        ASSERT_EQ(run(*m, plain_cache, more, 9, false, greedy), run(*m, mtp_cache, more, 9, true, greedy));
      }
    }
  }
  EXPECT_GT(accepted, 5);  // both branches were taken
  EXPECT_GT(rejected, 5);
}

// On a vocabulary of 5, the first three sampled tokens with speculation (each from the prefill, a
// verification or a bonus) follow the model's joint distribution p(t1) p(t2 | t1) p(t3 | t1 t2),
// computed from the model's logits directly.
class SampledSpeculation : public ::testing::TestWithParam<int64_t> {};

TEST_P(SampledSpeculation, KeepsTheModelsDistribution) {
  const int64_t draft_vocab = GetParam();
  ModelConfig config = testing::tiny_v3_config();
  config.vocab_size = 5;
  testing::TempDir dir("speculative_sampled");
  testing::write_tiny_checkpoint(config, dir.path(), 77, DType::BF16, false, 0.15);
  auto m = load_model(dir.path());
  const std::vector<int32_t> prompt = {2, 3, 4, 2};
  SamplingParams sampling;
  sampling.temperature = 1.0f;
  const int64_t V = config.vocab_size;

  const std::vector<double> joint = testing::joint_distribution_of_three(*m, prompt, sampling);
  // Cells the test can resolve: merge the rare ones into one (expected count >= 5).
  const int draws = 6000;
  std::vector<double> counts(joint.size(), 0.0);
  int64_t drafted = 0, accepted = 0;
  for (int i = 0; i < draws; ++i) {
    sampling.seed = uint64_t(1000 + i);
    KVCache cache(config, 16);
    GenerationStats stats;
    const std::vector<int32_t> t = run(*m, cache, prompt, 3, true, sampling, &stats, draft_vocab);
    ASSERT_EQ(t.size(), 3u);
    counts[size_t((t[0] * V + t[1]) * V + t[2])] += 1;
    drafted += stats.drafted_tokens;
    accepted += stats.accepted_tokens;
  }
  size_t cells = 0;
  const double x2 = testing::merged_chi_square(counts, joint, draws, &cells);
  EXPECT_LT(x2, testing::chi_square_bound(cells));
  std::printf("[ speculative ] %lld of %lld drafts accepted\n", (long long)accepted, (long long)drafted);
  EXPECT_GT(accepted, drafted / 10);  // the bonus path ran
  EXPECT_LT(accepted, drafted);       // and so did the resampling
}

// The whole vocabulary as the draft's, and only its first 3 of 5 ids (a draft that can never propose
// ids 3 and 4: they come from resampling alone).
INSTANTIATE_TEST_SUITE_P(Speculative, SampledSpeculation, ::testing::Values(0, 3));

TEST(Speculative, ModelWithoutMtpModuleIsRefused) {
  testing::TempDir dir("speculative_v2");
  testing::write_tiny_checkpoint(testing::tiny_v2_config(), dir.path(), 3, DType::BF16, false);
  auto m = load_model(dir.path());
  KVCache cache(m->config, 32);
  EXPECT_THROW(run(*m, cache, {5, 6, 7}, 4, true, SamplingParams{}), Error);
}

}  // namespace
}  // namespace dsv3
