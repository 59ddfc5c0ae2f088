#include "train/moe_train.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "core/profiler.h"
#include "core/error.h"
#include "core/parallel.h"

namespace dsv3 {

namespace {

// Descending score, ties to the lower index (model/moe.cpp's order).
template <typename T>
struct ByScore {
  const T* score;
  bool operator()(int32_t a, int32_t b) const { return score[a] > score[b] || (score[a] == score[b] && a < b); }
};

bool normalises(const ModelConfig& c) { return c.norm_topk_prob && c.num_experts_per_tok > 1; }

}  // namespace

// ---- router ----

template <typename T>
void router_scores_forward(const ModelConfig& c, const T* logits, int64_t n, T* scores) {
  const int64_t E = c.n_routed_experts;
  parallel_for(n, 16, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const T* l = logits + t * E;
      T* s = scores + t * E;
      if (c.scoring_func == ScoringFunc::sigmoid) {
        for (int64_t i = 0; i < E; ++i) s[i] = T(1) / (T(1) + std::exp(-l[i]));  // as model/moe.cpp
      } else {
        std::copy(l, l + E, s);
        softmax_row(s, E);
      }
    }
  });
}

template <typename T>
void router_scores_backward(const ModelConfig& c, const T* scores, const T* dscores, int64_t n, T* dlogits) {
  const int64_t E = c.n_routed_experts;
  parallel_for(n, 16, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const T* s = scores + t * E;
      const T* ds = dscores + t * E;
      T* dl = dlogits + t * E;
      if (c.scoring_func == ScoringFunc::sigmoid) {
        for (int64_t i = 0; i < E; ++i) dl[i] = ds[i] * s[i] * (T(1) - s[i]);
      } else {
        const T sd = dot(s, ds, E);
        for (int64_t i = 0; i < E; ++i) dl[i] = s[i] * (ds[i] - sd);
      }
    }
  });
}

template <typename T>
void route_select(const ModelConfig& c, const T* scores, const T* bias, int64_t n, int32_t* indices) {
  const int64_t E = c.n_routed_experts, k = c.num_experts_per_tok;
  DSV3_CHECK(E > 0 && k > 0 && k <= E, "[moe] num_experts_per_tok ", k, " must be in [1, n_routed_experts = ", E, "]");
  const bool grouped = c.n_group > 1 && c.topk_method != TopkMethod::greedy;
  const int64_t group_size = grouped ? E / c.n_group : E;
  DSV3_CHECK(!grouped || (E % c.n_group == 0 && c.topk_group >= 1 && c.topk_group <= c.n_group &&
                          k <= c.topk_group * group_size),
             "[moe] n_group ", c.n_group, " / topk_group ", c.topk_group, " cannot select ", k, " of ", E, " experts");
  const bool use_bias = c.topk_method == TopkMethod::noaux_tc && bias != nullptr;
  parallel_for(n, 16, [&](int64_t tb, int64_t te) {
    std::vector<T> choice(static_cast<size_t>(E)), group_score(static_cast<size_t>(c.n_group));
    std::vector<int32_t> order(static_cast<size_t>(E)), group_order(static_cast<size_t>(c.n_group));
    std::vector<char> kept(static_cast<size_t>(c.n_group));
    for (int64_t t = tb; t < te; ++t) {
      const T* s = scores + t * E;
      for (int64_t e = 0; e < E; ++e) choice[size_t(e)] = s[e] + (use_bias ? bias[e] : T(0));
      int64_t candidates = 0;
      if (grouped) {
        for (int64_t g = 0; g < c.n_group; ++g) {
          const T* gs = choice.data() + g * group_size;
          if (c.topk_method == TopkMethod::noaux_tc) {  // sum of the two best biased scores
            T best = -INFINITY, second = -INFINITY;
            for (int64_t i = 0; i < group_size; ++i) {
              if (gs[i] > best) {
                second = best;
                best = gs[i];
              } else if (gs[i] > second) {
                second = gs[i];
              }
            }
            group_score[size_t(g)] = group_size >= 2 ? best + second : best;
          } else {  // group_limited_greedy: the best score
            group_score[size_t(g)] = *std::max_element(gs, gs + group_size);
          }
        }
        std::iota(group_order.begin(), group_order.end(), 0);
        std::partial_sort(group_order.begin(), group_order.begin() + c.topk_group, group_order.end(),
                          ByScore<T>{group_score.data()});
        std::fill(kept.begin(), kept.end(), 0);
        for (int64_t i = 0; i < c.topk_group; ++i) kept[size_t(group_order[size_t(i)])] = 1;
        for (int64_t e = 0; e < E; ++e)
          if (kept[size_t(e / group_size)]) order[size_t(candidates++)] = int32_t(e);
      } else {
        std::iota(order.begin(), order.end(), 0);
        candidates = E;
      }
      std::partial_sort(order.begin(), order.begin() + k, order.begin() + candidates, ByScore<T>{choice.data()});
      std::copy(order.begin(), order.begin() + k, indices + t * k);
    }
  });
}

