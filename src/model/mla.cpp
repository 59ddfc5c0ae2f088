#include "model/mla.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "core/profiler.h"
#include "model/rope.h"
#include "ops/gemm.h"
#include "ops/ops.h"

namespace dsv3 {

namespace {

// Runs fn(item, thread) for items [0, n), item i on thread i % threads. Items are independent (one
// query token × head each), so results do not depend on the assignment; round-robin balances the
// causal prefill, where later tokens attend to more positions.
template <typename Fn>
void for_items(int64_t n, Fn&& fn) {
  parallel_run([&](int thread, int threads) {
    for (int64_t i = thread; i < n; i += threads) fn(i, thread);
  });
}

// Chunks of at least this many tokens (prefill) run attention as GEMMs in the naive form; shorter ones
// (decode, speculative steps) use the absorbed form over the latent cache.
constexpr int64_t kPrefillGemmMinTokens = 32;

struct Dims {
  int64_t heads, nope, rope, v, kv_lora, qk, row;
  explicit Dims(const ModelConfig& c)
      : heads(c.num_attention_heads),
        nope(c.qk_nope_head_dim),
        rope(c.qk_rope_head_dim),
        v(c.v_head_dim),
        kv_lora(c.kv_lora_rank),
        qk(c.qk_head_dim()),
        row(c.kv_lora_rank + c.qk_rope_head_dim) {}
};

// v grown to at least n floats (never shrunk: buffers of the scratch are reused from step to step).
float* at_least(std::vector<float>& v, int64_t n) {
  if (int64_t(v.size()) < n) v.resize(size_t(n));
  return v.data();
}

// Absorbed attention in the latent space, reading each sequence's cache rows directly. Runs the rows
// listed in `rows` (chunk rows whose segment index is in row_segment), all heads of each, in three
// passes: every row's query absorbed into the latent space (q_lat = W_UKᵀ q_nope), per head so each
// weight row is read once for all rows; attention of each (row, head) over its sequence's cache; the
// latent outputs expanded (out = W_UV o_lat), again per head. Each (row, head)'s arithmetic is the same
// whatever the other rows, so a sequence gets the same numbers batched or alone.
void absorbed_attention(const Dims& d, const AttentionWeights& w, const ChunkContext& chunk,
                        const std::vector<int32_t>& rows, const std::vector<int32_t>& row_segment, int64_t layer,
                        Scratch& s) {
  const float* wkvb = w.kv_b_f32.as<float>();  // [heads·(nope+v), kv_lora]
  const float scale = float(chunk.softmax_scale);
  const int64_t max_tokens = chunk.max_capacity();
  const int64_t n_rows = int64_t(rows.size()), L = d.kv_lora;
  // [heads, rows, kv_lora]: a head's rows adjacent (rows heads·kv_lora apart would alias in L1).
  float* q_lat = at_least(s.attn_latent, 2 * n_rows * d.heads * L);
  float* o_lat = q_lat + n_rows * d.heads * L;

  for_items(d.heads, [&](int64_t h, int) {
    const float* w_uk = wkvb + h * (d.nope + d.v) * L;  // [nope, kv_lora]
    for (int64_t r = 0; r < n_rows; ++r) std::memset(q_lat + (h * n_rows + r) * L, 0, size_t(L) * sizeof(float));
    for (int64_t i = 0; i < d.nope; ++i)
      for (int64_t r = 0; r < n_rows; ++r)
        axpy(s.q[size_t((rows[size_t(r)] * d.heads + h) * d.qk + i)], w_uk + i * L, q_lat + (h * n_rows + r) * L, L);
  });
  for_items(d.heads * n_rows, [&](int64_t item, int thread) {
    const int64_t r = item / d.heads, t = rows[size_t(r)], h = item % d.heads;
    const ChunkSegment& seg = chunk.segments[row_segment[size_t(t)]];
    const KVCache& cache = *seg.cache;
    const int64_t visible = seg.pos + (t - seg.row) + 1;  // causal: positions [0, pos + t]
    const float* q_rope = s.q.data() + (t * d.heads + h) * d.qk + d.nope;
    const float* ql = q_lat + (h * n_rows + r) * L;
    float* ol = o_lat + (h * n_rows + r) * L;
    float* scores = s.thread_scores.data() + int64_t(thread) * max_tokens;
    for (int64_t p = 0; p < visible; ++p) {
      const float* row = cache.row(layer, p);
      scores[p] = (dot_f32(ql, row, L) + dot_f32(q_rope, row + L, d.rope)) * scale;
    }
    softmax_inplace(scores, visible);
    std::memset(ol, 0, size_t(L) * sizeof(float));
    for (int64_t p = 0; p < visible; ++p) axpy(scores[p], cache.row(layer, p), ol, L);
  });
  for_items(d.heads, [&](int64_t h, int) {
    const float* w_uv = wkvb + (h * (d.nope + d.v) + d.nope) * L;  // [v, kv_lora]
    for (int64_t i = 0; i < d.v; ++i)
      for (int64_t r = 0; r < n_rows; ++r)
        s.heads_out[size_t((rows[size_t(r)] * d.heads + h) * d.v + i)] =
            dot_f32(o_lat + (h * n_rows + r) * L, w_uv + i * L, L);
  });
}

// Naive attention: expands keys and values of every visible position through kv_b_proj (reference path).
void naive_attention(const Dims& d, const AttentionWeights& w, const ChunkContext& chunk, const ChunkSegment& seg,
                     int64_t layer, Scratch& s) {
  const KVCache& cache = *seg.cache;
  const int64_t total = seg.pos + seg.n;
  std::vector<float> c_kv(size_t(total * d.kv_lora));
  for (int64_t p = 0; p < total; ++p)
    std::memcpy(c_kv.data() + p * d.kv_lora, cache.row(layer, p), size_t(d.kv_lora) * sizeof(float));
  const int64_t kvb_cols = d.heads * (d.nope + d.v);
  std::vector<float> kvb(size_t(total * kvb_cols));  // [total, heads·(nope+v)]: k_nope then v per head
  linear(w.kv_b_proj, c_kv.data(), kvb.data(), total, chunk.precision);

  const float scale = float(chunk.softmax_scale);
  const int64_t max_tokens = chunk.max_capacity();
  for_items(d.heads * seg.n, [&](int64_t item, int thread) {
    const int64_t t = seg.row + item / d.heads, h = item % d.heads;
    const int64_t visible = seg.pos + (t - seg.row) + 1;
    const float* q_nope = s.q.data() + (t * d.heads + h) * d.qk;
    const float* q_rope = q_nope + d.nope;
    float* scores = s.thread_scores.data() + int64_t(thread) * max_tokens;
    for (int64_t p = 0; p < visible; ++p) {
      const float* k_nope = kvb.data() + p * kvb_cols + h * (d.nope + d.v);
      const float* k_rope = cache.row(layer, p) + d.kv_lora;
      scores[p] = (dot_f32(q_nope, k_nope, d.nope) + dot_f32(q_rope, k_rope, d.rope)) * scale;
    }
    softmax_inplace(scores, visible);
    float* out = s.heads_out.data() + (t * d.heads + h) * d.v;
    std::memset(out, 0, size_t(d.v) * sizeof(float));
    for (int64_t p = 0; p < visible; ++p)
      axpy(scores[p], kvb.data() + p * kvb_cols + h * (d.nope + d.v) + d.nope, out, d.v);
  });
}

// Prefill attention as matrix products: the naive formulation (keys and values expanded through
// kv_b_proj), which needs ~3x fewer FLOPs than the absorbed one when many queries share the keys, as
// serving engines do for prefill. Per head: scores = Q_h·K_hᵀ over every visible position, the causal
// mask and softmax row by row, then out = P·V_h. The masked half of the score matrix is computed and
// discarded: the GEMM is still far faster than per-query loops. Decode never comes here.
void prefill_attention_gemm(const Dims& d, const AttentionWeights& w, const ChunkContext& chunk,
                            const ChunkSegment& seg, int64_t layer, Scratch& s) {
  const KVCache& cache = *seg.cache;
  const int64_t n = seg.n, total = seg.pos + seg.n;
  // The segment's whole context decompressed: c_kv of every cached position through kv_b_proj gives
  // [total, heads·(nope+v)] (k_nope then v per head); k_rope [total, rope] is shared by all heads.
  // Buffers live in the scratch (grown, never shrunk), so repeated prefills do not fault in fresh pages.
  float* c_kv = at_least(s.attn_latent, total * (d.kv_lora + d.rope));
  float* k_rope = c_kv + total * d.kv_lora;
  for (int64_t p = 0; p < total; ++p) {
    std::memcpy(c_kv + p * d.kv_lora, cache.row(layer, p), size_t(d.kv_lora) * sizeof(float));
    std::memcpy(k_rope + p * d.rope, cache.row(layer, p) + d.kv_lora, size_t(d.rope) * sizeof(float));
  }
  const int64_t kvb_cols = d.heads * (d.nope + d.v);
  float* kvb = at_least(s.attn_kvb, total * kvb_cols);
  linear(w.kv_b_proj, c_kv, kvb, total, chunk.precision);
  float* all_scores = at_least(s.attn_scores, int64_t(num_threads()) * n * total);

  // Heads split over threads, each head's GEMMs single-threaded on strided views (no gathers):
  // scores = Q_nope·K_nopeᵀ + Q_rope·K_ropeᵀ [n, total], causal softmax, O_h = P·V_h into heads_out.
  const float scale = float(chunk.softmax_scale);
  const float* q = s.q.data() + seg.row * d.heads * d.qk;
  float* heads_out = s.heads_out.data() + seg.row * d.heads * d.v;
  const int64_t q_stride = d.heads * d.qk, out_stride = d.heads * d.v;
  parallel_run([&](int thread, int threads) {
    float* scores = all_scores + int64_t(thread) * n * total;
    for (int64_t h = d.heads * thread / threads; h < d.heads * (thread + 1) / threads; ++h) {
      const float* k_nope = kvb + h * (d.nope + d.v);
      gemm(Trans::no, Trans::yes, n, total, d.nope, 1.0f, q + h * d.qk, q_stride, k_nope, kvb_cols, 0.0f, scores,
           total);
      gemm(Trans::no, Trans::yes, n, total, d.rope, 1.0f, q + h * d.qk + d.nope, q_stride, k_rope, d.rope, 1.0f,
           scores, total);
      for (int64_t t = 0; t < n; ++t) {
        float* row = scores + t * total;
        const int64_t visible = seg.pos + t + 1;  // causal: positions [0, pos + t]
        scale_inplace(row, scale, visible);
        softmax_inplace(row, visible);
        std::fill(row + visible, row + total, 0.0f);
      }
      gemm(Trans::no, Trans::no, n, d.v, total, 1.0f, scores, total, k_nope + d.nope, kvb_cols, 0.0f,
           heads_out + h * d.v, out_stride);
    }
  });
}

}  // namespace

int64_t ChunkContext::max_capacity() const {
  int64_t most = 0;
  for (int64_t i = 0; i < num_segments; ++i) most = std::max(most, segments[i].cache->capacity());
  return most;
}

void mla_forward(const ModelConfig& config, const AttentionWeights& w, const ChunkContext& chunk, int64_t layer,
                 Scratch& s, const float* x, float* out) {
  const Dims d(config);
  const int64_t n = chunk.n;
  int64_t rows_seen = 0;
  for (int64_t i = 0; i < chunk.num_segments; ++i) {
    const ChunkSegment& seg = chunk.segments[i];
    DSV3_CHECK(seg.cache != nullptr && seg.row == rows_seen && seg.n > 0, "[mla] segment ", i,
               " of the chunk is malformed (rows must follow each other)");
    DSV3_CHECK(seg.pos >= 0 && seg.pos + seg.n <= seg.cache->capacity(), "[mla] positions [", seg.pos, ", ",
               seg.pos + seg.n, ") exceed the KV cache capacity of ", seg.cache->capacity(), " tokens");
    DSV3_CHECK(layer >= 0 && layer < seg.cache->num_layers(), "[mla] cache layer ", layer, " out of range");
    rows_seen += seg.n;
  }
  DSV3_CHECK(rows_seen == n, "[mla] segments hold ", rows_seen, " rows, the chunk ", n);
  s.reserve(config, n, chunk.max_capacity(), num_threads());
  const float eps = float(config.rms_norm_eps);
  const Precision prec = chunk.precision;

  // Queries: [n, heads·(nope+rope)].
  std::optional<ProfileZone> zone(std::in_place, "attn.projections");
  if (w.q_lora) {
    const int64_t q_lora = w.q_a_proj.rows;
    linear(w.q_a_proj, x, s.q_a.data(), n, prec);
    rmsnorm(s.q_a.data(), w.q_a_layernorm.as<float>(), eps, s.q_a.data(), n, q_lora);
    linear(w.q_b_proj, s.q_a.data(), s.q.data(), n, prec);
  } else {
    linear(w.q_proj, x, s.q.data(), n, prec);
  }

  // Latent KV of the chunk -> each segment's cache rows (c_kv normalised, k_rope rotated).
  linear(w.kv_a_proj_with_mqa, x, s.kv_a.data(), n, prec);
  zone.emplace("attn.core");
  const int64_t half = d.rope / 2;
  for (int64_t i = 0; i < chunk.num_segments; ++i) {
    const ChunkSegment& seg = chunk.segments[i];
    for (int64_t t = seg.row; t < seg.row + seg.n; ++t) {
      const float* src = s.kv_a.data() + t * d.row;
      float* row = seg.cache->row(layer, seg.pos + (t - seg.row));
      rmsnorm(src, w.kv_a_layernorm.as<float>(), eps, row, 1, d.kv_lora);
      std::memcpy(row + d.kv_lora, src + d.kv_lora, size_t(d.rope) * sizeof(float));
      rope_rotate(row + d.kv_lora, chunk.rope_cos + t * half, chunk.rope_sin + t * half, half);
    }
  }
  for (int64_t t = 0; t < n; ++t)
    for (int64_t h = 0; h < d.heads; ++h)
      rope_rotate(s.q.data() + (t * d.heads + h) * d.qk + d.nope, chunk.rope_cos + t * half,
                  chunk.rope_sin + t * half, half);

  // Attention, per sequence: long absorbed-mode segments (prefill) as GEMMs one segment at a time; the
  // rows of every short one (decode, speculative verification) together in latent space.
  thread_local std::vector<int32_t> absorbed_rows, row_segment;
  absorbed_rows.clear();
  row_segment.assign(size_t(n), 0);
  for (int64_t i = 0; i < chunk.num_segments; ++i) {
    const ChunkSegment& seg = chunk.segments[i];
    if (chunk.attention == AttentionImpl::naive) {
      naive_attention(d, w, chunk, seg, layer, s);
    } else if (seg.n >= kPrefillGemmMinTokens) {
      prefill_attention_gemm(d, w, chunk, seg, layer, s);
    } else {
      for (int64_t t = seg.row; t < seg.row + seg.n; ++t) {
        absorbed_rows.push_back(int32_t(t));
        row_segment[size_t(t)] = int32_t(i);
      }
    }
  }
  if (!absorbed_rows.empty()) absorbed_attention(d, w, chunk, absorbed_rows, row_segment, layer, s);
  zone.emplace("attn.projections");

  linear(w.o_proj, s.heads_out.data(), out, n, prec);
}

}  // namespace dsv3
