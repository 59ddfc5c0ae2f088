// The serving pool of latent-KV pages, shared by every sequence the server runs, with prefix caching.
//
// A page holds kKvPageTokens (64) consecutive positions of one sequence in every layer (kv_cache.h);
// MLA's latent rows (kv_lora_rank + qk_rope_head_dim values per token per layer, SPEC.md §1) make a
// page small, so one machine holds many conversations. The pool's size is fixed at start (--kv-pages):
// memory is bounded by the flags, never by the traffic.
//
// Prefix caching: a full page is published under the hash of its token chain — the hash of the previous
// page's chain and this page's 64 tokens — so it names the whole prefix up to its end, not only its own
// tokens. A later sequence whose tokens start with the same chain maps the published pages instead of
// computing them (a system prompt, the earlier turns of a chat). Pages are reference-counted; a
// published page nobody references stays cached until its memory is needed, and is then reclaimed in
// least-recently-used order. Lookups compare the stored tokens and parent, so a hash collision is a
// miss, never wrong rows.
//
// Not thread-safe: the scheduler thread owns it.
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"
#include "model/kv_cache.h"

namespace dsv3 {

using PageId = int32_t;

struct PagePoolStats {
  int64_t pages = 0;          // in the pool
  int64_t referenced = 0;     // mapped by at least one sequence
  int64_t cached_idle = 0;    // published, unreferenced: reusable by a prefix hit or reclaimable
  int64_t free = 0;           // never used or reclaimed
  int64_t prefix_hits = 0;    // pages supplied by lookups (cumulative)
  int64_t prefix_misses = 0;  // lookups that found nothing (cumulative)
  int64_t evictions = 0;      // idle cached pages reclaimed for new use (cumulative)
};

class PagePool {
 public:
  PagePool(const ModelConfig& config, int64_t num_pages);

  int64_t num_pages() const { return int64_t(pages_.size()); }
  int64_t page_floats() const { return page_floats_; }
  size_t bytes() const { return size_t(data_.numel()) * sizeof(float); }
  float* page(PageId id) { return data_.as<float>() + int64_t(id) * page_floats_; }

  // Pages a caller could obtain now: free plus idle cached ones.
  int64_t available() const { return int64_t(free_.size() + lru_.size()); }
  // A page for new rows, referenced once: a free page, else the least recently used idle cached page
  // (which leaves the prefix cache). nullopt when every page is referenced.
  std::optional<PageId> allocate();
  void retain(PageId id);
  // Drops a reference; at zero a published page becomes idle cached, any other page free.
  void release(PageId id);
  int32_t refs(PageId id) const { return pages_.at(size_t(id)).refs; }

  // The chain hash of a page holding `tokens` (64) after the page whose chain hash is `parent`
  // (0 for the first page of a sequence).
  static uint64_t chain_hash(uint64_t parent, std::span<const int32_t> tokens);
  // The published page for this chain, referenced once more; nullopt on a miss.
  std::optional<PageId> lookup(uint64_t parent, std::span<const int32_t> tokens);
  // Publishes a full page (its 64 positions written in every main layer) under its chain. A chain that
  // is already published keeps its first page; this one stays private to its sequence.
  void publish(PageId id, uint64_t parent, std::span<const int32_t> tokens);

  PagePoolStats stats() const;

 private:
  struct Page {
    int32_t refs = 0;
    bool published = false;
    uint64_t hash = 0, parent = 0;
    std::vector<int32_t> tokens;        // of a published page
    std::list<PageId>::iterator idle;   // position in lru_ while published and unreferenced
  };
  void unpublish(PageId id);

  int64_t page_floats_ = 0;
  Tensor data_;
  std::vector<Page> pages_;
  std::vector<PageId> free_;
  std::list<PageId> lru_;  // idle published pages, least recently used first
  std::unordered_map<uint64_t, PageId> published_;
  int64_t hits_ = 0, misses_ = 0, evictions_ = 0;
};

}  // namespace dsv3
