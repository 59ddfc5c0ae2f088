#include "model/presets.h"

#include "core/error.h"

namespace dsv3 {

namespace {

ModelConfig deepseek_v3() {
  ModelConfig c;
  c.model_type = "deepseek_v3";
  c.vocab_size = 129280;
  c.hidden_size = 7168;
  c.intermediate_size = 18432;
  c.moe_intermediate_size = 2048;
  c.num_hidden_layers = 61;
  c.num_attention_heads = 128;
  c.num_key_value_heads = 128;
  c.q_lora_rank = 1536;
  c.kv_lora_rank = 512;
  c.qk_nope_head_dim = 128;
  c.qk_rope_head_dim = 64;
  c.v_head_dim = 128;
  c.n_routed_experts = 256;
  c.n_shared_experts = 1;
  c.num_experts_per_tok = 8;
  c.first_k_dense_replace = 3;
  c.moe_layer_freq = 1;
  c.n_group = 8;
  c.topk_group = 4;
  c.scoring_func = ScoringFunc::sigmoid;
  c.topk_method = TopkMethod::noaux_tc;
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 2.5;
  c.rope_theta = 10000.0;
  c.rope_scaling.yarn = true;
  c.rope_scaling.factor = 40.0;
  c.rope_scaling.beta_fast = 32.0;
  c.rope_scaling.beta_slow = 1.0;
  c.rope_scaling.mscale = 1.0;
  c.rope_scaling.mscale_all_dim = 1.0;
  c.rope_scaling.original_max_position_embeddings = 4096;
  c.max_position_embeddings = 163840;
  c.rms_norm_eps = 1e-6;
  c.num_nextn_predict_layers = 1;
  c.tie_word_embeddings = false;
  c.bos_token_id = 0;
  c.eos_token_id = 1;
  c.quantization_config.fp8 = true;  // block 128×128, dynamic activations
  return c;
}

ModelConfig deepseek_v2_lite() {
  ModelConfig c;
  c.model_type = "deepseek_v2";
  c.vocab_size = 102400;
  c.hidden_size = 2048;
  c.intermediate_size = 10944;
  c.moe_intermediate_size = 1408;
  c.num_hidden_layers = 27;
  c.num_attention_heads = 16;
  c.num_key_value_heads = 16;
  c.q_lora_rank.reset();
  c.kv_lora_rank = 512;
  c.qk_nope_head_dim = 128;
  c.qk_rope_head_dim = 64;
  c.v_head_dim = 128;
  c.n_routed_experts = 64;
  c.n_shared_experts = 2;
  c.num_experts_per_tok = 6;
  c.first_k_dense_replace = 1;
  c.moe_layer_freq = 1;
  c.n_group = 1;
  c.topk_group = 1;
  c.scoring_func = ScoringFunc::softmax;
  c.topk_method = TopkMethod::greedy;
  c.norm_topk_prob = false;
  c.routed_scaling_factor = 1.0;
  c.rope_theta = 10000.0;
  c.rope_scaling.yarn = true;
  c.rope_scaling.factor = 40.0;
  c.rope_scaling.beta_fast = 32.0;
  c.rope_scaling.beta_slow = 1.0;
  c.rope_scaling.mscale = 0.707;
  c.rope_scaling.mscale_all_dim = 0.707;
  c.rope_scaling.original_max_position_embeddings = 4096;
  c.max_position_embeddings = 163840;
  c.rms_norm_eps = 1e-6;
  c.num_nextn_predict_layers = 0;
  c.tie_word_embeddings = false;
  c.bos_token_id = 100000;
  c.eos_token_id = 100001;
  return c;
}

// V3-shaped, tiny dimensions, DeepSeek-V3's vocabulary (so its tokenizer applies).
ModelConfig v3_tiny() {
  ModelConfig c = deepseek_v3();
  c.hidden_size = 256;
  c.intermediate_size = 640;
  c.moe_intermediate_size = 128;
  c.num_hidden_layers = 4;
  c.first_k_dense_replace = 1;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.q_lora_rank = 128;
  c.kv_lora_rank = 64;
  c.qk_nope_head_dim = 32;
  c.qk_rope_head_dim = 16;
  c.v_head_dim = 32;
  c.n_routed_experts = 16;
  c.num_experts_per_tok = 4;
  c.n_group = 4;
  c.topk_group = 2;
  c.quantization_config = QuantizationConfig{};
  return c;
}

// V3-shaped benchmark model: ~1.5e9 bytes in BF16 for the main model (embedding and head are 0.53 GB
// of it with the real vocabulary); its MTP module adds ~0.64 GB (mostly the embedding/head copies).
ModelConfig v3_1_5g() {
  ModelConfig c = deepseek_v3();
  c.hidden_size = 1024;
  c.intermediate_size = 2816;
  c.moe_intermediate_size = 256;
  c.num_hidden_layers = 10;
  c.first_k_dense_replace = 1;
  c.num_attention_heads = 16;
  c.num_key_value_heads = 16;
  c.q_lora_rank = 384;
  c.kv_lora_rank = 256;
  c.qk_nope_head_dim = 64;
  c.qk_rope_head_dim = 32;
  c.v_head_dim = 64;
  c.n_routed_experts = 64;
  c.num_experts_per_tok = 6;
  c.n_group = 8;
  c.topk_group = 4;
  c.quantization_config = QuantizationConfig{};
  return c;
}

ModelConfig v2_lite_tiny() {
  ModelConfig c = deepseek_v2_lite();
  c.hidden_size = 256;
  c.intermediate_size = 640;
  c.moe_intermediate_size = 128;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.kv_lora_rank = 64;
  c.qk_nope_head_dim = 32;
  c.qk_rope_head_dim = 16;
  c.v_head_dim = 32;
  c.n_routed_experts = 16;
  c.num_experts_per_tok = 4;
  return c;
}

struct Preset {
  const char* name;
  ModelConfig (*make)();
};

const Preset kPresets[] = {
    {"deepseek-v3", deepseek_v3}, {"deepseek-v2-lite", deepseek_v2_lite}, {"v3-tiny", v3_tiny},
    {"v3-1.5g", v3_1_5g},         {"v2-lite-tiny", v2_lite_tiny},
};

}  // namespace

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const Preset& p : kPresets) names.emplace_back(p.name);
  return names;
}

ModelConfig preset_config(const std::string& name) {
  for (const Preset& p : kPresets)
    if (name == p.name) return p.make();
  std::string known;
  for (const Preset& p : kPresets) known += cat(known.empty() ? "" : ", ", p.name);
  DSV3_FAIL("[presets] unknown model preset '", name, "'; known presets: ", known);
}

}  // namespace dsv3
