// config.json parsing, validation and writing (src/model/config.h).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "model/config.h"

using namespace dsv3;
using json = nlohmann::json;

namespace {

// deepseek-ai/DeepSeek-V3 config.json as released (SPEC.md §1).
const char* kV3Config = R"({
  "architectures": ["DeepseekV3ForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "auto_map": {
    "AutoConfig": "configuration_deepseek.DeepseekV3Config",
    "AutoModel": "modeling_deepseek.DeepseekV3Model",
    "AutoModelForCausalLM": "modeling_deepseek.DeepseekV3ForCausalLM"
  },
  "aux_loss_alpha": 0.001,
  "bos_token_id": 0,
  "eos_token_id": 1,
  "ep_size": 1,
  "first_k_dense_replace": 3,
  "hidden_act": "silu",
  "hidden_size": 7168,
  "initializer_range": 0.02,
  "intermediate_size": 18432,
  "kv_lora_rank": 512,
  "max_position_embeddings": 163840,
  "model_type": "deepseek_v3",
  "moe_intermediate_size": 2048,
  "moe_layer_freq": 1,
  "n_group": 8,
  "n_routed_experts": 256,
  "n_shared_experts": 1,
  "norm_topk_prob": true,
  "num_attention_heads": 128,
  "num_experts_per_tok": 8,
  "num_hidden_layers": 61,
  "num_key_value_heads": 128,
  "num_nextn_predict_layers": 1,
  "pretraining_tp": 1,
  "q_lora_rank": 1536,
  "qk_nope_head_dim": 128,
  "qk_rope_head_dim": 64,
  "quantization_config": {
    "activation_scheme": "dynamic",
    "fmt": "e4m3",
    "quant_method": "fp8",
    "weight_block_size": [128, 128]
  },
  "rms_norm_eps": 1e-06,
  "rope_scaling": {
    "beta_fast": 32,
    "beta_slow": 1,
    "factor": 40,
    "mscale": 1.0,
    "mscale_all_dim": 1.0,
    "original_max_position_embeddings": 4096,
    "type": "yarn"
  },
  "rope_theta": 10000,
  "routed_scaling_factor": 2.5,
  "scoring_func": "sigmoid",
  "seq_aux": true,
  "tie_word_embeddings": false,
  "topk_group": 4,
  "topk_method": "noaux_tc",
  "torch_dtype": "bfloat16",
  "transformers_version": "4.33.1",
  "use_cache": true,
  "v_head_dim": 128,
  "vocab_size": 129280
})";

// deepseek-ai/DeepSeek-V2-Lite config.json as released.
const char* kV2LiteConfig = R"({
  "architectures": ["DeepseekV2ForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "aux_loss_alpha": 0.001,
  "bos_token_id": 100000,
  "eos_token_id": 100001,
  "first_k_dense_replace": 1,
  "hidden_act": "silu",
  "hidden_size": 2048,
  "initializer_range": 0.02,
  "intermediate_size": 10944,
  "kv_lora_rank": 512,
  "max_position_embeddings": 163840,
  "model_type": "deepseek_v2",
  "moe_intermediate_size": 1408,
  "moe_layer_freq": 1,
  "n_group": 1,
  "n_routed_experts": 64,
  "n_shared_experts": 2,
  "norm_topk_prob": false,
  "num_attention_heads": 16,
  "num_experts_per_tok": 6,
  "num_hidden_layers": 27,
  "num_key_value_heads": 16,
  "pretraining_tp": 1,
  "q_lora_rank": null,
  "qk_nope_head_dim": 128,
  "qk_rope_head_dim": 64,
  "rms_norm_eps": 1e-06,
  "rope_scaling": {
    "beta_fast": 32,
    "beta_slow": 1,
    "factor": 40,
    "mscale": 0.707,
    "mscale_all_dim": 0.707,
    "original_max_position_embeddings": 4096,
    "type": "yarn"
  },
  "rope_theta": 10000,
  "routed_scaling_factor": 1.0,
  "scoring_func": "softmax",
  "seq_aux": true,
  "tie_word_embeddings": false,
  "topk_group": 1,
  "topk_method": "greedy",
  "torch_dtype": "bfloat16",
  "transformers_version": "4.33.1",
  "use_cache": true,
  "v_head_dim": 128,
  "vocab_size": 102400
})";

