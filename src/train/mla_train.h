// Multi-head Latent Attention for training (SPEC.md §1; model/mla.h has the inference forms).
// Training uses the naive formulation over a batch of sequences, each attending causally to itself:
//   c_q = RMSNorm(W_qa x);  q = W_qb c_q   (or q = W_q x without q_lora)   -> q_nope | q_rope (RoPE)
//   [c_kv | k_rope] = W_kva x;  c_kv = RMSNorm(c_kv);  k_rope RoPE'd, shared by all heads
//   [k_nope | v] = W_kvb c_kv per head;  k = [k_nope | k_rope]
//   o_h = softmax(scale · q_h k_hᵀ + causal mask) v_h;   out = W_o [o_1 .. o_heads]
// with scale = attention_softmax_scale(config).
//
// Stored for backward (per token): the down-projections q_a = W_qa x (pre-norm, q_lora values) and
// kv_a = W_kva x (pre-norm, pre-RoPE, kv_lora + rope values), and the attention output o
// (heads·v values). Recomputed in backward, as DeepSeek does: both RMSNorms, the up-projections
// q = W_qb c_q and [k_nope | v] = W_kvb c_kv, RoPE, and the attention probabilities (scores
// recomputed with one GEMM per sequence and head, softmax redone). The block's input RMSNorm output x
// is recomputed by the caller.
#pragma once

#include <cstdint>

#include "model/config.h"
#include "train/train_model.h"
#include "train/train_ops.h"

namespace dsv3 {

template <typename T>
struct MlaSaved {
  T* q_a = nullptr;   // [n, q_lora] (null without q_lora)
  T* kv_a = nullptr;  // [n, kv_lora + rope]
  T* o = nullptr;     // [n, heads·v]
};

// Values per token that MlaSaved needs: q_lora + kv_lora + rope + heads·v.
int64_t mla_saved_per_token(const ModelConfig& config);

struct AttentionContext {
  SeqShape shape;
  const RopeTable* rope = nullptr;  // covers shape.seq positions
  double softmax_scale = 1.0;
  // Packed documents (null: one per sequence): per row b·seq + t, the position where its document
  // starts in the sequence. Position t then attends to [start, t] only, and its RoPE position is
  // t − start, as if each document were a sequence of its own.
  const int32_t* segment_start = nullptr;
};

// x: [rows, H] (input_layernorm output) -> out: [rows, H] (written).
template <typename T>
void mla_forward(const ModelConfig& config, const AttnParams<T>& w, const AttentionContext& ctx, const T* x,
                 MlaSaved<T> saved, Workspace<T>& ws, T* out);

// dx [rows, H] += ∂/∂x; dw += parameter gradients.
template <typename T>
void mla_backward(const ModelConfig& config, const AttnParams<T>& w, const AttnParams<T>& dw,
                  const AttentionContext& ctx, const T* x, const MlaSaved<T>& saved, const T* dout, Workspace<T>& ws,
                  T* dx);

}  // namespace dsv3
