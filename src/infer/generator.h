// The generation loop: chunked prefill of the prompt, then one token at a time from the latent KV
// cache, sampling each next token, stopping at EOS or the token budget.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "infer/sampler.h"
#include "model/model.h"

namespace dsv3 {

struct GenerationStats {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;  // time for the tokens after the first
  bool stopped_at_eos = false;
  int64_t drafted_tokens = 0;   // MTP speculation: drafts verified
  int64_t accepted_tokens = 0;  // and of those, kept

  double acceptance_rate() const { return drafted_tokens > 0 ? double(accepted_tokens) / drafted_tokens : 0; }

  double prefill_tokens_per_second() const { return prefill_seconds > 0 ? prompt_tokens / prefill_seconds : 0; }
  double decode_tokens_per_second() const {
    return decode_seconds > 0 && generated_tokens > 1 ? (generated_tokens - 1) / decode_seconds : 0;
  }
};

struct GenerationRequest {
  std::vector<int32_t> prompt;  // tokens to append to what the cache already holds
  int64_t max_new_tokens = 128;
  std::optional<int32_t> eos_id;  // stop after emitting it; nullopt never stops early
  // Speculative decoding with the checkpoint's first MTP module (infer/speculative.h). The cache must
  // hold MTP rows for every position it holds (true of a fresh cache, and of one only ever extended
  // with mtp on); it ends that way too.
  bool mtp = false;
  int64_t draft_vocab = 0;  // the draft considers ids [0, draft_vocab) only (0: all); see speculative.h
};

// Appends request.prompt to the cache, then generates. on_token is called for every sampled token
// (EOS included) and may return false to stop. The cache ends holding the prompt and every generated
// token except the last (which was never fed back), so a chat can continue from it.
GenerationStats generate(const Model& model, KVCache& cache, const GenerationRequest& request,
                         Sampler& sampler, const ForwardOptions& options,
                         const std::function<bool(int32_t)>& on_token);

}  // namespace dsv3
