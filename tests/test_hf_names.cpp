// Hugging Face tensor names and shapes (src/io/hf_names.h) for DeepSeek-V3 and V2-Lite.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

#include "core/error.h"
#include "io/hf_names.h"

using namespace dsv3;

namespace {

// Filled field by field (not through the parser) so this test stands on its own.
ModelConfig v3_config() {
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
  c.n_group = 8;
  c.topk_group = 4;
  c.scoring_func = ScoringFunc::sigmoid;
  c.topk_method = TopkMethod::noaux_tc;
  c.norm_topk_prob = true;
  c.num_nextn_predict_layers = 1;
  return c;
}

ModelConfig v2_lite_config() {
  ModelConfig c;
  c.model_type = "deepseek_v2";
  c.vocab_size = 102400;
  c.hidden_size = 2048;
  c.intermediate_size = 10944;
  c.moe_intermediate_size = 1408;
  c.num_hidden_layers = 27;
  c.num_attention_heads = 16;
  c.num_key_value_heads = 16;
  c.kv_lora_rank = 512;
  c.qk_nope_head_dim = 128;
  c.qk_rope_head_dim = 64;
  c.v_head_dim = 128;
  c.n_routed_experts = 64;
  c.n_shared_experts = 2;
  c.num_experts_per_tok = 6;
  c.first_k_dense_replace = 1;
  return c;
}

std::map<std::string, HfTensorSpec> by_name(const std::vector<HfTensorSpec>& specs) {
  std::map<std::string, HfTensorSpec> m;
  for (const HfTensorSpec& s : specs) EXPECT_TRUE(m.emplace(s.name, s).second) << "duplicate " << s.name;
  return m;
}

int64_t count_params(const std::vector<HfTensorSpec>& specs, bool mtp, int64_t main_layers) {
  const std::string mtp_prefix = "model.layers." + std::to_string(main_layers) + ".";
  int64_t n = 0;
  for (const HfTensorSpec& s : specs)
    if ((s.name.rfind(mtp_prefix, 0) == 0) == mtp) n += shape_numel(s.shape);
  return n;
}

}  // namespace

