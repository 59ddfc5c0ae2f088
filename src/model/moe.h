// DeepSeekMoE (SPEC.md §1; DeepSeek's inference/model.py classes Gate and MoE).
//
// Router, per token, from f32 logits W_g·x (Hugging Face computes the gate in f32; so do we, whatever
// the forward precision):
//   V3 (scoring_func sigmoid, topk_method noaux_tc): s = sigmoid(logits); selection uses s + bias
//     (e_score_correction_bias); group score = sum of the top-2 biased scores of each of n_group groups;
//     keep topk_group groups; top-k experts among them by biased score.
//   V2 (softmax): s = softmax(logits); greedy top-k over all experts, or group_limited_greedy with
//     group score = max score in the group.
//   weights = unbiased s of the chosen experts, divided by their sum when norm_topk_prob (and k > 1),
//     then × routed_scaling_factor. (HF's V2 code skips the scaling factor when it normalises; every
//     released V2 config has norm_topk_prob false, where all references agree.)
// Ties (equal scores) go to the lower expert / group index, so routing is deterministic.
//
// MoE output = Σ_j weight_j · expert_j(x) + shared_experts(x).
#pragma once

#include <cstdint>

#include "model/config.h"
#include "model/kv_cache.h"
#include "model/weights.h"
#include "ops/linear.h"

namespace dsv3 {

// logits: [n, E]; correction_bias: [E] or null (only used by noaux_tc).
// indices, weights: [n, num_experts_per_tok], each token's experts by descending selection score.
void route_tokens(const ModelConfig& config, const float* logits, const float* correction_bias, int64_t n,
                  int32_t* indices, float* weights);

// x: [n, H] -> out: [n, H]. Tokens are grouped by expert (experts ascending, tokens ascending within
// an expert) so each expert runs one linear over all its tokens; results are scatter-added per token in
// slot order. Uses the scratch buffers of `scratch` (reserved for at least n tokens).
void moe_forward(const ModelConfig& config, const MoeWeights& w, const float* x, int64_t n, Precision precision,
                 Scratch& scratch, float* out);

}  // namespace dsv3
