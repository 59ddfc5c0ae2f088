#include "train/train_presets.h"

#include "core/error.h"

namespace dsv3 {
namespace {

// What the two presets share: DeepSeek-V3's routing and structure, plain RoPE.
ModelConfig v3_training_base() {
  ModelConfig c;
  c.model_type = "deepseek_v3";
  c.first_k_dense_replace = 1;
  c.moe_layer_freq = 1;
  c.n_shared_experts = 1;
  c.scoring_func = ScoringFunc::sigmoid;
  c.topk_method = TopkMethod::noaux_tc;
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 2.5;
  c.rope_theta = 10000.0;
  c.rope_scaling = RopeScaling{};  // plain RoPE
  c.max_position_embeddings = 4096;
  c.rms_norm_eps = 1e-6;
  c.num_nextn_predict_layers = 1;
  c.tie_word_embeddings = false;
  c.bos_token_id = 0;
  c.eos_token_id = 1;
  return c;
}

TrainPreset tiny() {
  TrainPreset p;
  p.name = "tiny";
  ModelConfig& c = p.config = v3_training_base();
  c.vocab_size = 4096;
  c.hidden_size = 256;
  c.num_hidden_layers = 4;
  c.intermediate_size = 768;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.q_lora_rank = 128;
  c.kv_lora_rank = 64;
  c.qk_nope_head_dim = 32;
  c.qk_rope_head_dim = 16;
  c.v_head_dim = 32;
  c.n_routed_experts = 16;
  c.moe_intermediate_size = 128;
  c.num_experts_per_tok = 4;
  c.n_group = 4;
  c.topk_group = 2;
  p.seq_len = 256;
  p.batch_size = 8;
  p.learning_rate = 2e-3;
  return p;
}

TrainPreset small() {
  TrainPreset p;
  p.name = "small";
  ModelConfig& c = p.config = v3_training_base();
  c.vocab_size = 16384;
  c.hidden_size = 512;
  c.num_hidden_layers = 8;
  c.intermediate_size = 1536;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 8;
  c.q_lora_rank = 256;
  c.kv_lora_rank = 128;
  c.qk_nope_head_dim = 64;
  c.qk_rope_head_dim = 32;
  c.v_head_dim = 64;
  c.n_routed_experts = 32;
  c.moe_intermediate_size = 256;
  c.num_experts_per_tok = 6;
  c.n_group = 8;
  c.topk_group = 4;
  p.seq_len = 512;
  p.batch_size = 8;
  p.learning_rate = 1e-3;
  return p;
}

struct Entry {
  const char* name;
  TrainPreset (*make)();
};
const Entry kPresets[] = {{"tiny", tiny}, {"small", small}};

}  // namespace

std::vector<std::string> train_preset_names() {
  std::vector<std::string> names;
  for (const Entry& e : kPresets) names.emplace_back(e.name);
  return names;
}

TrainPreset train_preset(const std::string& name) {
  for (const Entry& e : kPresets)
    if (name == e.name) return e.make();
  std::string known;
  for (const Entry& e : kPresets) known += cat(known.empty() ? "" : ", ", e.name);
  DSV3_FAIL("[train] unknown training preset '", name, "'; known presets: ", known);
}

}  // namespace dsv3
