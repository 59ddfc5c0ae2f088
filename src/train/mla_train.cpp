#include "train/mla_train.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/profiler.h"
#include "ops/ops.h"
#include "core/error.h"
#include "core/parallel.h"

namespace dsv3 {

namespace {

struct Dims {
  int64_t hidden, heads, nope, rope, v, kv_lora, q_lora, qk, q_width, kv_a_width, kvb_width, o_width;
  explicit Dims(const ModelConfig& c)
      : hidden(c.hidden_size),
        heads(c.num_attention_heads),
        nope(c.qk_nope_head_dim),
        rope(c.qk_rope_head_dim),
        v(c.v_head_dim),
        kv_lora(c.kv_lora_rank),
        q_lora(c.q_lora_rank.value_or(0)),
        qk(c.qk_head_dim()),
        q_width(heads * qk),
        kv_a_width(kv_lora + rope),
        kvb_width(heads * (nope + v)),
        o_width(heads * v) {}
};

// The recomputable tensors of one layer's attention for `n` rows.
template <typename T>
struct Projected {
  T* c_q = nullptr;   // [n, q_lora] RMSNorm(q_a) (q_lora only)
  T* q = nullptr;     // [n, heads·qk] with RoPE applied to the q_rope parts
  T* c_kv = nullptr;  // [n, kv_lora] RMSNorm(kv_a[:, :kv_lora])
  T* kvb = nullptr;   // [n, heads·(nope+v)] W_kvb c_kv: k_nope | v per head
  T* k = nullptr;     // [n, heads·qk] k_nope | RoPE(k_rope) per head
};

// Everything after the stored down-projections (q_a, kv_a): norms, up-projections, RoPE, key assembly.
// Without q_lora the query projection is applied to x here too.
template <typename T>
Projected<T> project(const ModelConfig& c, const Dims& d, const AttnParams<T>& w, const AttentionContext& ctx,
                     const T* x, const MlaSaved<T>& saved, Workspace<T>& ws) {
  const int64_t n = ctx.shape.rows();
  const double eps = c.rms_norm_eps;
  Projected<T> p;
  p.q = ws.take(n * d.q_width);
  if (d.q_lora > 0) {
    p.c_q = ws.take(n * d.q_lora);
    rmsnorm_forward(saved.q_a, d.q_lora, w.q_a_layernorm, n, d.q_lora, eps, p.c_q, d.q_lora);
    linear_forward(ws, p.c_q, w.q_b_proj, n, d.q_lora, d.q_width, p.q);
  } else {
    linear_forward(ws, x, w.q_proj, n, d.hidden, d.q_width, p.q);
  }
  rope_forward(p.q + d.nope, n, ctx.shape.seq, d.heads, d.q_width, d.qk, *ctx.rope, ctx.segment_start);

  p.c_kv = ws.take(n * d.kv_lora);
  rmsnorm_forward(saved.kv_a, d.kv_a_width, w.kv_a_layernorm, n, d.kv_lora, eps, p.c_kv, d.kv_lora);
  p.kvb = ws.take(n * d.kvb_width);
  linear_forward(ws, p.c_kv, w.kv_b_proj, n, d.kv_lora, d.kvb_width, p.kvb);
  p.k = ws.take(n * d.q_width);
  parallel_for(n, 16, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      T* k_rope = p.k + r * d.q_width + d.nope;  // head 0's slot: rotate once, copy to the others
      std::memcpy(k_rope, saved.kv_a + r * d.kv_a_width + d.kv_lora, size_t(d.rope) * sizeof(T));
      for (int64_t h = 0; h < d.heads; ++h)
        std::memcpy(p.k + r * d.q_width + h * d.qk, p.kvb + r * d.kvb_width + h * (d.nope + d.v),
                    size_t(d.nope) * sizeof(T));
    }
  });
  rope_forward(p.k + d.nope, n, ctx.shape.seq, 1, d.q_width, d.qk, *ctx.rope, ctx.segment_start);
  parallel_for(n, 16, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r)
      for (int64_t h = 1; h < d.heads; ++h)
        std::memcpy(p.k + r * d.q_width + h * d.qk + d.nope, p.k + r * d.q_width + d.nope, size_t(d.rope) * sizeof(T));
  });
  return p;
}