// Every field compared (keeps the round-trip test honest when fields are added).
void expect_same(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.model_type, b.model_type);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.hidden_size, b.hidden_size);
  EXPECT_EQ(a.intermediate_size, b.intermediate_size);
  EXPECT_EQ(a.moe_intermediate_size, b.moe_intermediate_size);
  EXPECT_EQ(a.num_hidden_layers, b.num_hidden_layers);
  EXPECT_EQ(a.num_attention_heads, b.num_attention_heads);
  EXPECT_EQ(a.num_key_value_heads, b.num_key_value_heads);
  EXPECT_EQ(a.q_lora_rank, b.q_lora_rank);
  EXPECT_EQ(a.kv_lora_rank, b.kv_lora_rank);
  EXPECT_EQ(a.qk_nope_head_dim, b.qk_nope_head_dim);
  EXPECT_EQ(a.qk_rope_head_dim, b.qk_rope_head_dim);
  EXPECT_EQ(a.v_head_dim, b.v_head_dim);
  EXPECT_EQ(a.n_routed_experts, b.n_routed_experts);
  EXPECT_EQ(a.n_shared_experts, b.n_shared_experts);
  EXPECT_EQ(a.num_experts_per_tok, b.num_experts_per_tok);
  EXPECT_EQ(a.first_k_dense_replace, b.first_k_dense_replace);
  EXPECT_EQ(a.moe_layer_freq, b.moe_layer_freq);
  EXPECT_EQ(a.n_group, b.n_group);
  EXPECT_EQ(a.topk_group, b.topk_group);
  EXPECT_EQ(a.scoring_func, b.scoring_func);
  EXPECT_EQ(a.topk_method, b.topk_method);
  EXPECT_EQ(a.norm_topk_prob, b.norm_topk_prob);
  EXPECT_EQ(a.routed_scaling_factor, b.routed_scaling_factor);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.rope_scaling.yarn, b.rope_scaling.yarn);
  EXPECT_EQ(a.rope_scaling.factor, b.rope_scaling.factor);
  EXPECT_EQ(a.rope_scaling.beta_fast, b.rope_scaling.beta_fast);
  EXPECT_EQ(a.rope_scaling.beta_slow, b.rope_scaling.beta_slow);
  EXPECT_EQ(a.rope_scaling.mscale, b.rope_scaling.mscale);
  EXPECT_EQ(a.rope_scaling.mscale_all_dim, b.rope_scaling.mscale_all_dim);
  EXPECT_EQ(a.rope_scaling.original_max_position_embeddings, b.rope_scaling.original_max_position_embeddings);
  EXPECT_EQ(a.max_position_embeddings, b.max_position_embeddings);
  EXPECT_EQ(a.rms_norm_eps, b.rms_norm_eps);
  EXPECT_EQ(a.num_nextn_predict_layers, b.num_nextn_predict_layers);
  EXPECT_EQ(a.tie_word_embeddings, b.tie_word_embeddings);
  EXPECT_EQ(a.bos_token_id, b.bos_token_id);
  EXPECT_EQ(a.eos_token_id, b.eos_token_id);
  EXPECT_EQ(a.pad_token_id, b.pad_token_id);
  EXPECT_EQ(a.quantization_config.fp8, b.quantization_config.fp8);
  EXPECT_EQ(a.quantization_config.block_rows, b.quantization_config.block_rows);
  EXPECT_EQ(a.quantization_config.block_cols, b.quantization_config.block_cols);
  EXPECT_EQ(a.quantization_config.dynamic_activations, b.quantization_config.dynamic_activations);
  EXPECT_EQ(a.quantization_config.ue8m0_scales, b.quantization_config.ue8m0_scales);
}