TEST(HfNames, DeepSeekV3ShapesAndRoles) {
  const ModelConfig c = v3_config();
  const auto specs = hf_tensor_specs(c);
  const auto m = by_name(specs);
  EXPECT_EQ(specs.front().name, "model.embed_tokens.weight");
  auto shape = [&](const std::string& n) { return m.count(n) ? m.at(n).shape : Shape{-1}; };
  auto role = [&](const std::string& n) { return m.at(n).role; };
  EXPECT_EQ(shape("model.embed_tokens.weight"), (Shape{129280, 7168}));
  EXPECT_EQ(shape("lm_head.weight"), (Shape{129280, 7168}));
  EXPECT_EQ(shape("model.norm.weight"), (Shape{7168}));
  const std::string a = "model.layers.0.self_attn.";
  EXPECT_EQ(shape(a + "q_a_proj.weight"), (Shape{1536, 7168}));
  EXPECT_EQ(shape(a + "q_a_layernorm.weight"), (Shape{1536}));
  EXPECT_EQ(shape(a + "q_b_proj.weight"), (Shape{128 * 192, 1536}));
  EXPECT_EQ(shape(a + "kv_a_proj_with_mqa.weight"), (Shape{576, 7168}));
  EXPECT_EQ(shape(a + "kv_a_layernorm.weight"), (Shape{512}));
  EXPECT_EQ(shape(a + "kv_b_proj.weight"), (Shape{128 * 256, 512}));
  EXPECT_EQ(shape(a + "o_proj.weight"), (Shape{7168, 128 * 128}));
  EXPECT_EQ(m.count(a + "q_proj.weight"), 0u);
  EXPECT_EQ(shape("model.layers.2.mlp.gate_proj.weight"), (Shape{18432, 7168}));
  EXPECT_EQ(shape("model.layers.2.mlp.down_proj.weight"), (Shape{7168, 18432}));
  EXPECT_EQ(m.count("model.layers.2.mlp.gate.weight"), 0u);
  EXPECT_EQ(shape("model.layers.3.mlp.gate.weight"), (Shape{256, 7168}));
  EXPECT_EQ(shape("model.layers.3.mlp.gate.e_score_correction_bias"), (Shape{256}));
  EXPECT_EQ(shape("model.layers.60.mlp.experts.255.down_proj.weight"), (Shape{7168, 2048}));
  EXPECT_EQ(shape("model.layers.60.mlp.experts.0.up_proj.weight"), (Shape{2048, 7168}));
  EXPECT_EQ(shape("model.layers.3.mlp.shared_experts.gate_proj.weight"), (Shape{2048, 7168}));
  EXPECT_EQ(m.count("model.layers.3.mlp.experts.256.up_proj.weight"), 0u);
  EXPECT_EQ(m.count("model.layers.3.mlp.up_proj.weight"), 0u);
  // The MTP layer: its own embedding / head copies, eh_proj and a full MoE block.
  const std::string p = "model.layers.61.";
  EXPECT_EQ(shape(p + "embed_tokens.weight"), (Shape{129280, 7168}));
  EXPECT_EQ(shape(p + "enorm.weight"), (Shape{7168}));
  EXPECT_EQ(shape(p + "hnorm.weight"), (Shape{7168}));
  EXPECT_EQ(shape(p + "eh_proj.weight"), (Shape{7168, 14336}));
  EXPECT_EQ(shape(p + "shared_head.norm.weight"), (Shape{7168}));
  EXPECT_EQ(shape(p + "shared_head.head.weight"), (Shape{129280, 7168}));
  EXPECT_EQ(shape(p + "self_attn.q_b_proj.weight"), (Shape{24576, 1536}));
  EXPECT_EQ(shape(p + "mlp.experts.17.gate_proj.weight"), (Shape{2048, 7168}));
  EXPECT_EQ(shape(p + "mlp.gate.e_score_correction_bias"), (Shape{256}));
  EXPECT_EQ(m.count("model.layers.62.input_layernorm.weight"), 0u);
  EXPECT_EQ(specs.back().name, p + "shared_head.head.weight");

  EXPECT_EQ(role("model.embed_tokens.weight"), TensorRole::embedding);
  EXPECT_EQ(role(p + "embed_tokens.weight"), TensorRole::embedding);
  EXPECT_EQ(role("lm_head.weight"), TensorRole::head);
  EXPECT_EQ(role(p + "shared_head.head.weight"), TensorRole::head);
  EXPECT_EQ(role(p + "eh_proj.weight"), TensorRole::linear);
  EXPECT_EQ(role(a + "kv_a_layernorm.weight"), TensorRole::norm);
  EXPECT_EQ(role("model.layers.3.mlp.gate.weight"), TensorRole::router_gate);
  EXPECT_EQ(role("model.layers.3.mlp.gate.e_score_correction_bias"), TensorRole::router_bias);

  // Per block: norms 2 + attention 7 (q_a, q_a_ln, q_b, kv_a, kv_a_ln, kv_b, o), then a dense MLP (3)
  // or gate + bias + 256 experts × 3 + shared experts 3. The MTP layer adds embed, enorm, hnorm,
  // eh_proj, shared_head.norm and shared_head.head.
  const size_t main_tensors = 1 + 3 * 12 + 58 * (9 + 2 + 768 + 3) + 2;
  const size_t mtp_tensors = 4 + (9 + 2 + 768 + 3) + 2;
  EXPECT_EQ(specs.size(), main_tensors + mtp_tensors);
  size_t linear = 0;
  for (const HfTensorSpec& s : specs) linear += s.role == TensorRole::linear;
  // The projections FP8 checkpoints quantize: 5 attention + 3 MLP per dense layer, 5 + 3 × 257
  // per MoE layer (routed + shared experts), and the MTP layer's eh_proj.
  EXPECT_EQ(linear, size_t(3 * 8 + 58 * (5 + 3 * 257) + 1 + (5 + 3 * 257)));
}

