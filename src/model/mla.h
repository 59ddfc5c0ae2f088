// Multi-head Latent Attention (SPEC.md §1; DeepSeek's inference/model.py class MLA).
//
//   q      = W_qb · RMSNorm(W_qa · x)      (or W_q · x when q_lora_rank is null), split per head into
//            q_nope [nope] and q_rope [rope] (rotated)
//   [c_kv, k_rope] = W_kva · x;  c_kv = RMSNorm(c_kv);  k_rope rotated, shared by all heads
//   cache  ← (c_kv, k_rope) for each position
//
// naive form (the reference): k_nope, v = W_kvb · c_kv for every cached position, standard attention.
// absorbed form (decode): W_kvb's key rows are folded into the query and its value rows applied after
// the weighted sum, so attention runs in the kv_lora-dimensional latent space over the cache directly:
//   q_lat = W_uk[h]ᵀ q_nope ;  score_s = (q_lat · c_kv_s + q_rope · k_rope_s) · softmax_scale
//   o_lat = Σ_s p_s c_kv_s ;   o[h] = W_uv[h] · o_lat ;   out = W_o · concat_h o[h]
// Both are causal within a sequence: its token t at position pos + t attends to positions <= pos + t of
// its own cache; sequences batched in one chunk never see each other.
// The attention core (scores, softmax, weighted sums) is f32; `precision` applies to the projections.
#pragma once

#include <cstdint>

#include "model/config.h"
#include "model/kv_cache.h"
#include "model/weights.h"
#include "ops/linear.h"

namespace dsv3 {

// absorbed: the generation default. Decode steps (and chunks under 32 tokens) attend in latent space
//   over the cache; prefill chunks of 32+ tokens run the naive formulation as GEMMs (fewer FLOPs when
//   many queries share the keys, as serving engines do for prefill).
// naive: the reference path — keys and values expanded through kv_b_proj, per-query loops.
enum class AttentionImpl { absorbed, naive };

// One sequence's part of a chunk: rows [row, row + n) of the chunk are positions [pos, pos + n) of
// `cache`. A chunk is one sequence's prompt piece (forward) or the rows of several sequences run as one
// batch (forward_batch: projections and experts see every row, attention each sequence's own cache).
struct ChunkSegment {
  KVCache* cache = nullptr;
  int64_t pos = 0;
  int64_t n = 0;
  int64_t row = 0;
};

// What one chunk of tokens shares across layers.
struct ChunkContext {
  const ChunkSegment* segments = nullptr;
  int64_t num_segments = 0;
  int64_t n = 0;                    // rows in the chunk: the segments' n summed
  const float* rope_cos = nullptr;  // [n, rope/2], row by row (each row at its own position)
  const float* rope_sin = nullptr;  // [n, rope/2]
  double softmax_scale = 1.0;
  Precision precision = Precision::bf16;
  AttentionImpl attention = AttentionImpl::absorbed;
  // The largest position count any segment's cache holds (sizes the per-thread score buffers).
  int64_t max_capacity() const;
};

// x: [n, H] (already input_layernorm'ed) -> out: [n, H]. Writes each segment's latent rows to layer
// `cache_layer` of its cache at positions [pos, pos + n); each segment attends to positions
// [0, pos + n) of its own cache. `scratch` holds buffers for n rows (Scratch::reserve).
void mla_forward(const ModelConfig& config, const AttentionWeights& w, const ChunkContext& chunk,
                 int64_t cache_layer, Scratch& scratch, const float* x, float* out);

}  // namespace dsv3
