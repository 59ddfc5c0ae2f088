// The weights of a DeepSeek-V3/V2 checkpoint bound from a TensorStore (SPEC.md §1, HF names).
//
// Every tensor of hf_tensor_specs(config) is bound and checked (name, shape, dtype); errors name the
// file and the tensor. Linear weights are LinearWeight views into the mmapped files (no copy), FP8 ones
// with their `weight_scale_inv` blocks. Small tensors (RMSNorm weights, the router correction bias) are
// converted to f32 copies. The embedding table stays a view and is only gathered from.
//
// Memory beyond the mmap: for the absorbed attention form each layer keeps kv_b_proj dequantized to f32
// (`kv_b_f32`, heads·(nope+v)·kv_lora·4 bytes: 64 MiB per layer, 3.9 GiB over DeepSeek-V3's 61+1 layers;
// 2 MiB per layer for the v3-1.5g preset). It is exact for every stored dtype, so the absorbed and naive
// paths see identical weights.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/rope.h"
#include "ops/linear.h"

namespace dsv3 {

struct AttentionWeights {
  bool q_lora = false;                // q_a_proj/q_a_layernorm/q_b_proj present (else q_proj)
  LinearWeight q_a_proj;              // [q_lora_rank, H]
  Tensor q_a_layernorm;               // [q_lora_rank] f32
  LinearWeight q_b_proj;              // [heads·(nope+rope), q_lora_rank]
  LinearWeight q_proj;                // [heads·(nope+rope), H]   (q_lora_rank null)
  LinearWeight kv_a_proj_with_mqa;    // [kv_lora + rope, H]
  Tensor kv_a_layernorm;              // [kv_lora] f32
  LinearWeight kv_b_proj;             // [heads·(nope+v), kv_lora]
  LinearWeight o_proj;                // [H, heads·v]
  Tensor kv_b_f32;                    // [heads·(nope+v), kv_lora] dequantized kv_b_proj (absorbed form)
};

struct MlpWeights {  // SwiGLU: down(silu(gate(x)) ⊙ up(x))
  LinearWeight gate_proj;  // [inter, H]
  LinearWeight up_proj;    // [inter, H]
  LinearWeight down_proj;  // [H, inter]
};

struct MoeWeights {
  LinearWeight gate;              // [n_routed_experts, H] router, used with f32 activations
  Tensor correction_bias;         // [n_routed_experts] f32; empty unless topk_method noaux_tc
  std::vector<MlpWeights> experts;  // n_routed_experts × [moe_inter, H] ...
  bool has_shared = false;
  MlpWeights shared;              // [n_shared·moe_inter, H] ...
};

struct LayerWeights {
  Tensor input_layernorm;           // [H] f32
  Tensor post_attention_layernorm;  // [H] f32
  AttentionWeights attn;
  bool is_moe = false;
  MlpWeights mlp;  // dense layers
  MoeWeights moe;  // MoE layers
};

// MTP module k lives at model.layers.{num_hidden_layers + k}.
struct MtpWeights {
  TensorView embed_tokens;  // [V, H] the module's copy of the embedding
  Tensor enorm;             // [H] f32
  Tensor hnorm;             // [H] f32
  LinearWeight eh_proj;     // [H, 2H]: input is [enorm(emb); hnorm(h)]
  LayerWeights block;
  Tensor shared_head_norm;  // [H] f32
  LinearWeight shared_head; // [V, H]
};

struct ModelWeights {
  TensorView embed_tokens;  // [V, H] gathered from, never converted whole
  std::vector<LayerWeights> layers;
  Tensor norm;              // [H] f32
  LinearWeight lm_head;     // [V, H] (the embedding when tie_word_embeddings)
  std::vector<MtpWeights> mtp;
  RopeFrequencies rope;     // derived from the config once
  double softmax_scale = 0;  // attention_softmax_scale(config)
};

// Binds and validates every tensor; throws dsv3::Error naming the file and tensor on any mismatch.
ModelWeights bind_weights(const ModelConfig& config, const TensorStore& store);

// Row gather: out[t, :] = table[tokens[t], :] as f32. Throws on an out-of-range token id.
void embedding_gather(const TensorView& table, const int32_t* tokens, int64_t n, float* out);

}  // namespace dsv3
