// Per-sequence state of a forward pass: the MLA latent KV cache and the scratch buffers the forward
// passes reuse (sized up front, grown only when a larger chunk arrives, so decoding does not allocate).
//
// MLA caches one latent row per token per layer (SPEC.md §1): c_kv (kv_lora_rank values, after
// kv_a_layernorm) followed by k_rope (qk_rope_head_dim values, already rotated) — shared by all heads.
// Rows are stored in f32 so that the f32 forward is exact; DeepSeek-V3 in BF16 would need 70,272
// bytes per token (model_stats), this cache needs twice that per layer. The MTP layers
// (model.layers.{N+k}) have their own rows and their own fill level.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"
#include "ops/linear.h"

namespace dsv3 {

// Scratch buffers of one forward chunk (f32). Sizes in comments; n = tokens in the chunk.
struct Scratch {
  int64_t n_capacity = 0;       // chunk size the buffers hold
  int64_t threads_capacity = 0; // per-thread buffers allocated for this many threads
  std::vector<float> x;         // [n, H] residual stream
  std::vector<float> normed;    // [n, H]
  std::vector<float> branch;    // [n, H] attention / FFN output
  std::vector<float> concat;    // [n, 2H] MTP input [enorm(emb); hnorm(h)]
  std::vector<float> rope_cos;  // [n, rope/2]
  std::vector<float> rope_sin;  // [n, rope/2]
  // MLA
  std::vector<float> q_a;       // [n, q_lora]
  std::vector<float> q;         // [n, heads·(nope+rope)]
  std::vector<float> kv_a;      // [n, kv_lora + rope]
  std::vector<float> heads_out; // [n, heads·v]
  std::vector<float> thread_scores;  // [threads, max_tokens]
  // FFN
  std::vector<float> router_logits;  // [n, E]
  std::vector<int32_t> expert_index; // [n, k]
  std::vector<float> expert_weight;  // [n, k]
  std::vector<int64_t> slot_row;     // [n, k] row of each (token, slot) in the expert-sorted buffers
  std::vector<int64_t> expert_count; // [E]
  std::vector<int64_t> expert_begin; // [E + 1]
  std::vector<float> sorted_x;       // [n·k, H]
  std::vector<float> sorted_y;       // [n·k, H]
  std::vector<float> ffn_gate;       // [max(n·k·moe_inter, n·n_shared·moe_inter, n·inter)]
  std::vector<float> ffn_up;         // same
  std::vector<float> shared_y;       // [n, H]
  // MLA attention (mla.cpp, grown there): prefill's context latents, their kv_b_proj rows and each
  // thread's scores; absorbed attention's latent queries and outputs.
  std::vector<float> attn_latent;    // [positions, kv_lora + rope] or [2, rows, heads, kv_lora]
  std::vector<float> attn_kvb;       // [positions, heads·(nope+v)]
  std::vector<float> attn_scores;    // [threads, n, positions]
  // The chosen routed experts' products (moe.cpp), each list run as one linear_group.
  std::vector<LinearCall> expert_in_calls;    // [2·E] gate and up projections
  std::vector<LinearCall> expert_down_calls;  // [E] down projections
  int64_t experts_run = 0;           // routed-expert runs so far (counted by moe_forward; benchmarks reset it)
  std::vector<float> head_out;       // [sequences, vocab] batched head logits (grown by forward_batch)

  // Grows the buffers to hold a chunk of n tokens attending over at most max_tokens positions.
  void reserve(const ModelConfig& config, int64_t n, int64_t max_tokens, int threads);
};

// The cache stores latent rows in pages of kKvPageTokens positions (64, as FlashMLA pages its cache),
// each page holding every layer: [num_layers][kKvPageTokens][row_size] f32. Position p of layer l lives
// in the (p / 64)-th mapped page. A cache either owns its pages (the first constructor: one sequence,
// as generate and chat use it) or maps pages owned elsewhere — a serving pool shares them between
// sequences and across requests (prefix caching), see src/serve/page_pool.h.
inline constexpr int64_t kKvPageTokens = 64;

class KVCache {
 public:
  // Owns ceil(max_tokens / 64) pages and its scratch buffers.
  KVCache(const ModelConfig& config, int64_t max_tokens);
  // Maps pages owned elsewhere (none until map_page) and uses `scratch`, which caches that never run
  // at the same time may share. Holds at most max_tokens positions.
  KVCache(const ModelConfig& config, int64_t max_tokens, Scratch& scratch);
  KVCache(const KVCache&) = delete;
  KVCache& operator=(const KVCache&) = delete;

  int64_t size() const { return size_; }  // positions cached in the main layers
  // Positions the mapped pages can hold (never more than max_tokens).
  int64_t capacity() const { return std::min(max_tokens_, int64_t(pages_.size()) * kKvPageTokens); }
  int64_t max_tokens() const { return max_tokens_; }
  // Forgets positions >= n in every layer (main and MTP); n <= size().
  void truncate(int64_t n);
  // Cache bytes one position takes over all layers this cache holds (main + MTP), as stored (f32).
  size_t bytes_per_token() const;

  int64_t num_layers() const { return num_layers_; }  // num_hidden_layers + num_nextn_predict_layers
  int64_t row_size() const { return row_size_; }      // kv_lora_rank + qk_rope_head_dim
  int64_t page_floats() const { return num_layers_ * kKvPageTokens * row_size_; }
  float* row(int64_t layer, int64_t pos) {
    return pages_[size_t(pos / kKvPageTokens)] + (layer * kKvPageTokens + pos % kKvPageTokens) * row_size_;
  }
  const float* row(int64_t layer, int64_t pos) const {
    return pages_[size_t(pos / kKvPageTokens)] + (layer * kKvPageTokens + pos % kKvPageTokens) * row_size_;
  }

  // Paging (caches over pages owned elsewhere): appends a page of page_floats() floats, holding the next
  // 64 positions; unmap_pages keeps the first `keep` pages and truncates the cache to what they hold.
  void map_page(float* page);
  void unmap_pages(int64_t keep);
  int64_t mapped_pages() const { return int64_t(pages_.size()); }

  // Fill level of MTP module k (its positions are main-model positions it has processed).
  int64_t mtp_size(int k) const { return mtp_size_.at(size_t(k)); }

  // Used by forward / mtp_forward after appending rows.
  void set_size(int64_t n);
  void set_mtp_size(int k, int64_t n);
  Scratch& scratch() { return *scratch_; }

 private:
  int64_t max_tokens_ = 0;
  int64_t num_layers_ = 0;
  int64_t row_size_ = 0;
  int64_t size_ = 0;
  std::vector<int64_t> mtp_size_;
  std::vector<float*> pages_;
  Tensor data_;  // the pages of a cache that owns them
  bool owns_pages_ = false;
  Scratch own_scratch_;
  Scratch* scratch_ = &own_scratch_;
};

}  // namespace dsv3