template <typename T>
void route_weights_forward(const ModelConfig& c, const T* scores, const int32_t* indices, int64_t n, T* weights) {
  const int64_t E = c.n_routed_experts, k = c.num_experts_per_tok;
  const T scaling = T(c.routed_scaling_factor);
  for (int64_t t = 0; t < n; ++t) {
    T* w = weights + t * k;
    T sum = 0;
    for (int64_t j = 0; j < k; ++j) {
      w[j] = scores[t * E + indices[t * k + j]];
      sum += w[j];
    }
    for (int64_t j = 0; j < k; ++j) {
      if (normalises(c)) w[j] /= sum + T(1e-20);
      w[j] *= scaling;
    }
  }
}

template <typename T>
void route_weights_backward(const ModelConfig& c, const T* scores, const int32_t* indices, const T* dweights,
                            int64_t n, T* dscores) {
  const int64_t E = c.n_routed_experts, k = c.num_experts_per_tok;
  const T scaling = T(c.routed_scaling_factor);
  for (int64_t t = 0; t < n; ++t) {
    const int32_t* idx = indices + t * k;
    const T* dw = dweights + t * k;
    T* ds = dscores + t * E;
    if (!normalises(c)) {
      for (int64_t j = 0; j < k; ++j) ds[idx[j]] += scaling * dw[j];
      continue;
    }
    // w_j = c·s_j / S (S = Σ_sel s + 1e-20):  ∂L/∂s_j = (c/S)·(dw_j − Σ_i dw_i·s_i / S).
    T sum = 0;
    for (int64_t j = 0; j < k; ++j) sum += scores[t * E + idx[j]];
    sum += T(1e-20);
    T weighted = 0;
    for (int64_t j = 0; j < k; ++j) weighted += dw[j] * scores[t * E + idx[j]];
    weighted /= sum;
    for (int64_t j = 0; j < k; ++j) ds[idx[j]] += scaling / sum * (dw[j] - weighted);
  }
}

// ---- balance loss ----

namespace {

// Calls fn(first_row, rows, group_weight) for each balance group: sequences, or the whole batch.
template <typename Fn>
void for_balance_groups(const MoeOptions& o, const SeqShape& shape, Fn&& fn) {
  if (o.balance == BalanceLoss::sequence) {
    for (int64_t b = 0; b < shape.batch; ++b) fn(b * shape.seq, shape.seq, 1.0 / double(shape.batch));
  } else if (o.balance == BalanceLoss::batch) {
    fn(int64_t(0), shape.rows(), 1.0);
  }
}

// f_i of one group: E/(K·T) · selection count.
template <typename T>
std::vector<double> selection_fraction(const ModelConfig& c, const int32_t* indices, int64_t row0, int64_t rows) {
  const int64_t E = c.n_routed_experts, k = c.num_experts_per_tok;
  std::vector<double> f(static_cast<size_t>(E), 0.0);
  for (int64_t i = row0 * k; i < (row0 + rows) * k; ++i) f[size_t(indices[i])] += 1.0;
  for (double& v : f) v *= double(E) / double(k * rows);
  return f;
}

}  // namespace

