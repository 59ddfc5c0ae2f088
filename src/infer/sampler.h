// Next-token sampling: greedy, temperature, top-k, top-p (nucleus), from a seeded generator so a
// run is reproducible for a given --seed.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace dsv3 {

struct SamplingParams {
  float temperature = 0.0f;  // 0 -> greedy (argmax)
  int64_t top_k = 0;         // 0 -> no limit
  float top_p = 1.0f;        // 1 -> no limit
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // Picks a token id from logits[0, vocab). Does not modify logits.
  int32_t sample(const float* logits, int64_t vocab);
  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;  // reused across calls
};

int32_t argmax(const float* logits, int64_t n);

}  // namespace dsv3
