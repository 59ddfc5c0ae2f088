// Multi-token prediction module k (SPEC.md §1; DeepSeek-V3 TR §2.2), stored as model.layers.{N+k}:
//   h' = eh_proj([enorm(Emb(t_{i+1+k})); hnorm(h_i)])  -> one full decoder block -> shared_head.norm
//   -> shared_head.head, predicting token i+2+k.
//
// Concatenation order: embedding first, as the serving engines that run DeepSeek's checkpoints do
// (vLLM vllm/model_executor/models/deepseek_mtp.py: torch.cat([inputs_embeds, previous_hidden_states]);
// SGLang python/sglang/srt/models/deepseek_nextn.py: torch.cat((self.enorm(...), self.hnorm(...)))).
//
// Which hidden state feeds hnorm: the main model's final hidden state AFTER its final RMSNorm
// (model.norm). Both engines pass the tensor their main model returns, and that tensor is normed:
//   vLLM vllm/model_executor/models/deepseek_v2.py, DeepseekV2Model.forward ends with
//     `hidden_states, _ = self.norm(hidden_states, residual); return hidden_states`, which the
//     speculative proposer hands to DeepSeekMTP as previous_hidden_states;
//   SGLang python/sglang/srt/models/deepseek_v2.py, DeepseekV2Model.forward ends with
//     `hidden_states, _ = self.norm(hidden_states, residual)`; the LogitsProcessor stores that tensor
//     (logits_processor.py: hidden_states_to_store = pruned_states / hidden_states) as
//     spec_info.hidden_states, which deepseek_nextn.py feeds to self.hnorm.
// So forward()'s `hidden` output is the post-norm state, and mtp_forward consumes it.
//
// Chaining modules (k > 0) is where the engines differ: vLLM passes the previous module's block output
// before shared_head.norm, SGLang after it. DeepSeek-V3 ships one module, so it does not arise; dsv3's
// mtp_forward returns (hidden_out) the block output before shared_head.norm, as vLLM does.
// vLLM also zeroes the embedding input at position 0 (inputs_embeds[positions == 0] = 0); SGLang does
// not, and neither does dsv3.
#pragma once

#include <cstdint>

#include "model/config.h"
#include "model/weights.h"
#include "ops/linear.h"

namespace dsv3 {

// out = eh_proj([enorm(emb); hnorm(hidden)]). emb, hidden: [n, H]; concat: scratch [n, 2H]; out: [n, H]
// (out may alias emb: both norms are taken before the projection writes).
void mtp_input(const ModelConfig& config, const MtpWeights& w, const float* emb, const float* hidden, int64_t n,
               Precision precision, float* concat, float* out);

}  // namespace dsv3