template <typename T>
double balance_loss_forward(const ModelConfig& c, const MoeOptions& o, const SeqShape& shape, const T* scores,
                            const int32_t* indices) {
  const int64_t E = c.n_routed_experts;
  double total = 0;
  for_balance_groups(o, shape, [&](int64_t row0, int64_t rows, double group_weight) {
    const std::vector<double> f = selection_fraction<T>(c, indices, row0, rows);
    double loss = 0;
    for (int64_t t = row0; t < row0 + rows; ++t) {
      const T* s = scores + t * E;
      double norm = 0;
      for (int64_t i = 0; i < E; ++i) norm += double(s[i]);
      for (int64_t i = 0; i < E; ++i) loss += f[size_t(i)] * double(s[i]) / norm;
    }
    total += group_weight * o.balance_alpha * loss / double(rows);
  });
  return total;
}

template <typename T>
void balance_loss_backward(const ModelConfig& c, const MoeOptions& o, const SeqShape& shape, const T* scores,
                           const int32_t* indices, T* dscores) {
  const int64_t E = c.n_routed_experts;
  for_balance_groups(o, shape, [&](int64_t row0, int64_t rows, double group_weight) {
    const std::vector<double> f = selection_fraction<T>(c, indices, row0, rows);
    // g_i = ∂L/∂s'_{t,i} = w·α·f_i / T;  s' = s / Σ s:  ∂L/∂s_j = (g_j − Σ_i g_i s'_i) / Σ s.
    std::vector<double> g(static_cast<size_t>(E));
    for (int64_t i = 0; i < E; ++i) g[size_t(i)] = group_weight * o.balance_alpha * f[size_t(i)] / double(rows);
    for (int64_t t = row0; t < row0 + rows; ++t) {
      const T* s = scores + t * E;
      T* ds = dscores + t * E;
      double norm = 0, gs = 0;
      for (int64_t i = 0; i < E; ++i) norm += double(s[i]);
      for (int64_t i = 0; i < E; ++i) gs += g[size_t(i)] * double(s[i]) / norm;
      for (int64_t i = 0; i < E; ++i) ds[i] += T((g[size_t(i)] - gs) / norm);
    }
  });
}

// ---- the MoE layer ----

namespace {

// Groups (token, slot) pairs by expert: experts ascending, tokens ascending within an expert.
void sort_by_expert(int64_t E, int64_t pairs, const int32_t* indices, int32_t* slot_row, int64_t* begin) {
  DSV3_CHECK(pairs < INT32_MAX, "[moe] ", pairs, " (token, expert) pairs exceed the int32 slot index; use smaller "
             "batches");
  std::fill(begin, begin + E + 1, 0);
  for (int64_t i = 0; i < pairs; ++i) ++begin[indices[i] + 1];
  for (int64_t e = 0; e < E; ++e) begin[e + 1] += begin[e];
  std::vector<int64_t> cursor(begin, begin + E);
  for (int64_t i = 0; i < pairs; ++i) slot_row[i] = int32_t(cursor[size_t(indices[i])]++);
}

// sorted[slot_row[i]] = rows[i / k] for every (token, slot) pair i.
template <typename T>
void gather_rows(const T* rows, int64_t width, const int32_t* slot_row, int64_t pairs, int64_t k, T* sorted) {
  parallel_for(pairs, 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      std::memcpy(sorted + int64_t(slot_row[i]) * width, rows + (i / k) * width, size_t(width) * sizeof(T));
  });
}