// Runs fn(item, thread) for items [0, n), item i on thread i % threads (items are independent).
template <typename Fn>
void for_items(int64_t n, Fn&& fn) {
  parallel_run([&](int thread, int threads) {
    for (int64_t i = thread; i < n; i += threads) fn(i, thread);
  });
}

// The causal attention core of one sequence and head, in blocks of query rows: block [r0, r1) attends to
// keys [0, r1), so the blocks above the diagonal are never computed (about 5/8 of the full square at
// 4 blocks). Buffers hold one block: [kQueryBlock, seq].
constexpr int64_t kQueryBlock = 128;

// A [rows, cols] block (row stride ld) as a kept-GEMM operand, rounded into per-thread buffer `slot` when
// the step's kept GEMMs run in bf16 (P and dS each feed two GEMMs in the backward pass).
template <typename T>
KeptOperand<T> rounded_block(ComputePrecision precision, const T* x, int64_t rows, int64_t cols, int64_t ld, int slot) {
  KeptOperand<T> op{x, ld};
  if constexpr (std::is_same_v<T, float>) {
    if (precision != ComputePrecision::f32) {
      thread_local std::vector<uint16_t> buffers[2];
      std::vector<uint16_t>& buffer = buffers[slot];
      buffer.resize(size_t(rows * cols));
      f32_to_bf16_2d(x, rows, cols, ld, buffer.data());
      op.bf16 = buffer.data();
      op.ld = cols;
    }
  }
  return op;
}

// P[i, 0..r1) = causal softmax(scale · q_i · K[0..r1)ᵀ) for query rows i in [r0, r1), row i - r0 of p
// (stride seq); entries above the diagonal are zero.
// With packed documents (start: the sequence's AttentionContext::segment_start), row i covers only
// [start[i], i] and is zero before it.
template <typename T>
void block_probs(ComputePrecision precision, const KeptOperand<T>& q, const KeptOperand<T>& k, int64_t r0, int64_t r1,
                 int64_t seq, int64_t qk, double scale, const int32_t* start, T* p) {
  kept_gemm(precision, Trans::no, Trans::yes, r1 - r0, r1, qk, T(scale), q.at(r0 * q.ld), k, T(0), p, seq);
  for (int64_t i = r0; i < r1; ++i) {
    T* row = p + (i - r0) * seq;
    const int64_t s0 = start ? start[i] : 0;
    std::fill(row, row + s0, T(0));
    softmax_row(row + s0, i + 1 - s0);
    std::fill(row + i + 1, row + r1, T(0));
  }
}

// o[0..seq) = P · V for one item (o has stride ldo).
template <typename T>
void attention_item_forward(ComputePrecision precision, const KeptOperand<T>& q, const KeptOperand<T>& k,
                            const KeptOperand<T>& v, int64_t seq, int64_t qk, int64_t dv, double scale,
                            const int32_t* start, T* p, T* o, int64_t ldo) {
  for (int64_t r0 = 0; r0 < seq; r0 += kQueryBlock) {
    const int64_t r1 = std::min(seq, r0 + kQueryBlock);
    block_probs(precision, q, k, r0, r1, seq, qk, scale, start, p);
    kept_gemm(precision, Trans::no, Trans::no, r1 - r0, dv, r1, T(1), rounded_block(precision, p, r1 - r0, r1, seq, 0),
              v, T(0), o + r0 * ldo, ldo);
  }
}