// Applies `edit` to a parsed copy of `base` and returns the error message parse_model_config gives
// (empty when it accepts the config).
template <typename Edit>
std::string error_after(const char* base, Edit edit) {
  json j = json::parse(base);
  edit(j);
  try {
    parse_model_config(j.dump(), "/ckpt/config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Asserts the edited config is rejected with a message naming the source and `field`.
#define EXPECT_FIELD_ERROR(base, field, edit)                                          \
  do {                                                                                 \
    const std::string msg = error_after(base, [&](json& j) { edit; });                 \
    EXPECT_NE(msg.find("'" field "'"), std::string::npos) << "message: " << msg;       \
    EXPECT_NE(msg.find("/ckpt/config.json"), std::string::npos) << "message: " << msg; \
  } while (0)

}  // namespace

TEST(Config, ParsesDeepSeekV3) {
  const ModelConfig c = parse_model_config(kV3Config, "v3/config.json");
  EXPECT_EQ(c.model_type, "deepseek_v3");
  EXPECT_EQ(c.vocab_size, 129280);
  EXPECT_EQ(c.hidden_size, 7168);
  EXPECT_EQ(c.intermediate_size, 18432);
  EXPECT_EQ(c.moe_intermediate_size, 2048);
  EXPECT_EQ(c.num_hidden_layers, 61);
  EXPECT_EQ(c.num_attention_heads, 128);
  EXPECT_EQ(c.num_key_value_heads, 128);
  EXPECT_EQ(c.q_lora_rank, 1536);
  EXPECT_EQ(c.kv_lora_rank, 512);
  EXPECT_EQ(c.qk_nope_head_dim, 128);
  EXPECT_EQ(c.qk_rope_head_dim, 64);
  EXPECT_EQ(c.qk_head_dim(), 192);
  EXPECT_EQ(c.v_head_dim, 128);
  EXPECT_EQ(c.n_routed_experts, 256);
  EXPECT_EQ(c.n_shared_experts, 1);
  EXPECT_EQ(c.num_experts_per_tok, 8);
  EXPECT_EQ(c.first_k_dense_replace, 3);
  EXPECT_EQ(c.moe_layer_freq, 1);
  EXPECT_EQ(c.n_group, 8);
  EXPECT_EQ(c.topk_group, 4);
  EXPECT_EQ(c.scoring_func, ScoringFunc::sigmoid);
  EXPECT_EQ(c.topk_method, TopkMethod::noaux_tc);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.routed_scaling_factor, 2.5);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_TRUE(c.rope_scaling.yarn);
  EXPECT_EQ(c.rope_scaling.factor, 40.0);
  EXPECT_EQ(c.rope_scaling.beta_fast, 32.0);
  EXPECT_EQ(c.rope_scaling.beta_slow, 1.0);
  EXPECT_EQ(c.rope_scaling.mscale, 1.0);
  EXPECT_EQ(c.rope_scaling.mscale_all_dim, 1.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 4096);
  EXPECT_EQ(c.max_position_embeddings, 163840);
  EXPECT_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.num_nextn_predict_layers, 1);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 0);
  EXPECT_EQ(c.eos_token_id, 1);
  EXPECT_TRUE(c.quantization_config.fp8);
  EXPECT_EQ(c.quantization_config.block_rows, 128);
  EXPECT_EQ(c.quantization_config.block_cols, 128);
  EXPECT_TRUE(c.quantization_config.dynamic_activations);
  EXPECT_FALSE(c.quantization_config.ue8m0_scales);
  EXPECT_FALSE(c.is_moe_layer(2));
  EXPECT_TRUE(c.is_moe_layer(3));
  EXPECT_TRUE(c.is_moe_layer(61));  // the MTP layer
  // 192^-0.5 · (0.1 · 1.0 · ln 40 + 1)^2, evaluated independently.
  EXPECT_NEAR(attention_softmax_scale(c), 0.1352337788608801, 1e-15);
}

