// ModelConfig: the Hugging Face config.json of DeepSeek-V3 / V2 checkpoints (SPEC.md §1).
// Field names match config.json. Every structural choice is an explicit field; nothing is
// inferred from a dimension. parse_model_config validates every field once and names the
// field in its error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dsv3 {

enum class ScoringFunc { sigmoid, softmax };
enum class TopkMethod { noaux_tc, greedy, group_limited_greedy };

struct RopeScaling {  // rope_scaling {"type": "yarn", ...}; absent -> plain RoPE
  bool yarn = false;
  double factor = 1.0;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 1.0;
  double mscale_all_dim = 0.0;
  int64_t original_max_position_embeddings = 4096;
};

struct QuantizationConfig {  // quantization_config; absent -> unquantized
  bool fp8 = false;          // quant_method "fp8", fmt "e4m3"
  int64_t block_rows = 128;  // weight_block_size [128, 128]
  int64_t block_cols = 128;
  bool dynamic_activations = true;  // activation_scheme "dynamic"
  bool ue8m0_scales = false;        // scale_fmt "ue8m0" (DeepSeek-V3.1): power-of-two scales
};

struct ModelConfig {
  std::string model_type;  // "deepseek_v3" or "deepseek_v2"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;      // dense MLP layers
  int64_t moe_intermediate_size = 0;  // each routed and shared expert
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;     // informational; MLA shares the latent across heads
  std::optional<int64_t> q_lora_rank;  // null -> plain q_proj (V2-Lite)
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  int64_t n_routed_experts = 0;  // 0 -> every layer dense
  int64_t n_shared_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t first_k_dense_replace = 0;  // layers < this are dense
  int64_t moe_layer_freq = 1;         // layer l >= first_k_dense_replace is MoE when l % freq == 0
  int64_t n_group = 1;
  int64_t topk_group = 1;
  ScoringFunc scoring_func = ScoringFunc::softmax;
  TopkMethod topk_method = TopkMethod::greedy;
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  int64_t num_nextn_predict_layers = 0;  // MTP depth D; MTP layers follow the main layers
  bool tie_word_embeddings = false;
  // Token ids change no computation: parse_model_config accepts any integer and only warns (one line
  // on stderr) when one lies outside [0, vocab_size), as Hugging Face loads such configs; an id is
  // checked where it is used (config_token_id).
  std::optional<int64_t> bos_token_id;
  std::optional<int64_t> eos_token_id;
  std::optional<int64_t> pad_token_id;
  QuantizationConfig quantization_config;

  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  bool is_moe_layer(int64_t layer) const {
    return n_routed_experts > 0 && layer >= first_k_dense_replace && layer % moe_layer_freq == 0;
  }
};

// Parses and validates config.json text. `source` (a path) is named in errors.
ModelConfig parse_model_config(const std::string& json_text, const std::string& source);
ModelConfig load_model_config(const std::string& path);
// Writes config.json text in Hugging Face layout (what `dsv3 init` and checkpoints write).
std::string model_config_to_json(const ModelConfig& config);

// config.json's token id `field` ("bos_token_id", "eos_token_id" or "pad_token_id") at the point of
// use: nullopt when absent; an error naming the field, its value, vocab_size and the fix when it lies
// outside [0, vocab_size). `use` completes "so it cannot ..." in that error ("start the prompt").
std::optional<int32_t> config_token_id(const ModelConfig& config, std::string_view field, std::string_view use);

// Softmax scale of the attention scores (SPEC.md §1): qk_head_dim^-0.5, times mscale^2 under YaRN
// where mscale = 0.1 * mscale_all_dim * ln(factor) + 1 when factor > 1.
double attention_softmax_scale(const ModelConfig& config);

}  // namespace dsv3