// out[t] (+)= Σ_j sorted[slot_row[t·k + j]] in slot order.
template <typename T>
void combine_rows(const T* sorted, int64_t width, const int32_t* slot_row, int64_t n, int64_t k, bool accumulate,
                  T* out) {
  parallel_for(n, 16, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      T* o = out + t * width;
      if (!accumulate) std::fill(o, o + width, T(0));
      for (int64_t j = 0; j < k; ++j) {
        const T* src = sorted + int64_t(slot_row[t * k + j]) * width;
        for (int64_t i = 0; i < width; ++i) o[i] += src[i];
      }
    }
  });
}

template <typename T>
MlpSaved<T> expert_slice(const MoeSaved<T>& s, int64_t row0, int64_t inter) {
  return MlpSaved<T>{s.gate + row0 * inter, s.up + row0 * inter};
}


// ---- expert parallelism (ExpertGroup, moe_train.h) ----

// Rows of this rank's expert-sorted order for each rank of the group: rank p's experts are the run
// [p·owned, (p+1)·owned), so its rows are one block of the order, and the blocks come in rank order.
std::vector<int64_t> rows_per_owner(const int64_t* expert_begin, int64_t ranks, int64_t owned) {
  std::vector<int64_t> rows;
  for (int64_t p = 0; p < ranks; ++p) rows.push_back(expert_begin[(p + 1) * owned] - expert_begin[p * owned]);
  return rows;
}

// Rows received from each rank (MoeRemoteSaved::rows summed over the owned experts).
std::vector<int64_t> rows_per_source(const std::vector<int64_t>& received, int64_t ranks, int64_t owned) {
  std::vector<int64_t> rows(static_cast<size_t>(ranks), 0);
  for (int64_t p = 0; p < ranks; ++p)
    for (int64_t i = 0; i < owned; ++i) rows[size_t(p)] += received[size_t(p * owned + i)];
  return rows;
}

template <typename T>
void exchange_rows(const ExpertGroup& g, const T* send, const std::vector<int64_t>& send_rows, T* recv,
                   const std::vector<int64_t>& recv_rows, int64_t width) {
  std::vector<int64_t> send_bytes, recv_bytes;
  for (int64_t r : send_rows) send_bytes.push_back(r * width * int64_t(sizeof(T)));
  for (int64_t r : recv_rows) recv_bytes.push_back(r * width * int64_t(sizeof(T)));
  g.alltoallv(send, send_bytes, recv, recv_bytes);
}

// Calls fn(source rank, owned expert i, first row, rows) for each run of the received rows.
template <typename Fn>
void for_each_received_run(const std::vector<int64_t>& received, int64_t ranks, int64_t owned, Fn&& fn) {
  int64_t row0 = 0;
  for (int64_t p = 0; p < ranks; ++p)
    for (int64_t i = 0; i < owned; ++i) {
      const int64_t rows = received[size_t(p * owned + i)];
      fn(p, i, row0, rows);
      row0 += rows;
    }
}

// An expert's gradient as three consecutive matrices (gate, up, down) in a flat buffer.
template <typename T>
MlpParams<T> expert_view(T* base, int64_t inter, int64_t hidden) {
  return MlpParams<T>{base, base + inter * hidden, base + 2 * inter * hidden, inter};
}