TEST(Config, ParsesDeepSeekV2Lite) {
  const ModelConfig c = parse_model_config(kV2LiteConfig, "v2lite/config.json");
  EXPECT_EQ(c.model_type, "deepseek_v2");
  EXPECT_FALSE(c.q_lora_rank.has_value());
  EXPECT_EQ(c.scoring_func, ScoringFunc::softmax);
  EXPECT_EQ(c.topk_method, TopkMethod::greedy);
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_EQ(c.rope_scaling.mscale, 0.707);
  EXPECT_EQ(c.rope_scaling.mscale_all_dim, 0.707);
  EXPECT_EQ(c.first_k_dense_replace, 1);
  EXPECT_EQ(c.n_routed_experts, 64);
  EXPECT_EQ(c.num_experts_per_tok, 6);
  EXPECT_EQ(c.n_shared_experts, 2);
  EXPECT_EQ(c.kv_lora_rank, 512);
  EXPECT_EQ(c.vocab_size, 102400);
  EXPECT_EQ(c.hidden_size, 2048);
  EXPECT_EQ(c.num_hidden_layers, 27);
  EXPECT_EQ(c.num_attention_heads, 16);
  EXPECT_EQ(c.moe_intermediate_size, 1408);
  EXPECT_EQ(c.intermediate_size, 10944);
  EXPECT_EQ(c.n_group, 1);
  EXPECT_EQ(c.topk_group, 1);
  EXPECT_EQ(c.routed_scaling_factor, 1.0);
  EXPECT_EQ(c.num_nextn_predict_layers, 0);  // V2 has no MTP
  EXPECT_FALSE(c.quantization_config.fp8);
  EXPECT_EQ(c.bos_token_id, 100000);
  EXPECT_EQ(c.eos_token_id, 100001);
  EXPECT_NEAR(attention_softmax_scale(c), 0.1147213867929261, 1e-15);
}

TEST(Config, RoundTripsThroughJson) {
  for (const char* text : {kV3Config, kV2LiteConfig}) {
    const ModelConfig a = parse_model_config(text, "a");
    const std::string written = model_config_to_json(a);
    const ModelConfig b = parse_model_config(written, "b");
    expect_same(a, b);
    const json j = json::parse(written);
    EXPECT_EQ(j.at("architectures")[0],
              a.model_type == "deepseek_v3" ? "DeepseekV3ForCausalLM" : "DeepseekV2ForCausalLM");
    EXPECT_EQ(j.at("torch_dtype"), "bfloat16");
    EXPECT_EQ(j.contains("quantization_config"), a.quantization_config.fp8);
    EXPECT_EQ(j.at("rope_scaling").at("type"), "yarn");
  }
  // A dense model without YaRN, and V3.1's ue8m0 scales, also round-trip.
  json j = json::parse(kV3Config);
  j["n_routed_experts"] = nullptr;
  j["rope_scaling"] = nullptr;
  j["quantization_config"]["scale_fmt"] = "ue8m0";
  j["eos_token_id"] = json::array({1, 7});
  const ModelConfig a = parse_model_config(j.dump(), "a");
  EXPECT_EQ(a.n_routed_experts, 0);
  EXPECT_EQ(a.first_k_dense_replace, 61);  // dense: every layer below first_k_dense_replace
  EXPECT_FALSE(a.is_moe_layer(10));
  EXPECT_FALSE(a.rope_scaling.yarn);
  EXPECT_TRUE(a.quantization_config.ue8m0_scales);
  EXPECT_EQ(a.eos_token_id, 1);
  EXPECT_DOUBLE_EQ(attention_softmax_scale(a), 1.0 / std::sqrt(192.0));
  const std::string written = model_config_to_json(a);
  expect_same(a, parse_model_config(written, "b"));
  EXPECT_TRUE(json::parse(written).at("n_routed_experts").is_null());
}

