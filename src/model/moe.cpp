#include "model/moe.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <optional>
#include <vector>

#include "core/error.h"
#include "core/profiler.h"
#include "model/mlp.h"
#include "ops/ops.h"

namespace dsv3 {

namespace {

// Orders candidates by descending score, ties to the lower index.
struct ByScore {
  const float* score;
  bool operator()(int32_t a, int32_t b) const { return score[a] > score[b] || (score[a] == score[b] && a < b); }
};

}  // namespace

void route_tokens(const ModelConfig& c, const float* logits, const float* correction_bias, int64_t n,
                  int32_t* indices, float* weights) {
  const int64_t E = c.n_routed_experts, k = c.num_experts_per_tok;
  DSV3_CHECK(E > 0 && k > 0 && k <= E, "[moe] num_experts_per_tok ", k, " must be in [1, n_routed_experts = ", E, "]");
  const bool grouped = c.n_group > 1 && c.topk_method != TopkMethod::greedy;
  const int64_t group_size = grouped ? E / c.n_group : E;
  DSV3_CHECK(!grouped || (E % c.n_group == 0 && c.topk_group >= 1 && c.topk_group <= c.n_group &&
                          k <= c.topk_group * group_size),
             "[moe] n_group ", c.n_group, " / topk_group ", c.topk_group, " cannot select ", k, " of ", E, " experts");
  const bool use_bias = c.topk_method == TopkMethod::noaux_tc && correction_bias != nullptr;

  // Per-thread buffers, reused across calls (no allocation per decoded token).
  thread_local std::vector<float> score, choice, group_score;
  thread_local std::vector<int32_t> order, group_order;
  thread_local std::vector<char> group_kept;
  score.resize(size_t(E));
  choice.resize(size_t(E));
  order.resize(size_t(E));
  group_score.resize(size_t(c.n_group));
  group_order.resize(size_t(c.n_group));
  group_kept.resize(size_t(c.n_group));
  for (int64_t t = 0; t < n; ++t) {
    const float* l = logits + t * E;
    if (c.scoring_func == ScoringFunc::sigmoid) {
      for (int64_t e = 0; e < E; ++e) score[size_t(e)] = 1.0f / (1.0f + std::exp(-l[e]));
    } else {
      std::copy(l, l + E, score.begin());
      softmax_inplace(score.data(), E);
    }
    for (int64_t e = 0; e < E; ++e) choice[size_t(e)] = score[size_t(e)] + (use_bias ? correction_bias[e] : 0.0f);

    int64_t candidates = 0;
    if (grouped) {
      for (int64_t g = 0; g < c.n_group; ++g) {
        const float* gs = choice.data() + g * group_size;
        if (c.topk_method == TopkMethod::noaux_tc) {  // sum of the group's two best biased scores
          float best = -INFINITY, second = -INFINITY;
          for (int64_t i = 0; i < group_size; ++i) {
            if (gs[i] > best) {
              second = best;
              best = gs[i];
            } else if (gs[i] > second) {
              second = gs[i];
            }
          }
          group_score[size_t(g)] = group_size >= 2 ? best + second : best;
        } else {  // group_limited_greedy: the group's best score
          group_score[size_t(g)] = *std::max_element(gs, gs + group_size);
        }
      }
      std::iota(group_order.begin(), group_order.end(), 0);
      std::partial_sort(group_order.begin(), group_order.begin() + c.topk_group, group_order.end(),
                        ByScore{group_score.data()});
      std::fill(group_kept.begin(), group_kept.end(), 0);
      for (int64_t i = 0; i < c.topk_group; ++i) group_kept[size_t(group_order[size_t(i)])] = 1;
      for (int64_t e = 0; e < E; ++e)
        if (group_kept[size_t(e / group_size)]) order[size_t(candidates++)] = int32_t(e);
    } else {
      std::iota(order.begin(), order.end(), 0);
      candidates = E;
    }
    std::partial_sort(order.begin(), order.begin() + k, order.begin() + candidates, ByScore{choice.data()});

    int32_t* idx = indices + t * k;
    float* w = weights + t * k;
    float sum = 0.0f;
    for (int64_t j = 0; j < k; ++j) {
      idx[j] = order[size_t(j)];
      w[j] = score[size_t(idx[j])];
      sum += w[j];
    }
    const bool normalise = c.norm_topk_prob && k > 1;
    for (int64_t j = 0; j < k; ++j) {
      if (normalise) w[j] /= sum + 1e-20f;
      w[j] *= float(c.routed_scaling_factor);
    }
  }
}

void moe_forward(const ModelConfig& c, const MoeWeights& w, const float* x, int64_t n, Precision precision,
                 Scratch& s, float* out) {
  const int64_t H = c.hidden_size, E = c.n_routed_experts, k = c.num_experts_per_tok;
  DSV3_CHECK(s.n_capacity >= n, "[moe] scratch reserved for ", s.n_capacity, " tokens, chunk has ", n);

  // Router logits in f32 (exact w.r.t. the stored gate weights).
  std::optional<ProfileZone> zone(std::in_place, "moe.router");
  linear(w.gate, x, s.router_logits.data(), n, Precision::f32);
  route_tokens(c, s.router_logits.data(), w.correction_bias.empty() ? nullptr : w.correction_bias.as<float>(), n,
               s.expert_index.data(), s.expert_weight.data());

  // Group (token, slot) pairs by expert: experts ascending, tokens ascending within an expert.
  zone.emplace("moe.experts");
  int64_t* count = s.expert_count.data();
  int64_t* begin = s.expert_begin.data();
  std::fill(count, count + E, 0);
  for (int64_t i = 0; i < n * k; ++i) ++count[s.expert_index[size_t(i)]];
  begin[0] = 0;
  for (int64_t e = 0; e < E; ++e) begin[e + 1] = begin[e] + count[e];
  std::fill(count, count + E, 0);  // reused as a cursor
  for (int64_t i = 0; i < n * k; ++i) {
    const int32_t e = s.expert_index[size_t(i)];
    const int64_t row = begin[e] + count[e]++;
    s.slot_row[size_t(i)] = row;
    std::memcpy(s.sorted_x.data() + row * H, x + (i / k) * H, size_t(H) * sizeof(float));
  }
  // Each chosen expert's SwiGLU (mlp_forward's arithmetic) over its rows of the sorted buffers: the gate
  // and up projections of all of them as one linear_group, then all the down projections as another,
  // so a decode step runs two parallel regions per layer rather than three per expert.
  const int64_t I = c.moe_intermediate_size;
  std::vector<LinearCall>& in_calls = s.expert_in_calls;
  std::vector<LinearCall>& down_calls = s.expert_down_calls;
  in_calls.clear();
  down_calls.clear();
  for (int64_t e = 0; e < E; ++e) {
    const int64_t rows = begin[e + 1] - begin[e];
    if (rows == 0) continue;
    ++s.experts_run;
    const MlpWeights& ew = w.experts[size_t(e)];
    const float* xe = s.sorted_x.data() + begin[e] * H;
    float* gate = s.ffn_gate.data() + begin[e] * I;
    in_calls.push_back({&ew.gate_proj, xe, gate, rows});
    in_calls.push_back({&ew.up_proj, xe, s.ffn_up.data() + begin[e] * I, rows});
    down_calls.push_back({&ew.down_proj, gate, s.sorted_y.data() + begin[e] * H, rows});
  }
  linear_group(in_calls.data(), int64_t(in_calls.size()), precision);
  silu_mul(s.ffn_gate.data(), s.ffn_up.data(), s.ffn_gate.data(), n * k * I);
  linear_group(down_calls.data(), int64_t(down_calls.size()), precision);

  // out = Σ_j weight_j · expert_j(x) (slot order), then + shared experts.
  std::memset(out, 0, size_t(n * H) * sizeof(float));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < k; ++j)
      axpy(s.expert_weight[size_t(t * k + j)], s.sorted_y.data() + s.slot_row[size_t(t * k + j)] * H, out + t * H, H);
  if (w.has_shared) {
    zone.emplace("moe.shared");
    mlp_forward(w.shared, x, n, precision, s.ffn_gate.data(), s.ffn_up.data(), s.shared_y.data());
    add_inplace(out, s.shared_y.data(), n * H);
  }
}

}  // namespace dsv3
