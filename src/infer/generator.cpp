#include "infer/generator.h"

#include <chrono>

#include "core/error.h"
#include "infer/speculative.h"

namespace dsv3 {

namespace {
double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace

GenerationStats generate(const Model& model, KVCache& cache, const GenerationRequest& request,
                         Sampler& sampler, const ForwardOptions& options,
                         const std::function<bool(int32_t)>& on_token) {
  DSV3_CHECK(!request.prompt.empty(), "[generate] the prompt is empty: give at least one token");
  const int64_t vocab = model.config.vocab_size;
  for (int32_t t : request.prompt)
    DSV3_CHECK(t >= 0 && t < vocab, "[generate] prompt token ", t, " is outside the vocabulary [0, ", vocab, ")");
  if (request.mtp) return generate_with_mtp(model, cache, request, sampler, options, on_token);
  GenerationStats stats;
  stats.prompt_tokens = int64_t(request.prompt.size());

  ForwardOptions last_only = options;
  last_only.all_logits = false;
  Tensor logits;
  prepare_forward(model, cache, stats.prompt_tokens, last_only);
  auto start = std::chrono::steady_clock::now();
  forward(model, cache, request.prompt.data(), stats.prompt_tokens, last_only, &logits);
  stats.prefill_seconds = seconds_since(start);

  start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < request.max_new_tokens; ++i) {
    const int32_t token = sampler.sample(logits.as<float>(), vocab);
    ++stats.generated_tokens;
    if (i == 0) start = std::chrono::steady_clock::now();  // decode time excludes the prefill's token
    const bool is_eos = request.eos_id && token == *request.eos_id;
    if (!on_token(token) || is_eos) {
      stats.stopped_at_eos = is_eos;
      break;
    }
    if (i + 1 == request.max_new_tokens) break;
    forward(model, cache, &token, 1, last_only, &logits);
  }
  stats.decode_seconds = seconds_since(start);
  return stats;
}

}  // namespace dsv3