TEST(Config, DefaultsFollowHuggingFace) {
  // V3 without the behaviour-only fields gets DeepseekV3Config's defaults.
  json j = json::parse(kV3Config);
  for (const char* k : {"scoring_func", "topk_method", "norm_topk_prob", "n_group", "topk_group",
                        "routed_scaling_factor", "num_nextn_predict_layers", "moe_layer_freq", "rope_scaling",
                        "quantization_config", "bos_token_id", "num_key_value_heads"})
    j.erase(k);
  ModelConfig c = parse_model_config(j.dump(), "x");
  EXPECT_EQ(c.scoring_func, ScoringFunc::sigmoid);
  EXPECT_EQ(c.topk_method, TopkMethod::noaux_tc);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.n_group, 8);
  EXPECT_EQ(c.topk_group, 4);
  EXPECT_EQ(c.routed_scaling_factor, 2.5);
  EXPECT_EQ(c.num_nextn_predict_layers, 1);
  EXPECT_EQ(c.moe_layer_freq, 1);
  EXPECT_EQ(c.num_key_value_heads, 128);
  EXPECT_FALSE(c.rope_scaling.yarn);
  EXPECT_FALSE(c.quantization_config.fp8);
  EXPECT_FALSE(c.bos_token_id.has_value());
  // V2 gets DeepseekV2Config's.
  j = json::parse(kV2LiteConfig);
  for (const char* k : {"scoring_func", "topk_method", "norm_topk_prob", "n_group", "topk_group"}) j.erase(k);
  j["n_shared_experts"] = nullptr;
  c = parse_model_config(j.dump(), "x");
  EXPECT_EQ(c.scoring_func, ScoringFunc::softmax);
  EXPECT_EQ(c.topk_method, TopkMethod::greedy);
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_EQ(c.n_group, 1);
  EXPECT_EQ(c.topk_group, 1);
  EXPECT_EQ(c.n_shared_experts, 0);
}

TEST(Config, AcceptsV25GroupLimitedGreedyAndRopeParameters) {
  json j = json::parse(kV2LiteConfig);
  j["topk_method"] = "group_limited_greedy";
  j["n_group"] = 8;
  j["topk_group"] = 3;
  const ModelConfig c = parse_model_config(j.dump(), "x");
  EXPECT_EQ(c.topk_method, TopkMethod::group_limited_greedy);
  // Hugging Face >= 5 writes rope_parameters with rope_type and rope_theta inside.
  j = json::parse(kV2LiteConfig);
  j["rope_parameters"] = j["rope_scaling"];
  j["rope_parameters"].erase("type");
  j["rope_parameters"]["rope_type"] = "yarn";
  j["rope_parameters"]["rope_theta"] = 50000;
  j.erase("rope_scaling");
  const ModelConfig d = parse_model_config(j.dump(), "x");
  EXPECT_TRUE(d.rope_scaling.yarn);
  EXPECT_EQ(d.rope_scaling.mscale, 0.707);
  EXPECT_EQ(d.rope_theta, 50000.0);
}

