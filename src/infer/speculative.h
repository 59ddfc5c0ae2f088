// Speculative decoding with DeepSeek-V3's multi-token prediction module (SPEC.md §1 MTP; the V3
// report §5.4.3 uses it this way: 85–90% of second tokens accepted, 1.8× tokens per second).
//
// Each step, the MTP module drafts the token after next from the main model's last hidden state; the
// main model then runs the pending token and the draft as one forward of two positions (the weights are
// read once for both), which yields the distribution at each. The draft is kept or replaced by
// speculative sampling — kept with probability min(1, p(d) / q(d)), else a token drawn from
// max(0, p − q) renormalised (Leviathan et al. 2023, Chen et al. 2023) — so every emitted token is
// distributed exactly as the model's own; greedy decoding keeps the draft iff it is the argmax. A kept
// draft brings a bonus token from the second position; a rejected one is rolled back (its KV row
// forgotten). The MTP module keeps its own KV rows: it runs over each position once that position's
// hidden state and next token are final, so it never needs a rollback.
//
// The draft may be restricted to the first ids of the vocabulary (GenerationRequest::draft_vocab): the
// MTP head then reads only their rows. In a BPE vocabulary those are the earliest merges — the most
// frequent tokens — so few drafts are lost, while the head, the largest single weight of a decode step
// (a third to half of v3-1.5g's bytes per token), shrinks in proportion. Verification is unchanged, so
// output stays exact.
//
// Greedy output equals plain decoding token for token: a 2-position forward computes each position
// exactly as a 1-position one (the decode kernels keep one accumulator per output; tested).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "infer/generator.h"
#include "infer/sampler.h"

namespace dsv3 {

// The accept/resample rule for one draft token `draft` drawn from q, against the model's p (both
// probabilities over the vocabulary, as Sampler::distribution gives them). Returns the token to emit;
// *accepted says whether it is the draft. The emitted token is distributed as p whatever q is.
int32_t accept_or_resample(const std::vector<double>& p, const std::vector<double>& q, int32_t draft,
                           Sampler& sampler, bool* accepted);

// generate() with request.mtp: the same contract (generator.h), with drafted_tokens and accepted_tokens
// counted in the stats. Needs request.max_new_tokens >= 1 and room in the cache for one draft beyond
// the budget.
GenerationStats generate_with_mtp(const Model& model, KVCache& cache, const GenerationRequest& request,
                                  Sampler& sampler, const ForwardOptions& options,
                                  const std::function<bool(int32_t)>& on_token);

}  // namespace dsv3
