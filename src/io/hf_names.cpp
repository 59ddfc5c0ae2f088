// Hugging Face tensor names and shapes of DeepSeek-V3/V2 checkpoints (SPEC.md §1), from the config.
#include "io/hf_names.h"

#include "core/error.h"

namespace dsv3 {
namespace {

class SpecList {
 public:
  explicit SpecList(std::vector<HfTensorSpec>& out) : out_(out) {}
  void add(std::string name, Shape shape, TensorRole role) {
    out_.push_back(HfTensorSpec{std::move(name), std::move(shape), role});
  }

 private:
  std::vector<HfTensorSpec>& out_;
};

// SwiGLU MLP: gate/up [inter, H], down [H, inter].
void add_mlp(SpecList& s, const std::string& prefix, int64_t hidden, int64_t inter) {
  s.add(prefix + "gate_proj.weight", {inter, hidden}, TensorRole::linear);
  s.add(prefix + "up_proj.weight", {inter, hidden}, TensorRole::linear);
  s.add(prefix + "down_proj.weight", {hidden, inter}, TensorRole::linear);
}

// One transformer block: attention (MLA) + dense MLP or MoE, as the main layers and MTP layers share.
void add_block(SpecList& s, const ModelConfig& c, int64_t layer) {
  const std::string p = cat("model.layers.", layer, ".");
  const int64_t H = c.hidden_size;
  const int64_t heads = c.num_attention_heads;
  s.add(p + "input_layernorm.weight", {H}, TensorRole::norm);

  const std::string a = p + "self_attn.";
  if (c.q_lora_rank) {
    const int64_t q_lora = *c.q_lora_rank;
    s.add(a + "q_a_proj.weight", {q_lora, H}, TensorRole::linear);
    s.add(a + "q_a_layernorm.weight", {q_lora}, TensorRole::norm);
    s.add(a + "q_b_proj.weight", {heads * c.qk_head_dim(), q_lora}, TensorRole::linear);
  } else {
    s.add(a + "q_proj.weight", {heads * c.qk_head_dim(), H}, TensorRole::linear);
  }
  s.add(a + "kv_a_proj_with_mqa.weight", {c.kv_lora_rank + c.qk_rope_head_dim, H}, TensorRole::linear);
  s.add(a + "kv_a_layernorm.weight", {c.kv_lora_rank}, TensorRole::norm);
  s.add(a + "kv_b_proj.weight", {heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank}, TensorRole::linear);
  s.add(a + "o_proj.weight", {H, heads * c.v_head_dim}, TensorRole::linear);

  s.add(p + "post_attention_layernorm.weight", {H}, TensorRole::norm);
  const std::string m = p + "mlp.";
  if (!c.is_moe_layer(layer)) {
    add_mlp(s, m, H, c.intermediate_size);
    return;
  }
  const int64_t E = c.n_routed_experts;
  s.add(m + "gate.weight", {E, H}, TensorRole::router_gate);
  if (c.topk_method == TopkMethod::noaux_tc) s.add(m + "gate.e_score_correction_bias", {E}, TensorRole::router_bias);
  for (int64_t e = 0; e < E; ++e) add_mlp(s, cat(m, "experts.", e, "."), H, c.moe_intermediate_size);
  // The shared experts are fused into one MLP of n_shared_experts × moe_intermediate_size.
  if (c.n_shared_experts > 0) add_mlp(s, m + "shared_experts.", H, c.n_shared_experts * c.moe_intermediate_size);
}

}  // namespace

std::vector<HfTensorSpec> hf_tensor_specs(const ModelConfig& c) {
  std::vector<HfTensorSpec> out;
  SpecList s(out);
  const int64_t H = c.hidden_size;
  const int64_t V = c.vocab_size;
  s.add("model.embed_tokens.weight", {V, H}, TensorRole::embedding);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) add_block(s, c, l);
  s.add("model.norm.weight", {H}, TensorRole::norm);
  if (!c.tie_word_embeddings) s.add("lm_head.weight", {V, H}, TensorRole::head);

  // MTP modules (SPEC.md §1): stored as layers num_hidden_layers + k with their own copies of the
  // embedding and head (identical to the main model's in DeepSeek's release).
  for (int64_t k = 0; k < c.num_nextn_predict_layers; ++k) {
    const int64_t layer = c.num_hidden_layers + k;
    const std::string p = cat("model.layers.", layer, ".");
    s.add(p + "embed_tokens.weight", {V, H}, TensorRole::embedding);
    s.add(p + "enorm.weight", {H}, TensorRole::norm);
    s.add(p + "hnorm.weight", {H}, TensorRole::norm);
    s.add(p + "eh_proj.weight", {H, 2 * H}, TensorRole::linear);  // input [enorm(emb); hnorm(h)]
    add_block(s, c, layer);
    s.add(p + "shared_head.norm.weight", {H}, TensorRole::norm);
    s.add(p + "shared_head.head.weight", {V, H}, TensorRole::head);
  }
  return out;
}

std::string scale_inv_name(const std::string& weight_name) {
  static const std::string suffix = ".weight";
  DSV3_CHECK(weight_name.size() > suffix.size() &&
                 weight_name.compare(weight_name.size() - suffix.size(), suffix.size(), suffix) == 0,
             "[hf_names] '", weight_name, "' is not a weight name (must end in .weight)");
  return weight_name + "_scale_inv";
}

}  // namespace dsv3