TEST(Config, ErrorsNameTheField) {
  const char* v3 = kV3Config;
  EXPECT_FIELD_ERROR(v3, "hidden_size", j.erase("hidden_size"));
  EXPECT_FIELD_ERROR(v3, "vocab_size", j["vocab_size"] = "129280");
  EXPECT_FIELD_ERROR(v3, "vocab_size", j["vocab_size"] = 129280.5);
  EXPECT_FIELD_ERROR(v3, "num_hidden_layers", j["num_hidden_layers"] = -1);
  EXPECT_FIELD_ERROR(v3, "num_attention_heads", j["num_attention_heads"] = 0);
  EXPECT_FIELD_ERROR(v3, "kv_lora_rank", j.erase("kv_lora_rank"));
  EXPECT_FIELD_ERROR(v3, "q_lora_rank", j.erase("q_lora_rank"));
  EXPECT_FIELD_ERROR(v3, "q_lora_rank", j["q_lora_rank"] = "1536");
  EXPECT_FIELD_ERROR(v3, "q_lora_rank", j["q_lora_rank"] = 0);
  EXPECT_FIELD_ERROR(v3, "qk_rope_head_dim", j["qk_rope_head_dim"] = 63);
  EXPECT_FIELD_ERROR(v3, "v_head_dim", j["v_head_dim"] = nullptr);
  EXPECT_FIELD_ERROR(v3, "model_type", j["model_type"] = "llama");
  EXPECT_FIELD_ERROR(v3, "model_type", j.erase("model_type"));
  EXPECT_FIELD_ERROR(v3, "n_routed_experts", j.erase("n_routed_experts"));
  EXPECT_FIELD_ERROR(v3, "n_routed_experts", j["n_routed_experts"] = -4);
  EXPECT_FIELD_ERROR(v3, "moe_intermediate_size", j.erase("moe_intermediate_size"));
  EXPECT_FIELD_ERROR(v3, "n_shared_experts", j.erase("n_shared_experts"));
  EXPECT_FIELD_ERROR(v3, "num_experts_per_tok", j["num_experts_per_tok"] = 257);
  EXPECT_FIELD_ERROR(v3, "num_experts_per_tok", j["num_experts_per_tok"] = 200);  // > 4 groups × 32
  EXPECT_FIELD_ERROR(v3, "topk_group", j["topk_group"] = 9);
  EXPECT_FIELD_ERROR(v3, "n_group", j["n_group"] = 7);                           // 256 % 7 != 0
  EXPECT_FIELD_ERROR(v3, "n_group", (j["n_group"] = 256, j["topk_group"] = 8));  // 1 expert per group
  EXPECT_FIELD_ERROR(v3, "scoring_func", j["scoring_func"] = "tanh");
  EXPECT_FIELD_ERROR(v3, "topk_method", j["topk_method"] = "gready");
  EXPECT_FIELD_ERROR(v3, "topk_method", j["scoring_func"] = "softmax");  // noaux_tc needs sigmoid
  EXPECT_FIELD_ERROR(v3, "routed_scaling_factor", j["routed_scaling_factor"] = 0);
  EXPECT_FIELD_ERROR(v3, "first_k_dense_replace", j["first_k_dense_replace"] = 62);
  EXPECT_FIELD_ERROR(v3, "moe_layer_freq", j["moe_layer_freq"] = 0);
  EXPECT_FIELD_ERROR(v3, "norm_topk_prob", j["norm_topk_prob"] = 1);
  EXPECT_FIELD_ERROR(v3, "rms_norm_eps", j["rms_norm_eps"] = 0);
  EXPECT_FIELD_ERROR(v3, "rope_theta", j["rope_theta"] = -5);
  EXPECT_FIELD_ERROR(v3, "rope_scaling.type", j["rope_scaling"]["type"] = "linear");
  EXPECT_FIELD_ERROR(v3, "rope_scaling.factor", j["rope_scaling"]["factor"] = 0.5);
  EXPECT_FIELD_ERROR(v3, "rope_scaling.factor", j["rope_scaling"].erase("factor"));
  EXPECT_FIELD_ERROR(v3, "rope_scaling.original_max_position_embeddings",
                     j["rope_scaling"]["original_max_position_embeddings"] = 0);
  EXPECT_FIELD_ERROR(v3, "rope_scaling", j["rope_scaling"] = 40);
  EXPECT_FIELD_ERROR(v3, "quantization_config.quant_method", j["quantization_config"]["quant_method"] = "awq");
  EXPECT_FIELD_ERROR(v3, "quantization_config.fmt", j["quantization_config"]["fmt"] = "e5m2");
  EXPECT_FIELD_ERROR(v3, "quantization_config.weight_block_size",
                     j["quantization_config"]["weight_block_size"] = json::array({128}));
  EXPECT_FIELD_ERROR(v3, "quantization_config.weight_block_size",
                     j["quantization_config"]["weight_block_size"] = json::array({128, -1}));
  EXPECT_FIELD_ERROR(v3, "quantization_config.scale_fmt", j["quantization_config"]["scale_fmt"] = "e8m0");
  EXPECT_FIELD_ERROR(v3, "quantization_config.activation_scheme",
                     j["quantization_config"]["activation_scheme"] = "static");
  EXPECT_FIELD_ERROR(v3, "attention_bias", j["attention_bias"] = true);
  EXPECT_FIELD_ERROR(v3, "hidden_act", j["hidden_act"] = "gelu");
  EXPECT_FIELD_ERROR(v3, "eos_token_id", j["eos_token_id"] = "</s>");
  EXPECT_FIELD_ERROR(v3, "pad_token_id", j["pad_token_id"] = 1.5);
  EXPECT_FIELD_ERROR(v3, "tie_word_embeddings", j["tie_word_embeddings"] = "no");
  EXPECT_FIELD_ERROR(kV2LiteConfig, "topk_method", j["scoring_func"] = "sigmoid");  // greedy needs softmax
  EXPECT_FIELD_ERROR(kV2LiteConfig, "num_experts_per_tok", j["num_experts_per_tok"] = 65);
}