// The gradients of one item: dq written, dk and dv written (summed over the query blocks in order).
//   dP = dO · Vᵀ;  dS = P ⊙ (dP − rowsum(dO ⊙ O))  (the softmax Jacobian: rowsum(P ⊙ dP) = dO·O)
//   dQ = scale · dS · K;  dK = scale · dSᵀ · Q;  dV = Pᵀ · dO
template <typename T>
void attention_item_backward(ComputePrecision precision, const KeptOperand<T>& q, const KeptOperand<T>& k,
                             const KeptOperand<T>& v, const KeptOperand<T>& d_o, const T* o, int64_t ldo, int64_t seq,
                             int64_t qk, int64_t dv, double scale, const int32_t* start, T* p, T* ds, T* dq, T* dk,
                             int64_t ldqk, T* dvv, int64_t ldv) {
  for (int64_t r0 = 0; r0 < seq; r0 += kQueryBlock) {
    const int64_t r1 = std::min(seq, r0 + kQueryBlock), rows = r1 - r0;
    block_probs(precision, q, k, r0, r1, seq, qk, scale, start, p);
    kept_gemm(precision, Trans::no, Trans::yes, rows, r1, dv, T(1), d_o.at(r0 * d_o.ld), v, T(0), ds, seq);
    for (int64_t i = r0; i < r1; ++i) {
      const T row_dot = dot(d_o.values + i * d_o.ld, o + i * ldo, dv);
      T* dsi = ds + (i - r0) * seq;
      const T* pi = p + (i - r0) * seq;
      for (int64_t j = 0; j <= i; ++j) dsi[j] = pi[j] * (dsi[j] - row_dot);
      std::fill(dsi + i + 1, dsi + r1, T(0));
    }
    const KeptOperand<T> dsm = rounded_block(precision, ds, rows, r1, seq, 0);
    const KeptOperand<T> pm = rounded_block(precision, p, rows, r1, seq, 1);
    const T beta = r0 == 0 ? T(0) : T(1);  // rows [0, r0) of dk and dv hold earlier blocks' sums
    kept_gemm(precision, Trans::no, Trans::no, rows, qk, r1, T(scale), dsm, k, T(0), dq + r0 * ldqk, ldqk);
    kept_gemm(precision, Trans::yes, Trans::no, r0, qk, rows, T(scale), dsm, q.at(r0 * q.ld), beta, dk, ldqk);
    kept_gemm(precision, Trans::yes, Trans::no, rows, qk, rows, T(scale), dsm.at(r0), q.at(r0 * q.ld), T(0),
              dk + r0 * ldqk, ldqk);
    kept_gemm(precision, Trans::yes, Trans::no, r0, dv, rows, T(1), pm, d_o.at(r0 * d_o.ld), beta, dvv, ldv);
    kept_gemm(precision, Trans::yes, Trans::no, rows, dv, rows, T(1), pm.at(r0), d_o.at(r0 * d_o.ld), T(0),
              dvv + r0 * ldv, ldv);
  }
}

}  // namespace

int64_t mla_saved_per_token(const ModelConfig& c) {
  return c.q_lora_rank.value_or(0) + c.kv_lora_rank + c.qk_rope_head_dim + c.num_attention_heads * c.v_head_dim;
}