// Dispatch, the owned experts on every rank's rows, combine: ys [n·K, H] in this rank's expert-sorted
// order, as the local loop writes it.
template <typename T>
void routed_forward_parallel(const ModelConfig& c, const MoeParams<T>& w, const ExpertGroup& g,
                             const MoeSaved<T>& saved, const T* xs, const T* sorted_weight, Workspace<T>& ws, T* ys) {
  const int64_t P = g.ranks(), me = g.rank(), E = c.n_routed_experts, owned = E / P;
  const int64_t H = c.hidden_size, inter = c.moe_intermediate_size;
  DSV3_CHECK(E % P == 0 && saved.remote != nullptr, "[moe] ", E, " routed experts cannot be split over ", P,
             " expert-parallel ranks");
  MoeRemoteSaved<T>& r = *saved.remote;
  // The counts first: every owner learns how many rows of each of its experts each rank sends.
  std::vector<int64_t> counts(static_cast<size_t>(E));
  for (int64_t e = 0; e < E; ++e) counts[size_t(e)] = saved.expert_begin[e + 1] - saved.expert_begin[e];
  r.rows.assign(size_t(P * owned), 0);
  exchange_rows(g, counts.data(), std::vector<int64_t>(size_t(P), owned), r.rows.data(),
                std::vector<int64_t>(size_t(P), owned), 1);
  const std::vector<int64_t> send = rows_per_owner(saved.expert_begin, P, owned);
  const std::vector<int64_t> recv = rows_per_source(r.rows, P, owned);
  const int64_t R = std::accumulate(recv.begin(), recv.end(), int64_t(0));
  r.x.resize(size_t(R * H));
  r.weight.resize(size_t(R));
  r.gate.resize(size_t(R * inter));
  r.up.resize(size_t(R * inter));
  exchange_rows(g, xs, send, r.x.data(), recv, H);
  exchange_rows(g, sorted_weight, send, r.weight.data(), recv, 1);
  typename Workspace<T>::Scope scope(ws);
  T* yr = ws.take(R * H);
  for_each_received_run(r.rows, P, owned, [&](int64_t, int64_t i, int64_t row0, int64_t rows) {
    mlp_forward(w.experts[size_t(me * owned + i)], r.x.data() + row0 * H, rows, H, r.weight.data() + row0,
                MlpSaved<T>{r.gate.data() + row0 * inter, r.up.data() + row0 * inter}, ws, yr + row0 * H);
  });
  exchange_rows(g, static_cast<const T*>(yr), recv, ys, send, H);
}

// The backward of routed_forward_parallel: gs [n·K, H] (output gradients in this rank's expert-sorted
// order) to the owners; dxs [n·K, H] (accumulated) and d_sorted_weight [n·K] (written) back; each
// owner's weight gradients from this rank's rows added into dw.
template <typename T>
void routed_backward_parallel(const ModelConfig& c, const MoeParams<T>& w, const MoeParams<T>& dw,
                              const ExpertGroup& g, const MoeSaved<T>& saved, const T* gs, Workspace<T>& ws, T* dxs,
                              T* d_sorted_weight) {
  const int64_t P = g.ranks(), me = g.rank(), E = c.n_routed_experts, owned = E / P;
  const int64_t H = c.hidden_size, inter = c.moe_intermediate_size, per_expert = 3 * inter * H;
  MoeRemoteSaved<T>& r = *saved.remote;
  const std::vector<int64_t> send = rows_per_owner(saved.expert_begin, P, owned);
  const std::vector<int64_t> recv = rows_per_source(r.rows, P, owned);
  const int64_t R = std::accumulate(recv.begin(), recv.end(), int64_t(0));
  typename Workspace<T>::Scope scope(ws);
  T* gr = ws.take(R * H);
  T* dxr = ws.take(R * H);
  T* dwr = ws.take(R);
  exchange_rows(g, gs, send, gr, recv, H);
  std::fill(dxr, dxr + R * H, T(0));
  // Weight gradients of the other ranks' rows, [rank][owned expert][gate, up, down], zero as their own
  // arenas are (this rank's own rows accumulate into dw directly).
  T* theirs = ws.take(P * owned * per_expert);
  std::fill(theirs, theirs + P * owned * per_expert, T(0));
  for_each_received_run(r.rows, P, owned, [&](int64_t p, int64_t i, int64_t row0, int64_t rows) {
    const size_t e = size_t(me * owned + i);
    const MlpParams<T> d = p == me ? dw.experts[e] : expert_view(theirs + (p * owned + i) * per_expert, inter, H);
    mlp_backward(w.experts[e], d, r.x.data() + row0 * H, rows, H, r.weight.data() + row0,
                 MlpSaved<T>{r.gate.data() + row0 * inter, r.up.data() + row0 * inter},
                 gr + row0 * H, ws, dxr + row0 * H, dwr + row0);
  });
  exchange_rows(g, static_cast<const T*>(dxr), recv, dxs, send, H);
  exchange_rows(g, static_cast<const T*>(dwr), recv, d_sorted_weight, send, 1);
  // Every rank's weight gradients for its experts from this rank's rows (its own block is not used).
  T* mine = ws.take(P * owned * per_expert);
  const std::vector<int64_t> blocks(static_cast<size_t>(P), owned * per_expert);
  exchange_rows(g, static_cast<const T*>(theirs), blocks, mine, blocks, 1);
  for (int64_t q = 0; q < P; ++q) {
    if (q == me) continue;
    for (int64_t i = 0; i < owned; ++i) {
      const MlpParams<T>& d = dw.experts[size_t(q * owned + i)];
      const T* from = mine + (q * owned + i) * per_expert;
      for (T* to : {d.gate_proj, d.up_proj, d.down_proj}) {
        for (int64_t j = 0; j < inter * H; ++j) to[j] += from[j];
        from += inter * H;
      }
    }
  }
}

}  // namespace

