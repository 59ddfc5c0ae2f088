// Helpers of the training gradient checks (test_train_grad*.cpp): random tensors and central finite
// differences in double precision.
//
// Error bound of a central difference with step h on an objective L computed in double:
//   truncation  h²/6 · |L'''|                      (~1e-10 relative for h = 1e-5 and smooth L)
//   rounding    ~ k·ε·|L| / h, ε = 2.2e-16          (k counts the roundings inside L: ~50 is generous)
// so |fd − g| <= rtol·|g| + atol with rtol = 1e-6 and atol = 50·ε·(|L| + 1)/h can only fail for a wrong g.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "model/config.h"

namespace dsv3::testing {

// A tiny DeepSeek-V3-shaped config: q_lora, YaRN (softmax scale and RoPE amplitude), sigmoid router
// with correction bias and group limits, normalised weights × 2.5, a shared expert, one MTP module.
inline ModelConfig v3_grad_config() {
  ModelConfig c;
  c.model_type = "deepseek_v3";
  c.vocab_size = 40;
  c.hidden_size = 24;
  c.intermediate_size = 20;
  c.moe_intermediate_size = 8;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 2;
  c.q_lora_rank = 12;
  c.kv_lora_rank = 10;
  c.qk_nope_head_dim = 6;
  c.qk_rope_head_dim = 4;
  c.v_head_dim = 6;
  c.n_routed_experts = 8;
  c.n_shared_experts = 1;
  c.num_experts_per_tok = 3;
  c.first_k_dense_replace = 1;
  c.n_group = 4;
  c.topk_group = 2;
  c.scoring_func = ScoringFunc::sigmoid;
  c.topk_method = TopkMethod::noaux_tc;
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 2.5;
  c.rope_scaling.yarn = true;
  c.rope_scaling.factor = 40.0;
  c.rope_scaling.mscale = 0.9;
  c.rope_scaling.mscale_all_dim = 1.0;
  c.rope_scaling.original_max_position_embeddings = 4096;
  c.max_position_embeddings = 163840;
  c.num_nextn_predict_layers = 1;
  return c;
}


inline std::vector<double> random_vector(int64_t n, uint32_t seed, double scale = 1.0) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> dist(0.0, scale);
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = dist(rng);
  return v;
}

inline double weighted_sum(const double* y, const double* r, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += y[i] * r[i];
  return s;
}

struct FdOptions {
  double step = 1e-5;
  double rtol = 1e-6;
  int64_t samples = 12;  // indices checked per tensor (all when the tensor is smaller)
  uint32_t seed = 1;
};

struct FdResult {
  int64_t checked = 0;
  int64_t skipped = 0;     // the objective was not smooth there (e.g. a routing decision flipped)
  double max_rel_err = 0;  // max |fd − g| / (|g| + atol)
};

// Compares grad[i] with the central difference of objective() in x[i] for a sample of indices.
// `valid` (optional) is called after each evaluation; returning false skips the sample.
inline FdResult check_gradient(const std::string& label, double* x, const double* grad, int64_t n,
                               const std::function<double()>& objective, const FdOptions& o = {},
                               const std::function<bool()>& valid = nullptr) {
  FdResult result;
  std::vector<int64_t> indices;
  if (n <= o.samples) {
    for (int64_t i = 0; i < n; ++i) indices.push_back(i);
  } else {
    std::mt19937 rng(o.seed + uint32_t(n));
    std::uniform_int_distribution<int64_t> dist(0, n - 1);
    for (int64_t s = 0; s < o.samples; ++s) indices.push_back(dist(rng));
  }
  for (int64_t i : indices) {
    const double saved = x[i];
    x[i] = saved + o.step;
    const double up = objective();
    bool ok = !valid || valid();
    x[i] = saved - o.step;
    const double down = objective();
    ok = ok && (!valid || valid());
    x[i] = saved;
    if (!ok) {
      ++result.skipped;
      continue;
    }
    const double fd = (up - down) / (2 * o.step);
    const double atol = 50 * 2.2e-16 * (std::fabs(up) + 1.0) / o.step;
    const double err = std::fabs(fd - grad[i]);
    result.max_rel_err = std::max(result.max_rel_err, err / (std::fabs(grad[i]) + atol));
    EXPECT_LE(err, o.rtol * std::fabs(grad[i]) + atol)
        << label << "[" << i << "]: analytic " << grad[i] << " vs finite difference " << fd;
    ++result.checked;
  }
  return result;
}

}  // namespace dsv3::testing
