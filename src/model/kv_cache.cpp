#include "model/kv_cache.h"

#include <algorithm>

#include "core/error.h"

namespace dsv3 {

namespace {
template <typename T>
void grow(std::vector<T>& v, int64_t n) {
  if (int64_t(v.size()) < n) v.resize(size_t(n));
}
}  // namespace

void Scratch::reserve(const ModelConfig& c, int64_t n, int64_t max_tokens, int threads) {
  const int64_t H = c.hidden_size;
  const int64_t heads = c.num_attention_heads;
  if (n > n_capacity) {
    grow(x, n * H);
    grow(normed, n * H);
    grow(branch, n * H);
    grow(concat, n * 2 * H);
    grow(rope_cos, n * c.qk_rope_head_dim / 2);
    grow(rope_sin, n * c.qk_rope_head_dim / 2);
    grow(q_a, n * c.q_lora_rank.value_or(0));
    grow(q, n * heads * c.qk_head_dim());
    grow(kv_a, n * (c.kv_lora_rank + c.qk_rope_head_dim));
    grow(heads_out, n * heads * c.v_head_dim);
    const int64_t E = c.n_routed_experts, k = c.num_experts_per_tok;
    grow(router_logits, n * E);
    grow(expert_index, n * k);
    grow(expert_weight, n * k);
    grow(slot_row, n * k);
    grow(expert_count, E);
    grow(expert_begin, E + 1);
    expert_in_calls.reserve(size_t(2 * E));
    expert_down_calls.reserve(size_t(E));
    grow(sorted_x, n * k * H);
    grow(sorted_y, n * k * H);
    const int64_t ffn = std::max({n * k * c.moe_intermediate_size, n * c.n_shared_experts * c.moe_intermediate_size,
                                  n * c.intermediate_size});
    grow(ffn_gate, ffn);
    grow(ffn_up, ffn);
    grow(shared_y, n * H);
    n_capacity = n;
  }
  if (threads > threads_capacity || int64_t(thread_scores.size()) < threads * max_tokens) {
    grow(thread_scores, int64_t(threads) * max_tokens);
    threads_capacity = threads;
  }
}

KVCache::KVCache(const ModelConfig& config, int64_t max_tokens, Scratch& scratch)
    : max_tokens_(max_tokens),
      num_layers_(config.num_hidden_layers + config.num_nextn_predict_layers),
      row_size_(config.kv_lora_rank + config.qk_rope_head_dim),
      mtp_size_(size_t(config.num_nextn_predict_layers), 0),
      scratch_(&scratch) {
  DSV3_CHECK(max_tokens > 0, "[kv_cache] max_tokens must be positive, got ", max_tokens);
  DSV3_CHECK(row_size_ > 0 && num_layers_ > 0, "[kv_cache] config has no attention layers to cache");
}

KVCache::KVCache(const ModelConfig& config, int64_t max_tokens) : KVCache(config, max_tokens, own_scratch_) {
  const int64_t pages = (max_tokens + kKvPageTokens - 1) / kKvPageTokens;
  data_ = Tensor(DType::F32, {pages, page_floats()});
  owns_pages_ = true;
  for (int64_t i = 0; i < pages; ++i) pages_.push_back(data_.as<float>() + i * page_floats());
}

void KVCache::map_page(float* page) {
  DSV3_CHECK(page != nullptr, "[kv_cache] null page");
  DSV3_CHECK(!owns_pages_, "[kv_cache] this cache owns its pages; it cannot map others");
  pages_.push_back(page);
}

void KVCache::unmap_pages(int64_t keep) {
  DSV3_CHECK(!owns_pages_, "[kv_cache] this cache owns its pages; it cannot unmap them");
  DSV3_CHECK(keep >= 0 && keep <= mapped_pages(), "[kv_cache] cannot keep ", keep, " of ", mapped_pages(), " pages");
  pages_.resize(size_t(keep));
  truncate(std::min(size_, capacity()));
}

void KVCache::truncate(int64_t n) {
  DSV3_CHECK(n >= 0 && n <= size_, "[kv_cache] cannot truncate to ", n, " positions: the cache holds ", size_);
  size_ = n;
  for (int64_t& m : mtp_size_) m = std::min(m, n);
}

size_t KVCache::bytes_per_token() const { return size_t(num_layers_ * row_size_) * sizeof(float); }

void KVCache::set_size(int64_t n) {
  DSV3_CHECK(n >= 0 && n <= capacity(), "[kv_cache] ", n, " positions exceed the cache capacity of ", capacity(),
             " tokens; create the KVCache with a larger max_tokens.");
  size_ = n;
}

void KVCache::set_mtp_size(int k, int64_t n) {
  DSV3_CHECK(k >= 0 && size_t(k) < mtp_size_.size(), "[kv_cache] no MTP module ", k);
  DSV3_CHECK(n >= 0 && n <= capacity(), "[kv_cache] ", n, " MTP positions exceed the cache capacity of ", capacity(),
             " tokens; create the KVCache with a larger max_tokens.");
  mtp_size_[size_t(k)] = n;
}

}  // namespace dsv3