template <typename T>
double moe_forward(const ModelConfig& c, const MoeParams<T>& w, const SeqShape& shape, const MoeOptions& options,
                   const T* x, MoeSaved<T> saved, Workspace<T>& ws, T* out) {
  DSV3_ZONE("moe.forward");
  const int64_t n = shape.rows(), H = c.hidden_size, E = c.n_routed_experts, k = c.num_experts_per_tok;
  const int64_t inter = c.moe_intermediate_size;
  typename Workspace<T>::Scope scope(ws);

  T* logits = ws.take(n * E);
  linear_forward(ws, x, w.gate, n, H, E, logits, GemmKind::kept);
  double balance = 0;
  {
    DSV3_ZONE("moe.route");
    router_scores_forward(c, logits, n, saved.scores);
    if (!options.replay_routing) route_select(c, saved.scores, w.correction_bias, n, saved.indices);
    route_weights_forward(c, saved.scores, saved.indices, n, saved.weights);
    balance = balance_loss_forward(c, options, shape, saved.scores, saved.indices);
    sort_by_expert(E, n * k, saved.indices, saved.slot_row, saved.expert_begin);
  }
  T* xs = ws.take(n * k * H);
  T* ys = ws.take(n * k * H);
  T* sorted_weight = ws.take(n * k);
  gather_rows(x, H, saved.slot_row, n * k, k, xs);
  for (int64_t i = 0; i < n * k; ++i) sorted_weight[saved.slot_row[i]] = saved.weights[i];
  if (options.expert_group) {
    routed_forward_parallel(c, w, *options.expert_group, saved, xs, sorted_weight, ws, ys);
  } else {
    for (int64_t e = 0; e < E; ++e) {
      const int64_t r0 = saved.expert_begin[e], rows = saved.expert_begin[e + 1] - r0;
      mlp_forward(w.experts[size_t(e)], xs + r0 * H, rows, H, sorted_weight + r0, expert_slice(saved, r0, inter), ws,
                  ys + r0 * H);
    }
  }
  if (w.has_shared) {
    mlp_forward(w.shared, x, n, H, static_cast<const T*>(nullptr), saved.shared, ws, out);
    combine_rows(ys, H, saved.slot_row, n, k, /*accumulate=*/true, out);
  } else {
    combine_rows(ys, H, saved.slot_row, n, k, /*accumulate=*/false, out);
  }
  return balance;
}

