#include "infer/sampler.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace dsv3 {

int32_t argmax(const float* logits, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return int32_t(best);
}

int32_t argmax(const float* logits, int64_t n, const TokenMask* allowed) {
  if (!allowed) return n > 0 ? argmax(logits, n) : -1;
  n = std::min<int64_t>(n, int64_t(allowed->size()));
  int64_t best = -1;
  for (int64_t i = 0; i < n; ++i) {
    if ((*allowed)[size_t(i)] && (best < 0 || logits[i] > logits[best])) best = i;
  }
  return int32_t(best);
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {
  DSV3_CHECK(params.temperature >= 0 && std::isfinite(params.temperature),
             "[sampler] temperature must be >= 0, got ", params.temperature);
  DSV3_CHECK(params.top_k >= 0, "[sampler] top-k must be >= 0, got ", params.top_k);
  DSV3_CHECK(params.top_p > 0 && params.top_p <= 1, "[sampler] top-p must be in (0, 1], got ", params.top_p);
}

int32_t Sampler::greedy_choice(const float* logits, int64_t vocab) const {
  const int32_t best = argmax(logits, vocab, params_.allowed_ids.get());
  DSV3_CHECK(best >= 0, "[sampler] no token id below ", vocab, " is allowed (allowed_ids marks none of them): "
             "build the mask from the model's tokenizer");
  return best;
}

int32_t Sampler::sample(const float* logits, int64_t vocab) {
  if (params_.temperature == 0.0f) return greedy_choice(logits, vocab);

  double kept_total = 0;
  const size_t keep = weigh_candidates(logits, vocab, &kept_total);
  const double r = std::uniform_real_distribution<double>(0.0, kept_total)(rng_);
  double acc = 0;
  for (size_t i = 0; i < keep; ++i) {
    acc += candidates_[i].first;
    if (r < acc) return candidates_[i].second;
  }
  return candidates_[keep - 1].second;
}

size_t Sampler::weigh_candidates(const float* logits, int64_t vocab, double* kept_total) {
  const TokenMask* allowed = params_.allowed_ids.get();
  candidates_.clear();
  const int64_t n = allowed ? std::min<int64_t>(vocab, int64_t(allowed->size())) : vocab;
  for (int64_t i = 0; i < n; ++i) {
    if (!allowed || (*allowed)[size_t(i)]) candidates_.emplace_back(logits[i], int32_t(i));
  }
  DSV3_CHECK(!candidates_.empty(), "[sampler] no token id below ", vocab, " is allowed (allowed_ids marks none of "
             "them): build the mask from the model's tokenizer");
  const int64_t n_candidates = int64_t(candidates_.size());
  auto by_logit = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  auto weight = [&](float logit, float max_logit) {
    return float(std::exp(double(logit - max_logit) / params_.temperature));
  };
  // Top-k keeps the k best, sorted.
  if (params_.top_k > 0 && params_.top_k < n_candidates) {
    std::partial_sort(candidates_.begin(), candidates_.begin() + params_.top_k, candidates_.end(), by_logit);
    candidates_.resize(size_t(params_.top_k));
  }
  const int64_t m = int64_t(candidates_.size());
  float max_logit = candidates_[0].first;
  for (const auto& c : candidates_) max_logit = std::max(max_logit, c.first);
  // Softmax of logit / temperature over the survivors: its normaliser, in index order.
  double total = 0;
  for (const auto& c : candidates_) total += weight(c.first, max_logit);
  // Top-p: the smallest best-first prefix whose probability mass reaches top_p. Only that prefix needs
  // sorting: sort the best 256, then 8× more while their mass falls short (a whole 129k vocabulary sorted
  // took longer than a decode step).
  size_t keep = size_t(m);
  if (params_.top_p < 1.0f) {
    for (int64_t sorted = std::min<int64_t>(m, 256);; sorted = std::min<int64_t>(m, sorted * 8)) {
      std::partial_sort(candidates_.begin(), candidates_.begin() + sorted, candidates_.end(), by_logit);
      double mass = 0;
      int64_t i = 0;
      for (; i < sorted; ++i) {
        mass += weight(candidates_[size_t(i)].first, max_logit) / total;
        if (mass >= params_.top_p) break;
      }
      if (i < sorted) {
        keep = size_t(i + 1);
        break;
      }
      if (sorted == m) break;  // rounding left the whole list short of top_p: keep it all
    }
  }
  // The kept candidates' weights (best first where top-k or top-p sorted them; in id order otherwise,
  // which draws from the same distribution).
  *kept_total = 0;
  for (size_t i = 0; i < keep; ++i) {
    candidates_[i].first = weight(candidates_[i].first, max_logit);
    *kept_total += candidates_[i].first;
  }
  return keep;
}

void Sampler::distribution(const float* logits, int64_t vocab, std::vector<double>& probs) {
  probs.assign(size_t(vocab), 0.0);
  if (params_.temperature == 0.0f) {
    probs[size_t(greedy_choice(logits, vocab))] = 1.0;
    return;
  }
  double kept_total = 0;
  const size_t keep = weigh_candidates(logits, vocab, &kept_total);
  for (size_t i = 0; i < keep; ++i) probs[size_t(candidates_[i].second)] = candidates_[i].first / kept_total;
}

int32_t Sampler::draw(const std::vector<double>& weights) {
  double total = 0;
  for (double w : weights) total += w;
  DSV3_CHECK(total > 0, "[sampler] cannot draw from weights that sum to ", total);
  const double r = std::uniform_real_distribution<double>(0.0, total)(rng_);
  double acc = 0;
  int32_t last = -1;
  for (size_t i = 0; i < weights.size(); ++i) {
    if (weights[i] <= 0) continue;
    acc += weights[i];
    last = int32_t(i);
    if (r < acc) return last;
  }
  return last;
}

double Sampler::uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }

double log_sum_exp(const float* logits, int64_t n) {
  float max = logits[0];
  for (int64_t i = 1; i < n; ++i) max = std::max(max, logits[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(double(logits[i]) - double(max));
  return std::log(sum) + double(max);
}

}  // namespace dsv3
