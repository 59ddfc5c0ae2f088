#include "infer/speculative.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "core/error.h"

namespace dsv3 {

int32_t accept_or_resample(const std::vector<double>& p, const std::vector<double>& q, int32_t draft,
                           Sampler& sampler, bool* accepted) {
  DSV3_CHECK(p.size() == q.size() && draft >= 0 && size_t(draft) < p.size(), "[speculative] draft ", draft,
             " outside distributions of ", p.size(), " and ", q.size(), " ids");
  const double pd = p[size_t(draft)], qd = q[size_t(draft)];
  // q(d) > 0 for a draft drawn from q; u < p/q accepts with probability min(1, p/q).
  *accepted = qd > 0 && (pd >= qd || sampler.uniform() * qd < pd);
  if (*accepted) return draft;
  thread_local std::vector<double> residual;
  residual.resize(p.size());
  double total = 0;
  for (size_t i = 0; i < p.size(); ++i) total += residual[i] = std::max(0.0, p[i] - q[i]);
  if (total <= 0) return sampler.draw(p);  // p == q up to rounding: the rejection had probability ~0
  return sampler.draw(residual);
}

namespace {
double elapsed(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace

GenerationStats generate_with_mtp(const Model& model, KVCache& cache, const GenerationRequest& request,
                                  Sampler& sampler, const ForwardOptions& options,
                                  const std::function<bool(int32_t)>& on_token) {
  const int64_t V = model.config.vocab_size, H = model.config.hidden_size;
  DSV3_CHECK(!model.weights.mtp.empty(), "[generate] --mtp needs a checkpoint with an MTP module "
             "(num_nextn_predict_layers >= 1); this one has none");
  DSV3_CHECK(cache.mtp_size(0) == cache.size(), "[generate] the KV cache holds ", cache.size(), " positions but MTP "
             "rows for only ", cache.mtp_size(0), ": speculation needs a cache extended with mtp on from the start");
  const int64_t n = int64_t(request.prompt.size());
  DSV3_CHECK(cache.size() + n + request.max_new_tokens <= cache.capacity(), "[generate] ", cache.size(),
             " cached + ", n, " prompt + ", request.max_new_tokens, " new tokens (the last one a draft) exceed the KV cache "
             "capacity of ", cache.capacity());
  DSV3_CHECK(request.max_new_tokens >= 1, "[generate] speculation needs at least one new token");
  const bool greedy = sampler.params().temperature == 0.0f;
  GenerationStats stats;
  stats.prompt_tokens = n;

  ForwardOptions last_only = options, every = options, draft_options = options;
  last_only.all_logits = false;
  every.all_logits = true;
  draft_options.all_logits = false;
  DSV3_CHECK(request.draft_vocab >= 0, "[generate] the draft vocabulary must not be negative");
  const int64_t draft_vocab = request.draft_vocab > 0 ? std::min(request.draft_vocab, V) : V;
  draft_options.head_rows = draft_vocab;
  Tensor logits, hidden, draft_logits;
  // Positions whose hidden state and next token are known but which the MTP module has not run yet.
  std::vector<float> pending_hidden;
  std::vector<int32_t> pending_next;
  auto push_pending = [&](const float* h, int64_t rows, const int32_t* next) {
    pending_hidden.insert(pending_hidden.end(), h, h + rows * H);
    pending_next.insert(pending_next.end(), next, next + rows);
  };
  auto run_mtp = [&](Tensor* out_logits) {
    if (pending_next.empty()) return;
    mtp_forward(model, 0, cache, pending_hidden.data(), pending_next.data(), int64_t(pending_next.size()),
                draft_options, out_logits);
    pending_hidden.clear();
    pending_next.clear();
  };

  prepare_forward(model, cache, n, last_only);
  auto start = std::chrono::steady_clock::now();
  forward(model, cache, request.prompt.data(), n, last_only, &logits, &hidden);
  stats.prefill_seconds = elapsed(start);
  start = std::chrono::steady_clock::now();

  // Emits a token; false when generation ends with it.
  auto emit = [&](int32_t token) {
    ++stats.generated_tokens;
    const bool is_eos = request.eos_id && token == *request.eos_id;
    const bool go_on = on_token(token) && !is_eos;
    stats.stopped_at_eos = is_eos;
    return go_on && stats.generated_tokens < request.max_new_tokens;
  };
  int32_t last = sampler.sample(logits.as<float>(), V);  // emitted, not yet in the cache
  push_pending(hidden.as<float>(), n - 1, request.prompt.data() + 1);
  push_pending(hidden.as<float>() + (n - 1) * H, 1, &last);
  bool running = emit(last);
  std::vector<double> p, q;
  while (running) {
    const int64_t pos = cache.size();  // of `last`
    run_mtp(&draft_logits);            // drafts the token after `last`
    int32_t draft = 0;
    if (greedy) {
      draft = sampler.sample(draft_logits.as<float>(), draft_vocab);
    } else {
      sampler.distribution(draft_logits.as<float>(), draft_vocab, q);
      draft = sampler.draw(q);
      q.resize(size_t(V), 0.0);  // ids past the draft vocabulary are never drafted
    }
    const int32_t verify[2] = {last, draft};
    forward(model, cache, verify, 2, every, &logits, &hidden);
    ++stats.drafted_tokens;
    bool accepted = false;
    int32_t next = 0;
    if (greedy) {
      next = sampler.sample(logits.as<float>(), V);
      accepted = next == draft;
    } else {
      sampler.distribution(logits.as<float>(), V, p);
      next = accept_or_resample(p, q, draft, sampler, &accepted);
    }
    if (!accepted) cache.truncate(pos + 1);  // forget the draft's row
    push_pending(hidden.as<float>(), 1, &next);
    running = emit(next);
    if (!accepted || !running) {
      if (accepted) cache.truncate(pos + 1);  // the stop token stays out of the cache, as in generate
      last = next;
      continue;
    }
    ++stats.accepted_tokens;
    last = sampler.sample(logits.as<float>() + V, V);  // the bonus token
    push_pending(hidden.as<float>() + H, 1, &last);
    running = emit(last);
  }
  // Every cached position gets its MTP row (the last one's next token is `last`), so the next call — a
  // chat turn, whose new tokens start at `last`'s position — can speculate again.
  run_mtp(nullptr);
  stats.decode_seconds = elapsed(start);
  return stats;
}

}  // namespace dsv3