template <typename T>
void moe_backward(const ModelConfig& c, const MoeParams<T>& w, const MoeParams<T>& dw, const SeqShape& shape,
                  const MoeOptions& options, const T* x, const MoeSaved<T>& saved, const T* dout, Workspace<T>& ws,
                  T* dx) {
  DSV3_ZONE("moe.backward");
  const int64_t n = shape.rows(), H = c.hidden_size, E = c.n_routed_experts, k = c.num_experts_per_tok;
  const int64_t inter = c.moe_intermediate_size;
  typename Workspace<T>::Scope scope(ws);

  if (w.has_shared)
    mlp_backward(w.shared, dw.shared, x, n, H, static_cast<const T*>(nullptr), saved.shared, dout, ws, dx,
                 static_cast<T*>(nullptr));

  // Routed experts on expert-sorted rows: inputs and upstream gradients gathered, input gradients
  // written per row and summed per token in slot order.
  T* xs = ws.take(n * k * H);
  T* gs = ws.take(n * k * H);
  T* dxs = ws.take(n * k * H);
  T* sorted_weight = ws.take(n * k);
  T* d_sorted_weight = ws.take(n * k);
  if (!options.expert_group) gather_rows(x, H, saved.slot_row, n * k, k, xs);  // the owners keep their rows
  gather_rows(dout, H, saved.slot_row, n * k, k, gs);
  for (int64_t i = 0; i < n * k; ++i) sorted_weight[saved.slot_row[i]] = saved.weights[i];
  std::fill(dxs, dxs + n * k * H, T(0));
  if (options.expert_group) {
    routed_backward_parallel(c, w, dw, *options.expert_group, saved, gs, ws, dxs, d_sorted_weight);
  } else {
    for (int64_t e = 0; e < E; ++e) {
      const int64_t r0 = saved.expert_begin[e], rows = saved.expert_begin[e + 1] - r0;
      mlp_backward(w.experts[size_t(e)], dw.experts[size_t(e)], xs + r0 * H, rows, H, sorted_weight + r0,
                   expert_slice(saved, r0, inter), gs + r0 * H, ws, dxs + r0 * H, d_sorted_weight + r0);
    }
  }
  combine_rows(dxs, H, saved.slot_row, n, k, /*accumulate=*/true, dx);

  // Router: weights -> scores (+ balance loss) -> logits -> W_g and x.
  T* dweights = ws.take(n * k);
  for (int64_t i = 0; i < n * k; ++i) dweights[i] = d_sorted_weight[saved.slot_row[i]];
  T* dscores = ws.take(n * E);
  std::fill(dscores, dscores + n * E, T(0));
  route_weights_backward(c, saved.scores, saved.indices, dweights, n, dscores);
  balance_loss_backward(c, options, shape, saved.scores, saved.indices, dscores);
  T* dlogits = dscores;  // written in place, row by row
  router_scores_backward(c, saved.scores, dscores, n, dlogits);
  linear_backward(ws, x, w.gate, dlogits, n, H, E, dx, dw.gate, GemmKind::kept);
}

#define DSV3_INSTANTIATE(T)                                                                                       \
  template void router_scores_forward(const ModelConfig&, const T*, int64_t, T*);                                 \
  template void router_scores_backward(const ModelConfig&, const T*, const T*, int64_t, T*);                      \
  template void route_select(const ModelConfig&, const T*, const T*, int64_t, int32_t*);                          \
  template void route_weights_forward(const ModelConfig&, const T*, const int32_t*, int64_t, T*);                 \
  template void route_weights_backward(const ModelConfig&, const T*, const int32_t*, const T*, int64_t, T*);      \
  template double balance_loss_forward(const ModelConfig&, const MoeOptions&, const SeqShape&, const T*,          \
                                       const int32_t*);                                                           \
  template void balance_loss_backward(const ModelConfig&, const MoeOptions&, const SeqShape&, const T*,           \
                                      const int32_t*, T*);                                                        \
  template double moe_forward(const ModelConfig&, const MoeParams<T>&, const SeqShape&, const MoeOptions&,        \
                              const T*, MoeSaved<T>, Workspace<T>&, T*);                                          \
  template void moe_backward(const ModelConfig&, const MoeParams<T>&, const MoeParams<T>&, const SeqShape&,       \
                             const MoeOptions&, const T*, const MoeSaved<T>&, const T*, Workspace<T>&, T*);
DSV3_INSTANTIATE(float)
DSV3_INSTANTIATE(double)
#undef DSV3_INSTANTIATE

}  // namespace dsv3
