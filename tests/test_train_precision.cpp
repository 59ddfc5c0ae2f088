// Training in BF16 and FP8 (train_ops.h ComputePrecision, train/fp8_linear.h): the FP8 linear GEMMs
// against their definition in double, and whole steps against the f32 step.
#include <gtest/gtest.h>

#include <cmath>
#include <algorithm>
#include <cstring>
#include <random>

#include "core/error.h"
#include "ops/fp8.h"
#include "test_train_grad_support.h"
#include "train/fp8_linear.h"
#include "train/train_step.h"

namespace dsv3 {
namespace {

std::vector<float> random_floats(int64_t n, uint32_t seed, float stddev) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = normal(rng);
  return v;
}

// The values an FP8 operand stands for: x quantized with `tiling` (E4M3, amax/448 scales) and dequantized.
std::vector<float> through_fp8(const std::vector<float>& x, int64_t rows, int64_t cols, Fp8Tiling tiling) {
  std::vector<uint8_t> q(x.size());
  std::vector<float> s(size_t(fp8_scale_rows(tiling, rows) * fp8_scale_cols(tiling, cols))), out(x.size());
  reference::quantize_fp8(x.data(), rows, cols, Fp8Format::e4m3, tiling, false, q.data(), s.data());
  Fp8Matrix m{q.data(), s.data(), rows, cols, Fp8Format::e4m3, tiling};
  dequantize_fp8(m, out.data());
  return out;
}

TEST(Fp8Linear, ThreeGemmsMatchTheirDefinition) {
  // Sizes with partial 128-tiles in every dimension.
  const int64_t n = 150, in = 200, out = 130;
  const std::vector<float> x = random_floats(n * in, 1, 1.0f), w = random_floats(out * in, 2, 0.05f);
  const std::vector<float> dy = random_floats(n * out, 3, 0.01f);
  Workspace<float> ws;
  ws.set_precision(ComputePrecision::fp8);
  std::vector<float> y(size_t(n * out)), dx(size_t(n * in), 0.5f), dw(size_t(out * in), 0.25f);
  fp8_linear_forward(ws, x.data(), w.data(), n, in, out, y.data());
  fp8_linear_dgrad(ws, dy.data(), w.data(), n, in, out, dx.data(), /*accumulate=*/true);
  fp8_linear_wgrad(ws, x.data(), dy.data(), n, in, out, dw.data());

  const std::vector<float> xq = through_fp8(x, n, in, Fp8Tiling::tile_1x128);
  const std::vector<float> wq = through_fp8(w, out, in, Fp8Tiling::block_128x128);
  const std::vector<float> dy_rows = through_fp8(dy, n, out, Fp8Tiling::tile_1x128);
  const std::vector<float> dy_cols = through_fp8(dy, n, out, Fp8Tiling::tile_128x1);
  const std::vector<float> x_cached = through_fp8(xq, n, in, Fp8Tiling::tile_128x1);  // 1×128, then 128×1
  auto check = [](const char* what, float got, double base, const double* a, const double* b, int64_t k) {
    double exact = base, abs_dot = std::fabs(base);
    for (int64_t i = 0; i < k; ++i) {
      exact += a[i] * b[i];
      abs_dot += std::fabs(a[i] * b[i]);
    }
    ASSERT_LE(std::fabs(double(got) - exact), fp8_gemm_error_bound(k, abs_dot) + 1e-7 * std::fabs(base)) << what;
  };
  std::vector<double> ra(size_t(std::max(in, std::max(out, n)))), rb(ra.size());
  for (int64_t t = 0; t < n; t += 7)
    for (int64_t o = 0; o < out; o += 5) {
      for (int64_t i = 0; i < in; ++i) {
        ra[size_t(i)] = xq[size_t(t * in + i)];
        rb[size_t(i)] = wq[size_t(o * in + i)];
      }
      check("fprop", y[size_t(t * out + o)], 0.0, ra.data(), rb.data(), in);
    }
  for (int64_t t = 0; t < n; t += 7)
    for (int64_t i = 0; i < in; i += 5) {
      for (int64_t o = 0; o < out; ++o) {
        ra[size_t(o)] = dy_rows[size_t(t * out + o)];
        rb[size_t(o)] = wq[size_t(o * in + i)];
      }
      check("dgrad", dx[size_t(t * in + i)], 0.5, ra.data(), rb.data(), out);
    }
  for (int64_t o = 0; o < out; o += 7)
    for (int64_t i = 0; i < in; i += 5) {
      for (int64_t t = 0; t < n; ++t) {
        ra[size_t(t)] = dy_cols[size_t(t * out + o)];
        rb[size_t(t)] = x_cached[size_t(t * in + i)];
      }
      check("wgrad", dw[size_t(o * in + i)], 0.25, ra.data(), rb.data(), n);
    }
}

// A DeepSeek-V3-shaped config wide enough for several 128-tiles per projection.
ModelConfig wide_config() {
  ModelConfig c = testing::v3_grad_config();
  c.hidden_size = 256;
  c.intermediate_size = 384;
  c.moe_intermediate_size = 160;
  c.q_lora_rank = 192;
  c.kv_lora_rank = 128;
  c.qk_nope_head_dim = 32;
  c.qk_rope_head_dim = 16;
  c.v_head_dim = 32;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.vocab_size = 300;
  return c;
}

struct StepResult {
  StepStats stats;
  std::vector<float> grads;
};

StepResult run_step(const ModelConfig& c, ComputePrecision precision, const std::vector<int32_t>& tokens,
                    int64_t batch, int64_t seq) {
  TrainParams<float> params(c);
  TrainInitOptions init;
  init.init_std = 0.02;
  init_random(params, 5, init);
  TrainParams<float> grads(params.layout_ptr());
  TrainOptions o;
  o.precision = precision;
  TrainActivations<float> acts(c, batch, seq, resolve_mtp_depth(c, o));
  StepResult r;
  r.stats = train_forward_backward(params, grads, acts, tokens.data(), o);
  r.grads.assign(grads.data(), grads.data() + grads.size());
  return r;
}

double cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ab += double(a[i]) * b[i];
    aa += double(a[i]) * a[i];
    bb += double(b[i]) * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

void check_tracks_f32(const ModelConfig& c, double bf16_cosine, double fp8_cosine) {
  const int64_t batch = 2, seq = 40;
  std::mt19937 rng(7);
  std::vector<int32_t> tokens(size_t(batch * (seq + 1)));
  for (int32_t& t : tokens) t = int32_t(rng() % uint32_t(c.vocab_size));
  const StepResult f32 = run_step(c, ComputePrecision::f32, tokens, batch, seq);
  const StepResult bf16 = run_step(c, ComputePrecision::bf16, tokens, batch, seq);
  const StepResult fp8 = run_step(c, ComputePrecision::fp8, tokens, batch, seq);
  std::printf("[ precision ] %s: loss f32 %.6f bf16 %.6f fp8 %.6f, gradient cosine to f32: bf16 %.5f fp8 %.5f\n",
              c.n_routed_experts > 0 && c.first_k_dense_replace < c.num_hidden_layers ? "MoE" : "dense",
              f32.stats.main_loss, bf16.stats.main_loss, fp8.stats.main_loss, cosine(bf16.grads, f32.grads),
              cosine(fp8.grads, f32.grads));
  // Loss: bf16 operands (8 significant bits) and E4M3 ones (4 bits, per-tile scales) perturb the logits
  // by ~0.4% and ~3% relative; the loss near ln V moves much less.
  EXPECT_NEAR(bf16.stats.main_loss, f32.stats.main_loss, 2e-3 * f32.stats.main_loss);
  EXPECT_NEAR(fp8.stats.main_loss, f32.stats.main_loss, 1e-2 * f32.stats.main_loss);
  EXPECT_NE(bf16.stats.main_loss, f32.stats.main_loss);
  EXPECT_NE(fp8.stats.main_loss, bf16.stats.main_loss);
  // The gradient keeps its direction (less so where a perturbed router picks other experts).
  EXPECT_GT(cosine(bf16.grads, f32.grads), bf16_cosine);
  EXPECT_GT(cosine(fp8.grads, f32.grads), fp8_cosine);
  EXPECT_LT(cosine(fp8.grads, f32.grads), cosine(bf16.grads, f32.grads));
  // And each is reproducible bit for bit.
  const StepResult fp8_again = run_step(c, ComputePrecision::fp8, tokens, batch, seq);
  EXPECT_EQ(std::memcmp(fp8.grads.data(), fp8_again.grads.data(), fp8.grads.size() * sizeof(float)), 0);
}

TEST(TrainPrecision, DenseStepsTrackF32) {
  ModelConfig c = wide_config();
  c.first_k_dense_replace = c.num_hidden_layers + c.num_nextn_predict_layers;  // no MoE layer
  check_tracks_f32(c, 0.9995, 0.99);
}

TEST(TrainPrecision, MoeStepsTrackF32) { check_tracks_f32(wide_config(), 0.99, 0.97); }

// Routing replay keeps the experts the previous step on the same activations chose, and only those:
// after the router's weights change, a replayed step routes as before, a normal one does not.
TEST(TrainPrecision, RoutingReplayKeepsThePreviousStepsExperts) {
  const ModelConfig c = wide_config();
  const int64_t batch = 2, seq = 40, K = c.num_experts_per_tok;
  std::mt19937 rng(11);
  std::vector<int32_t> tokens(size_t(batch * (seq + 1)));
  for (int32_t& t : tokens) t = int32_t(rng() % uint32_t(c.vocab_size));
  TrainParams<float> params(c);
  TrainInitOptions init;
  init.init_std = 0.02;
  init_random(params, 5, init);
  TrainParams<float> grads(params.layout_ptr());
  TrainOptions o;
  TrainActivations<float> acts(c, batch, seq, resolve_mtp_depth(c, o));
  const auto routing = [&] {
    std::vector<int32_t> all;
    for (const BlockSaved<float>& layer : acts.layers)
      if (layer.moe.indices) all.insert(all.end(), layer.moe.indices, layer.moe.indices + batch * seq * K);
    return all;
  };
  train_forward_backward(params, grads, acts, tokens.data(), o);
  const std::vector<int32_t> first = routing();
  ASSERT_FALSE(first.empty());
  // Another router: reverse each gate's rows so that every token prefers other experts.
  for (const ParamInfo& t : params.layout().tensors)
    if (t.role == TensorRole::router_gate && !t.alias) {
      float* g = params.data() + t.offset;
      const int64_t E = t.shape[0], H = t.numel / E;
      for (int64_t e = 0; e < E / 2; ++e) std::swap_ranges(g + e * H, g + (e + 1) * H, g + (E - 1 - e) * H);
    }
  TrainOptions replay = o;
  replay.moe.replay_routing = true;
  grads.zero();
  train_forward_backward(params, grads, acts, tokens.data(), replay);
  EXPECT_EQ(routing(), first);
  grads.zero();
  train_forward_backward(params, grads, acts, tokens.data(), o);
  EXPECT_NE(routing(), first);
}

TEST(TrainPrecision, DoubleStepsRefuseLowPrecision) {
  Workspace<double> ws;
  EXPECT_THROW(ws.set_precision(ComputePrecision::bf16), Error);
  EXPECT_EQ(parse_compute_precision("fp8"), ComputePrecision::fp8);
  EXPECT_THROW(parse_compute_precision("fp16"), Error);
}

}  // namespace
}  // namespace dsv3
