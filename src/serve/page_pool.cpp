#include "serve/page_pool.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace dsv3 {

PagePool::PagePool(const ModelConfig& config, int64_t num_pages) {
  const int64_t layers = config.num_hidden_layers + config.num_nextn_predict_layers;
  page_floats_ = layers * kKvPageTokens * (config.kv_lora_rank + config.qk_rope_head_dim);
  DSV3_CHECK(num_pages > 0 && num_pages < (int64_t(1) << 31), "[page_pool] the pool needs 1 to 2^31 pages, got ",
             num_pages);
  DSV3_CHECK(page_floats_ > 0, "[page_pool] the model has no attention layers to cache");
  data_ = Tensor(DType::F32, {num_pages, page_floats_});
  pages_.resize(size_t(num_pages));
  // Handed out in increasing order (free_ is a stack).
  for (int64_t i = num_pages - 1; i >= 0; --i) free_.push_back(PageId(i));
}

std::optional<PageId> PagePool::allocate() {
  PageId id;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
  } else if (!lru_.empty()) {
    id = lru_.front();
    lru_.pop_front();
    unpublish(id);
    ++evictions_;
  } else {
    return std::nullopt;
  }
  pages_[size_t(id)].refs = 1;
  return id;
}

void PagePool::retain(PageId id) {
  Page& p = pages_.at(size_t(id));
  if (p.refs == 0) {
    DSV3_CHECK(p.published, "[page_pool] page ", id, " is free; allocate it instead of retaining it");
    lru_.erase(p.idle);
  }
  ++p.refs;
}

void PagePool::release(PageId id) {
  Page& p = pages_.at(size_t(id));
  DSV3_CHECK(p.refs > 0, "[page_pool] page ", id, " released more often than referenced");
  if (--p.refs > 0) return;
  if (p.published) {
    p.idle = lru_.insert(lru_.end(), id);
  } else {
    free_.push_back(id);
  }
}

uint64_t PagePool::chain_hash(uint64_t parent, std::span<const int32_t> tokens) {
  // FNV-1a over the parent hash and the token ids, then a final avalanche (splitmix64's), so that chains
  // differing in one token anywhere get unrelated hashes. 0 is reserved for "no parent".
  uint64_t h = 14695981039346656037ull;
  const auto mix = [&h](uint64_t v) {
    for (int b = 0; b < 8; ++b) {
      h ^= (v >> (8 * b)) & 0xff;
      h *= 1099511628211ull;
    }
  };
  mix(parent);
  for (int32_t t : tokens) mix(uint64_t(uint32_t(t)));
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h == 0 ? 1 : h;
}

std::optional<PageId> PagePool::lookup(uint64_t parent, std::span<const int32_t> tokens) {
  const auto it = published_.find(chain_hash(parent, tokens));
  if (it != published_.end()) {
    const Page& p = pages_[size_t(it->second)];
    if (p.parent == parent && std::equal(p.tokens.begin(), p.tokens.end(), tokens.begin(), tokens.end())) {
      retain(it->second);
      ++hits_;
      return it->second;
    }
  }
  ++misses_;
  return std::nullopt;
}

void PagePool::publish(PageId id, uint64_t parent, std::span<const int32_t> tokens) {
  DSV3_CHECK(int64_t(tokens.size()) == kKvPageTokens, "[page_pool] only full pages are published (",
             tokens.size(), " tokens given)");
  Page& p = pages_.at(size_t(id));
  DSV3_CHECK(p.refs > 0, "[page_pool] page ", id, " must be referenced to be published");
  if (p.published) return;
  const uint64_t h = chain_hash(parent, tokens);
  if (published_.count(h)) return;
  p.published = true;
  p.hash = h;
  p.parent = parent;
  p.tokens.assign(tokens.begin(), tokens.end());
  published_.emplace(h, id);
}

void PagePool::unpublish(PageId id) {
  Page& p = pages_[size_t(id)];
  published_.erase(p.hash);
  p.published = false;
  p.tokens.clear();
}

PagePoolStats PagePool::stats() const {
  PagePoolStats s;
  s.pages = num_pages();
  s.free = int64_t(free_.size());
  s.cached_idle = int64_t(lru_.size());
  s.referenced = s.pages - s.free - s.cached_idle;
  s.prefix_hits = hits_;
  s.prefix_misses = misses_;
  s.evictions = evictions_;
  return s;
}

}  // namespace dsv3