template <typename T>
void mla_forward(const ModelConfig& c, const AttnParams<T>& w, const AttentionContext& ctx, const T* x,
                 MlaSaved<T> saved, Workspace<T>& ws, T* out) {
  DSV3_ZONE("mla.forward");
  const Dims d(c);
  const int64_t n = ctx.shape.rows(), seq = ctx.shape.seq;
  DSV3_CHECK(ctx.rope != nullptr && ctx.rope->positions >= seq, "[train] attention needs a RoPE table for ", seq,
             " positions");
  typename Workspace<T>::Scope scope(ws);
  if (d.q_lora > 0) linear_forward(ws, x, w.q_a_proj, n, d.hidden, d.q_lora, saved.q_a);
  linear_forward(ws, x, w.kv_a_proj_with_mqa, n, d.hidden, d.kv_a_width, saved.kv_a);
  const Projected<T> p = project(c, d, w, ctx, x, saved, ws);

  // Attention core per sequence and head; q, k and v are rounded once here when the GEMMs run in bf16.
  T* probs = ws.take(int64_t(num_threads()) * kQueryBlock * seq);
  const ComputePrecision precision = ws.precision();
  const KeptOperand<T> q_all{p.q, d.q_width, round_for_kept_gemms(ws, p.q, n, d.q_width)};
  const KeptOperand<T> k_all{p.k, d.q_width, round_for_kept_gemms(ws, p.k, n, d.q_width)};
  const KeptOperand<T> kvb_all{p.kvb, d.kvb_width, round_for_kept_gemms(ws, p.kvb, n, d.kvb_width)};
  DSV3_ZONE("mla.core.forward");
  for_items(ctx.shape.batch * d.heads, [&](int64_t item, int thread) {
    const int64_t b = item / d.heads, h = item % d.heads;
    const int64_t row0 = b * seq;
    attention_item_forward(precision, q_all.at(row0 * d.q_width + h * d.qk), k_all.at(row0 * d.q_width + h * d.qk),
                           kvb_all.at(row0 * d.kvb_width + h * (d.nope + d.v) + d.nope), seq, d.qk, d.v,
                           ctx.softmax_scale, ctx.segment_start ? ctx.segment_start + row0 : nullptr,
                           probs + int64_t(thread) * kQueryBlock * seq,
                           saved.o + row0 * d.o_width + h * d.v, d.o_width);
  });
  linear_forward(ws, saved.o, w.o_proj, n, d.o_width, d.hidden, out);
}