// Token ids change no computation: ids outside the vocabulary (small test checkpoints often keep the
// original model's) load with one warning line each, as Hugging Face loads them, keep their values
// through a round trip, and are errors only where they are used.
TEST(Config, TokenIdsOutsideTheVocabularyOnlyWarn) {
  json j = json::parse(kV3Config);
  j["vocab_size"] = 1000;
  j["bos_token_id"] = 100000;
  j["eos_token_id"] = json::array({-1, 1});
  j["pad_token_id"] = 1000;
  ::testing::internal::CaptureStderr();
  const ModelConfig c = parse_model_config(j.dump(), "/ckpt/config.json");
  const std::string warnings = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(c.bos_token_id, 100000);
  EXPECT_EQ(c.eos_token_id, -1);
  EXPECT_EQ(c.pad_token_id, 1000);
  EXPECT_EQ(std::count(warnings.begin(), warnings.end(), '\n'), 3) << warnings;
  for (const char* line : {"bos_token_id 100000", "eos_token_id -1", "pad_token_id 1000"}) {
    const size_t at = warnings.find(line);
    ASSERT_NE(at, std::string::npos) << warnings;
    const std::string rest = warnings.substr(at, warnings.find('\n', at) - at);
    EXPECT_NE(rest.find("vocab_size 1000"), std::string::npos) << rest;
  }
  EXPECT_NE(warnings.find("/ckpt/config.json"), std::string::npos) << warnings;

  const std::string written = model_config_to_json(c);
  ::testing::internal::CaptureStderr();
  expect_same(c, parse_model_config(written, "b"));
  ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(json::parse(written).at("pad_token_id"), 1000);

  // At the point of use: each field is named with its value, vocab_size and the fix.
  for (const auto& [field, value] : {std::pair{"bos_token_id", "100000"}, {"eos_token_id", "-1"},
                                     {"pad_token_id", "1000"}}) {
    try {
      config_token_id(c, field, "start the prompt");
      ADD_FAILURE() << field << " was accepted where it is used";
    } catch (const Error& e) {
      const std::string msg = e.what();
      for (const std::string& part : {std::string(field) + " is " + value, std::string("vocab_size 1000"),
                                     std::string("cannot start the prompt"), std::string("set ") + field})
        EXPECT_NE(msg.find(part), std::string::npos) << "'" << part << "' missing from: " << msg;
    }
  }
  // In range or absent, the id is used as it is.
  j["bos_token_id"] = 999;
  j.erase("pad_token_id");
  ::testing::internal::CaptureStderr();
  const ModelConfig d = parse_model_config(j.dump(), "x");
  EXPECT_EQ(::testing::internal::GetCapturedStderr().find("bos_token_id"), std::string::npos);
  EXPECT_EQ(config_token_id(d, "bos_token_id", "start the prompt"), 999);
  EXPECT_EQ(config_token_id(d, "pad_token_id", "pad"), std::nullopt);
  EXPECT_THROW(config_token_id(d, "sep_token_id", "x"), Error);
}

TEST(Config, RejectsNonJsonAndMissingFiles) {
  try {
    parse_model_config("{\"model_type\": ", "/x/config.json");
    FAIL() << "accepted truncated JSON";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/x/config.json"), std::string::npos);
  }
  EXPECT_THROW(parse_model_config("[1, 2]", "x"), Error);
  const std::string missing = "/nonexistent-dsv3-dir/config.json";
  try {
    load_model_config(missing);
    FAIL() << "loaded a missing file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos);
  }
}

TEST(Config, LoadsFromFile) {
  const std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("dsv3_test_config_" + std::to_string(::getpid()) + ".json");
  {
    std::ofstream out(path);
    out << kV2LiteConfig;
  }
  const ModelConfig c = load_model_config(path.string());
  EXPECT_EQ(c.num_hidden_layers, 27);
  std::filesystem::remove(path);
}
