// Next-token sampling: greedy, temperature, top-k, top-p (nucleus), from a seeded generator so a
// run is reproducible for a given --seed.
//
// A model's vocab_size may exceed what its tokenizer can decode: DeepSeek-V3 pads its 128,815
// tokenizer ids to 129,280 rows, and a random or briefly trained model gives the padding real
// probability. SamplingParams::allowed_ids restricts every mode (greedy, temperature, top-k, top-p)
// to the ids it marks; top-k and top-p then count only those ids. Build the mask once per model and
// share it between requests:
//
//   SamplingParams params;
//   params.temperature = 0.7f;
//   params.top_p = 0.95f;
//   params.allowed_ids = tokenizer.decodable_ids();  // shared, built once when the tokenizer loads
//   Sampler sampler(params);
//   const int32_t next = sampler.sample(logits, model.config.vocab_size);  // always decodable
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

namespace dsv3 {

// allowed[id] != 0: id may be sampled. Ids at or past allowed.size() are never sampled.
using TokenMask = std::vector<uint8_t>;

struct SamplingParams {
  float temperature = 0.0f;  // 0 -> greedy (argmax)
  int64_t top_k = 0;         // 0 -> no limit
  float top_p = 1.0f;        // 1 -> no limit
  uint64_t seed = 0;
  std::shared_ptr<const TokenMask> allowed_ids;  // null -> every id in [0, vocab)
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // Picks a token id from logits[0, vocab), among the allowed ids. Does not modify logits. Throws when
  // the mask allows no id below vocab.
  int32_t sample(const float* logits, int64_t vocab);
  const SamplingParams& params() const { return params_; }

  // What speculative sampling needs (infer/speculative.h): the distribution sample() draws from, as
  // probabilities over [0, vocab) — zero for ids it never picks, one-hot at the argmax when greedy —
  // and random draws from this sampler's generator.
  void distribution(const float* logits, int64_t vocab, std::vector<double>& probs);
  // An id with probability weights[id] / Σ weights (weights >= 0 with a positive sum).
  int32_t draw(const std::vector<double>& weights);
  double uniform();  // in [0, 1)

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;  // reused across calls
  // Fills candidates_ with the ids sample() may pick (temperature > 0), each of the first ones with its
  // unnormalised weight (best first when top-k or top-p applies, in id order otherwise); returns how
  // many lead the list (top-k and top-p applied) and their weight sum.
  size_t weigh_candidates(const float* logits, int64_t vocab, double* kept_total);
  // The greedy choice: the best allowed id (throws when none is allowed).
  int32_t greedy_choice(const float* logits, int64_t vocab) const;
};

// log Σ exp(logits[i]) over [0, n), in double with the maximum subtracted first: a token's
// log-probability is logits[t] − log_sum_exp (perplexity, the server's logprobs).
double log_sum_exp(const float* logits, int64_t n);

int32_t argmax(const float* logits, int64_t n);
// The first id of the largest logit among those `allowed` marks (every id when allowed is null), or
// -1 when none of [0, n) is allowed.
int32_t argmax(const float* logits, int64_t n, const TokenMask* allowed);

}  // namespace dsv3