template <typename T>
void mla_backward(const ModelConfig& c, const AttnParams<T>& w, const AttnParams<T>& dw, const AttentionContext& ctx,
                  const T* x, const MlaSaved<T>& saved, const T* dout, Workspace<T>& ws, T* dx) {
  DSV3_ZONE("mla.backward");
  const Dims d(c);
  const int64_t n = ctx.shape.rows(), seq = ctx.shape.seq;
  const double eps = c.rms_norm_eps;
  typename Workspace<T>::Scope scope(ws);
  const Projected<T> p = project(c, d, w, ctx, x, saved, ws);

  // Output projection: d_o = dout · W_o (written), dW_o += doutᵀ · o.
  T* d_o = ws.take(n * d.o_width);
  linear_dgrad(ws, dout, w.o_proj, n, d.o_width, d.hidden, d_o, /*accumulate=*/false);
  linear_wgrad(ws, saved.o, dout, n, d.o_width, d.hidden, dw.o_proj);

  // Attention core, per sequence and head (every output region written exactly once).
  T* dq = ws.take(n * d.q_width);
  T* dk = ws.take(n * d.q_width);
  T* dkvb = ws.take(n * d.kvb_width);
  T* buffers = ws.take(int64_t(num_threads()) * 2 * kQueryBlock * seq);
  const ComputePrecision precision = ws.precision();
  const KeptOperand<T> q_all{p.q, d.q_width, round_for_kept_gemms(ws, p.q, n, d.q_width)};
  const KeptOperand<T> k_all{p.k, d.q_width, round_for_kept_gemms(ws, p.k, n, d.q_width)};
  const KeptOperand<T> kvb_all{p.kvb, d.kvb_width, round_for_kept_gemms(ws, p.kvb, n, d.kvb_width)};
  const KeptOperand<T> d_o_all{d_o, d.o_width, round_for_kept_gemms(ws, d_o, n, d.o_width)};
  {
    DSV3_ZONE("mla.core.backward");
    for_items(ctx.shape.batch * d.heads, [&](int64_t item, int thread) {
      const int64_t b = item / d.heads, h = item % d.heads, row0 = b * seq;
      T* pr = buffers + int64_t(thread) * 2 * kQueryBlock * seq;
      attention_item_backward(precision, q_all.at(row0 * d.q_width + h * d.qk), k_all.at(row0 * d.q_width + h * d.qk),
                              kvb_all.at(row0 * d.kvb_width + h * (d.nope + d.v) + d.nope),
                              d_o_all.at(row0 * d.o_width + h * d.v), saved.o + row0 * d.o_width + h * d.v, d.o_width,
                              seq, d.qk, d.v, ctx.softmax_scale, ctx.segment_start ? ctx.segment_start + row0 : nullptr,
                              pr, pr + kQueryBlock * seq,
                              dq + row0 * d.q_width + h * d.qk, dk + row0 * d.q_width + h * d.qk, d.q_width,
                              dkvb + row0 * d.kvb_width + h * (d.nope + d.v) + d.nope, d.kvb_width);
    });
  }

  // Keys: k_nope gradients into dkvb; k_rope is shared by the heads: sum in head order, un-rotate.
  T* dkv_a = ws.take(n * d.kv_a_width);
  parallel_for(n, 16, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      T* dst = dkv_a + r * d.kv_a_width;
      std::fill(dst, dst + d.kv_a_width, T(0));
      for (int64_t h = 0; h < d.heads; ++h) {
        const T* src = dk + r * d.q_width + h * d.qk;
        std::memcpy(dkvb + r * d.kvb_width + h * (d.nope + d.v), src, size_t(d.nope) * sizeof(T));
        for (int64_t i = 0; i < d.rope; ++i) dst[d.kv_lora + i] += src[d.nope + i];
      }
    }
  });
  rope_backward(dkv_a + d.kv_lora, n, seq, 1, d.kv_a_width, d.kv_a_width, *ctx.rope, ctx.segment_start);
  rope_backward(dq + d.nope, n, seq, d.heads, d.q_width, d.qk, *ctx.rope, ctx.segment_start);

  // KV path: kv_b_proj, kv_a_layernorm, kv_a_proj_with_mqa.
  T* dc_kv = ws.take(n * d.kv_lora);
  linear_dgrad(ws, dkvb, w.kv_b_proj, n, d.kv_lora, d.kvb_width, dc_kv, /*accumulate=*/false);
  linear_wgrad(ws, p.c_kv, dkvb, n, d.kv_lora, d.kvb_width, dw.kv_b_proj);
  rmsnorm_backward(saved.kv_a, d.kv_a_width, w.kv_a_layernorm, dc_kv, d.kv_lora, n, d.kv_lora, eps, dkv_a,
                   d.kv_a_width, dw.kv_a_layernorm);
  linear_backward(ws, x, w.kv_a_proj_with_mqa, dkv_a, n, d.hidden, d.kv_a_width, dx, dw.kv_a_proj_with_mqa);

  // Query path.
  if (d.q_lora > 0) {
    T* dc_q = ws.take(n * d.q_lora);
    linear_dgrad(ws, dq, w.q_b_proj, n, d.q_lora, d.q_width, dc_q, /*accumulate=*/false);
    linear_wgrad(ws, p.c_q, dq, n, d.q_lora, d.q_width, dw.q_b_proj);
    T* dq_a = ws.take(n * d.q_lora);
    std::fill(dq_a, dq_a + n * d.q_lora, T(0));
    rmsnorm_backward(saved.q_a, d.q_lora, w.q_a_layernorm, dc_q, d.q_lora, n, d.q_lora, eps, dq_a, d.q_lora,
                     dw.q_a_layernorm);
    linear_backward(ws, x, w.q_a_proj, dq_a, n, d.hidden, d.q_lora, dx, dw.q_a_proj);
  } else {
    linear_backward(ws, x, w.q_proj, dq, n, d.hidden, d.q_width, dx, dw.q_proj);
  }
}

#define DSV3_INSTANTIATE(T)                                                                                       \
  template void mla_forward(const ModelConfig&, const AttnParams<T>&, const AttentionContext&, const T*,          \
                            MlaSaved<T>, Workspace<T>&, T*);                                                      \
  template void mla_backward(const ModelConfig&, const AttnParams<T>&, const AttnParams<T>&,                      \
                             const AttentionContext&, const T*, const MlaSaved<T>&, const T*, Workspace<T>&, T*);
DSV3_INSTANTIATE(float)
DSV3_INSTANTIATE(double)
#undef DSV3_INSTANTIATE

}  // namespace dsv3
