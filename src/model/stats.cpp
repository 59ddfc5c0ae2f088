#include "model/stats.h"

#include <string>

#include "io/hf_names.h"

namespace dsv3 {

namespace {

// Layer index of "model.layers.L.…", or -1.
int64_t layer_of(const std::string& name) {
  static const std::string prefix = "model.layers.";
  if (name.compare(0, prefix.size(), prefix) != 0) return -1;
  return std::stoll(name.substr(prefix.size()));
}

bool is_routed_expert(const std::string& name) { return name.find(".mlp.experts.") != std::string::npos; }

}  // namespace

ModelStats model_stats(const ModelConfig& c) {
  ModelStats s;
  const double active_fraction =
      c.n_routed_experts > 0 ? double(c.num_experts_per_tok) / double(c.n_routed_experts) : 0.0;
  int64_t main_routed = 0, mtp_routed = 0, mtp_embedding = 0;
  for (const HfTensorSpec& spec : hf_tensor_specs(c)) {
    const int64_t n = shape_numel(spec.shape);
    const bool mtp = layer_of(spec.name) >= c.num_hidden_layers;
    const bool routed = is_routed_expert(spec.name);
    if (mtp) {
      s.mtp_params += n;
      if (spec.role == TensorRole::embedding) mtp_embedding += n;
      if (routed) mtp_routed += n;
    } else {
      s.total_params += n;
      if (spec.role == TensorRole::embedding) s.embedding_params += n;
      if (routed) main_routed += n;
    }
  }
  s.routed_expert_params = main_routed;
  s.active_params = s.total_params - s.embedding_params - main_routed + int64_t(double(main_routed) * active_fraction + 0.5);
  s.mtp_active_params = s.mtp_params - mtp_embedding - mtp_routed + int64_t(double(mtp_routed) * active_fraction + 0.5);
  s.kv_values_per_token = (c.kv_lora_rank + c.qk_rope_head_dim) * c.num_hidden_layers;
  return s;
}

size_t weight_bytes(const ModelConfig& c, DType dtype, bool fp8, bool include_mtp) {
  const int64_t block = c.quantization_config.block_rows > 0 ? c.quantization_config.block_rows : 128;
  size_t bytes = 0;
  for (const HfTensorSpec& spec : hf_tensor_specs(c)) {
    if (!include_mtp && layer_of(spec.name) >= c.num_hidden_layers) continue;
    const int64_t n = shape_numel(spec.shape);
    if (spec.role == TensorRole::router_bias) {
      bytes += size_t(n) * sizeof(float);
    } else if (fp8 && spec.role == TensorRole::linear) {
      const int64_t scales = (spec.shape[0] + block - 1) / block * ((spec.shape[1] + block - 1) / block);
      bytes += size_t(n) + size_t(scales) * sizeof(float);
    } else {
      bytes += size_t(n) * dtype_size(dtype);
    }
  }
  return bytes;
}

}  // namespace dsv3