// DeepSeek publishes 671B parameters for the main model plus 14B for the MTP module (685B on
// Hugging Face). Counted here from the architecture, term by term.
TEST(HfNames, DeepSeekV3ParameterCount) {
  const auto specs = hf_tensor_specs(v3_config());
  const int64_t H = 7168, V = 129280;
  const int64_t attention = 1536 * H + 1536 + 24576 * 1536 + 576 * H + 512 + 32768 * 512 + H * 16384;
  const int64_t dense_layer = 2 * H + attention + 3 * H * 18432;
  const int64_t moe_layer = 2 * H + attention + 257 * 3 * H * 2048 + 256 * H + 256;
  const int64_t main = 2 * V * H + H + 3 * dense_layer + 58 * moe_layer;
  const int64_t mtp = 2 * V * H + 3 * H + 2 * H * H + moe_layer;
  EXPECT_EQ(count_params(specs, false, 61), main);
  EXPECT_EQ(count_params(specs, true, 61), mtp);
  EXPECT_EQ(main, 671026419200);                // 671.0B
  EXPECT_NEAR(double(mtp), 14e9, 0.6e9);        // 13.46B, published as "14B"
  EXPECT_NEAR(double(main + mtp), 685e9, 1e9);  // 684.5B
}

TEST(HfNames, DeepSeekV2LiteShapesAndCount) {
  const ModelConfig c = v2_lite_config();
  const auto specs = hf_tensor_specs(c);
  const auto m = by_name(specs);
  EXPECT_EQ(m.at("model.layers.0.self_attn.q_proj.weight").shape, (Shape{16 * 192, 2048}));
  EXPECT_EQ(m.count("model.layers.0.self_attn.q_a_proj.weight"), 0u);
  EXPECT_EQ(m.count("model.layers.0.self_attn.q_a_layernorm.weight"), 0u);
  EXPECT_EQ(m.at("model.layers.0.mlp.gate_proj.weight").shape, (Shape{10944, 2048}));
  EXPECT_EQ(m.at("model.layers.1.mlp.gate.weight").shape, (Shape{64, 2048}));
  EXPECT_EQ(m.count("model.layers.1.mlp.gate.e_score_correction_bias"), 0u);  // greedy: no bias
  EXPECT_EQ(m.at("model.layers.1.mlp.shared_experts.gate_proj.weight").shape, (Shape{2 * 1408, 2048}));
  EXPECT_EQ(m.at("model.layers.1.mlp.shared_experts.down_proj.weight").shape, (Shape{2048, 2 * 1408}));
  EXPECT_EQ(m.at("model.layers.26.mlp.experts.63.down_proj.weight").shape, (Shape{2048, 1408}));
  EXPECT_EQ(m.count("model.layers.27.input_layernorm.weight"), 0u);  // no MTP
  int64_t total = 0;
  for (const HfTensorSpec& s : specs) total += shape_numel(s.shape);
  EXPECT_EQ(total, 15706484224);  // DeepSeek-V2-Lite: 15.7B
}

TEST(HfNames, OptionalTensors) {
  ModelConfig c = v2_lite_config();
  c.tie_word_embeddings = true;
  c.n_shared_experts = 0;
  c.num_nextn_predict_layers = 2;
  c.moe_layer_freq = 2;
  const auto m = by_name(hf_tensor_specs(c));
  EXPECT_EQ(m.count("lm_head.weight"), 0u);
  EXPECT_EQ(m.count("model.layers.2.mlp.shared_experts.up_proj.weight"), 0u);
  EXPECT_EQ(m.count("model.layers.2.mlp.experts.0.up_proj.weight"), 1u);
  EXPECT_EQ(m.count("model.layers.3.mlp.up_proj.weight"), 1u);  // odd layer dense with freq 2
  EXPECT_EQ(m.count("model.layers.28.mlp.gate.weight"), 1u);    // MTP layers 27, 28
  EXPECT_EQ(m.count("model.layers.27.mlp.up_proj.weight"), 1u);
  EXPECT_EQ(m.count("model.layers.28.shared_head.head.weight"), 1u);
}

TEST(HfNames, ScaleInvName) {
  EXPECT_EQ(scale_inv_name("model.layers.3.mlp.experts.7.up_proj.weight"),
            "model.layers.3.mlp.experts.7.up_proj.weight_scale_inv");
  EXPECT_THROW(scale_inv_name("model.layers.3.mlp.gate.e_score_correction_bias"), Error);
}
