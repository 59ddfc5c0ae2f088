// The Hugging Face tensor names and shapes of a DeepSeek-V3/V2 checkpoint (SPEC.md §1), derived
// from the config alone. `dsv3 init` writes exactly these tensors and the model binds exactly these,
// so the two cannot drift apart.
#pragma once

#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"

namespace dsv3 {

enum class TensorRole {
  embedding,    // model.embed_tokens.weight and the MTP layers' copies
  head,         // lm_head.weight and the MTP layers' shared_head.head.weight
  linear,       // every projection DeepSeek's FP8 checkpoints quantize (attention, MLP, experts, eh_proj)
  norm,         // RMSNorm weights
  router_gate,  // mlp.gate.weight [n_routed_experts, hidden] (stays BF16 in FP8 checkpoints)
  router_bias,  // mlp.gate.e_score_correction_bias [n_routed_experts] (F32; V3 noaux_tc only)
};

struct HfTensorSpec {
  std::string name;
  Shape shape;
  TensorRole role;
};

// Every tensor of the checkpoint (FP8 `weight_scale_inv` companions not listed), main layers
// first, then the num_nextn_predict_layers MTP layers `model.layers.{num_hidden_layers + k}`.
std::vector<HfTensorSpec> hf_tensor_specs(const ModelConfig& config);

// "model.layers.3.mlp.experts.7.up_proj.weight" -> "model.layers.3.mlp.experts.7.up_proj.weight_scale_inv"
std::string scale_inv_name(const std::string& weight_name);

}  // namespace dsv3
