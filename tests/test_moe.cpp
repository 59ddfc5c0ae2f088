#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "model/kv_cache.h"
#include "model/model.h"
#include "model/moe.h"
#include "test_support.h"

namespace dsv3 {
namespace {

ModelConfig routing_config(int64_t E, int64_t k, int64_t n_group, int64_t topk_group, bool v3,
                           TopkMethod v2_method = TopkMethod::greedy) {
  ModelConfig c = testing::tiny_v3_config();
  c.n_routed_experts = E;
  c.num_experts_per_tok = k;
  c.n_group = n_group;
  c.topk_group = topk_group;
  if (v3) {
    c.scoring_func = ScoringFunc::sigmoid;
    c.topk_method = TopkMethod::noaux_tc;
    c.norm_topk_prob = true;
    c.routed_scaling_factor = 2.5;
  } else {
    c.scoring_func = ScoringFunc::softmax;
    c.topk_method = v2_method;
    c.norm_topk_prob = false;
    c.routed_scaling_factor = 16.0;  // DeepSeek-V2's value: scaling without normalisation
  }
  return c;
}

// Brute-force router: the best group set by enumerating every topk_group-subset of groups (by group
// score), then the best expert set by enumerating every k-subset of the experts in those groups (by the
// sum of selection scores). Returns expert -> weight for the chosen experts (0 elsewhere).
std::vector<double> brute_force_route(const ModelConfig& c, const float* logits, const float* bias) {
  const int64_t E = c.n_routed_experts, k = c.num_experts_per_tok;
  std::vector<double> s(static_cast<size_t>(E)), choice(static_cast<size_t>(E));
  if (c.scoring_func == ScoringFunc::sigmoid) {
    for (int64_t e = 0; e < E; ++e) s[size_t(e)] = 1.0 / (1.0 + std::exp(-double(logits[e])));
  } else {
    double mx = -INFINITY, sum = 0;
    for (int64_t e = 0; e < E; ++e) mx = std::max(mx, double(logits[e]));
    for (int64_t e = 0; e < E; ++e) sum += s[size_t(e)] = std::exp(double(logits[e]) - mx);
    for (double& v : s) v /= sum;
  }
  const bool use_bias = c.topk_method == TopkMethod::noaux_tc && bias;
  for (int64_t e = 0; e < E; ++e) choice[size_t(e)] = s[size_t(e)] + (use_bias ? bias[e] : 0.0);

  std::vector<char> allowed(size_t(E), 1);
  if (c.n_group > 1 && c.topk_method != TopkMethod::greedy) {
    const int64_t G = c.n_group, per = E / G;
    std::vector<double> gscore(static_cast<size_t>(G));
    for (int64_t g = 0; g < G; ++g) {
      std::vector<double> v(choice.begin() + g * per, choice.begin() + (g + 1) * per);
      std::sort(v.rbegin(), v.rend());
      gscore[size_t(g)] = c.topk_method == TopkMethod::noaux_tc ? v[0] + v[1] : v[0];
    }
    double best = -INFINITY;
    uint32_t best_mask = 0;
    for (uint32_t mask = 0; mask < (1u << G); ++mask) {
      if (__builtin_popcount(mask) != c.topk_group) continue;
      double sum = 0;
      for (int64_t g = 0; g < G; ++g)
        if (mask >> g & 1) sum += gscore[size_t(g)];
      if (sum > best) best = sum, best_mask = mask;
    }
    for (int64_t e = 0; e < E; ++e) allowed[size_t(e)] = best_mask >> (e / per) & 1;
  }
  std::vector<int64_t> cand;
  for (int64_t e = 0; e < E; ++e)
    if (allowed[size_t(e)]) cand.push_back(e);
  // Enumerate k-subsets of the candidates.
  std::vector<int64_t> pick(static_cast<size_t>(k)), best_pick;
  double best = -INFINITY;
  std::function<void(size_t, size_t, double)> rec = [&](size_t start, size_t depth, double sum) {
    if (depth == size_t(k)) {
      if (sum > best) best = sum, best_pick = pick;
      return;
    }
    for (size_t i = start; i + (size_t(k) - depth) <= cand.size(); ++i) {
      pick[depth] = cand[i];
      rec(i + 1, depth + 1, sum + choice[size_t(cand[i])]);
    }
  };
  rec(0, 0, 0.0);
  std::vector<double> weight(size_t(E), 0.0);
  double total = 0;
  for (int64_t e : best_pick) total += s[size_t(e)];
  for (int64_t e : best_pick) {
    double w = s[size_t(e)];
    if (c.norm_topk_prob && k > 1) w /= total;
    weight[size_t(e)] = w * c.routed_scaling_factor;
  }
  return weight;
}

// Checks route_tokens against the brute force on `trials` random tokens; returns how many tokens chose
// a different expert set than they would have without the correction bias.
int check_routing(const ModelConfig& c, int trials, float logit_std, float bias_range, uint32_t seed) {
  const int64_t E = c.n_routed_experts, k = c.num_experts_per_tok;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, logit_std);
  std::uniform_real_distribution<float> uniform(-bias_range, bias_range);
  std::vector<float> bias(static_cast<size_t>(E));
  for (float& b : bias) b = uniform(rng);
  std::vector<float> logits(size_t(trials * E));
  for (float& l : logits) l = normal(rng);
  std::vector<int32_t> idx(size_t(trials * k)), idx_nobias(size_t(trials * k));
  std::vector<float> w(size_t(trials * k)), w_nobias(size_t(trials * k));
  route_tokens(c, logits.data(), bias.data(), trials, idx.data(), w.data());
  route_tokens(c, logits.data(), nullptr, trials, idx_nobias.data(), w_nobias.data());
  int changed = 0;
  for (int t = 0; t < trials; ++t) {
    const std::vector<double> expected = brute_force_route(c, logits.data() + t * E, bias.data());
    std::vector<char> seen(size_t(E), 0);
    for (int64_t j = 0; j < k; ++j) {
      const int32_t e = idx[size_t(t * k + j)];
      if (e < 0 || e >= E) {
        ADD_FAILURE() << "expert index " << e << " out of range";
        return -1;
      }
      EXPECT_FALSE(seen[size_t(e)]) << "expert " << e << " chosen twice";
      seen[size_t(e)] = 1;
      EXPECT_GT(expected[size_t(e)], 0.0) << "token " << t << " chose expert " << e << " outside the best set";
      EXPECT_NEAR(w[size_t(t * k + j)], expected[size_t(e)], 1e-6 * (1 + expected[size_t(e)])) << "token " << t;
    }
    std::vector<int32_t> a(idx.begin() + t * k, idx.begin() + (t + 1) * k);
    std::vector<int32_t> b(idx_nobias.begin() + t * k, idx_nobias.begin() + (t + 1) * k);
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    changed += a != b;
  }
  return changed;
}

TEST(MoeRouting, V3NoauxTcMatchesBruteForce) {
  const ModelConfig c = routing_config(8, 3, 4, 2, true);
  const int changed = check_routing(c, 400, 1.5f, 0.1f, 1);
  EXPECT_GT(changed, 20) << "the correction bias should change some selections";
}

TEST(MoeRouting, V3NoauxTcLargerGroupsMatchesBruteForce) {
  const ModelConfig c = routing_config(32, 6, 8, 3, true);
  EXPECT_GT(check_routing(c, 200, 1.0f, 0.05f, 2), 10);
}

TEST(MoeRouting, V3SingleGroupMatchesBruteForce) {
  const ModelConfig c = routing_config(16, 4, 1, 1, true);
  EXPECT_GT(check_routing(c, 200, 1.0f, 0.1f, 3), 10);
}

TEST(MoeRouting, V2GreedyMatchesBruteForce) {
  const ModelConfig c = routing_config(16, 4, 1, 1, false);
  EXPECT_EQ(check_routing(c, 300, 2.0f, 0.1f, 4), 0) << "softmax/greedy routing ignores the correction bias";
}

TEST(MoeRouting, V2GroupLimitedGreedyMatchesBruteForce) {
  const ModelConfig c = routing_config(16, 4, 4, 2, false, TopkMethod::group_limited_greedy);
  check_routing(c, 300, 2.0f, 0.0f, 5);
}

TEST(MoeRouting, WeightsAreOrderedBySelectionScore) {
  const ModelConfig c = routing_config(8, 3, 4, 2, true);
  std::vector<float> logits = {0.1f, 2.0f, -1.0f, 0.5f, 3.0f, 0.2f, -0.3f, 1.0f};
  std::vector<int32_t> idx(3);
  std::vector<float> w(3);
  route_tokens(c, logits.data(), nullptr, 1, idx.data(), w.data());
  // Group scores (top-2 sums of sigmoid): g0 {0,1}, g1 {2,3}, g2 {4,5}, g3 {6,7} -> keep g2 and g0.
  EXPECT_EQ(idx, (std::vector<int32_t>{4, 1, 5}));
  const double s4 = 1 / (1 + std::exp(-3.0)), s1 = 1 / (1 + std::exp(-2.0)), s5 = 1 / (1 + std::exp(-0.2));
  EXPECT_NEAR(w[0], 2.5 * s4 / (s4 + s1 + s5), 1e-6);
  EXPECT_NEAR(w[0] + w[1] + w[2], 2.5, 1e-5);
}

// ---- MoE forward vs a per-token loop in double precision ----------------------------------------

std::vector<double> reference_mlp(const MlpWeights& m, const float* x) {
  const int64_t inter = m.gate_proj.rows, H = m.gate_proj.cols;
  std::vector<double> h(static_cast<size_t>(inter)), y(static_cast<size_t>(H));
  for (int64_t i = 0; i < inter; ++i) {
    double g = 0, u = 0;
    for (int64_t c = 0; c < H; ++c) {
      g += double(m.gate_proj.at(i, c)) * x[c];
      u += double(m.up_proj.at(i, c)) * x[c];
    }
    h[size_t(i)] = g / (1 + std::exp(-g)) * u;
  }
  for (int64_t r = 0; r < H; ++r) {
    double acc = 0;
    for (int64_t i = 0; i < inter; ++i) acc += double(m.down_proj.at(r, i)) * h[size_t(i)];
    y[size_t(r)] = acc;
  }
  return y;
}

void check_moe_against_loop(const ModelConfig& config, bool fp8) {
  testing::TempDir dir("moe");
  testing::write_tiny_checkpoint(config, dir.path(), 11, DType::BF16, fp8);
  auto model = load_model(dir.path());
  const int64_t H = config.hidden_size, E = config.n_routed_experts, k = config.num_experts_per_tok;
  const int64_t layer = config.first_k_dense_replace;
  const MoeWeights& w = model->weights.layers[size_t(layer)].moe;
  ASSERT_TRUE(model->weights.layers[size_t(layer)].is_moe);

  const int64_t n = 9;
  std::mt19937 rng(21);
  std::normal_distribution<float> normal;
  std::vector<float> x(size_t(n * H)), out(size_t(n * H));
  for (float& v : x) v = normal(rng);
  KVCache cache(model->config, 4);
  cache.scratch().reserve(model->config, n, cache.capacity(), 8);
  moe_forward(model->config, w, x.data(), n, Precision::f32, cache.scratch(), out.data());

  for (int64_t t = 0; t < n; ++t) {
    const float* xt = x.data() + t * H;
    std::vector<float> logits(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) {
      double acc = 0;
      for (int64_t c = 0; c < H; ++c) acc += double(w.gate.at(e, c)) * xt[c];
      logits[size_t(e)] = float(acc);
    }
    std::vector<int32_t> idx(static_cast<size_t>(k));
    std::vector<float> wt(static_cast<size_t>(k));
    route_tokens(model->config, logits.data(), w.correction_bias.empty() ? nullptr : w.correction_bias.as<float>(), 1,
                 idx.data(), wt.data());
    std::vector<double> y(size_t(H), 0.0);
    double scale = 0;
    for (int64_t j = 0; j < k; ++j) {
      const std::vector<double> ye = reference_mlp(w.experts[size_t(idx[size_t(j)])], xt);
      for (int64_t r = 0; r < H; ++r) y[size_t(r)] += wt[size_t(j)] * ye[size_t(r)];
    }
    if (w.has_shared) {
      const std::vector<double> ys = reference_mlp(w.shared, xt);
      for (int64_t r = 0; r < H; ++r) y[size_t(r)] += ys[size_t(r)];
    }
    for (double v : y) scale = std::max(scale, std::fabs(v));
    // f32 accumulation over <= 160-term dot products in three chained products: ~1e-5 relative.
    for (int64_t r = 0; r < H; ++r)
      ASSERT_NEAR(out[size_t(t * H + r)], y[size_t(r)], 2e-5 * scale + 1e-7) << "token " << t << " row " << r;
  }
}

TEST(MoeForward, V3MatchesPerTokenLoopBf16) { check_moe_against_loop(testing::tiny_v3_config(), false); }
TEST(MoeForward, V3MatchesPerTokenLoopFp8) { check_moe_against_loop(testing::tiny_v3_config(), true); }
TEST(MoeForward, V2MatchesPerTokenLoop) { check_moe_against_loop(testing::tiny_v2_config(), false); }

}  // namespace
}  // namespace dsv3
