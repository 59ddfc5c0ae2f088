// The optimizer side of training (train/optimizer.h): the LR schedule, AdamW against a plain
// double-precision transcription of its update, clipping, state save/load, MaxVio and the
// auxiliary-loss-free bias update.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "core/error.h"
#include "core/parallel.h"
#include "test_support.h"
#include "test_train_grad_support.h"
#include "train/optimizer.h"

namespace dsv3 {
namespace {

using testing::TempDir;
using testing::error_of;

TEST(LrSchedule, WarmupConstantCosineFinal) {
  LrSchedule s;
  s.peak = 1e-3;
  s.final_lr = 1e-4;
  s.warmup_steps = 10;
  s.decay_start = 50;
  s.decay_end = 90;
  s.validate();
  EXPECT_DOUBLE_EQ(s.lr(0), 1e-4);  // peak / warmup at the first update, not 0
  EXPECT_DOUBLE_EQ(s.lr(4), 5e-4);
  EXPECT_DOUBLE_EQ(s.lr(9), 1e-3);
  EXPECT_DOUBLE_EQ(s.lr(10), 1e-3);
  EXPECT_DOUBLE_EQ(s.lr(49), 1e-3);
  EXPECT_DOUBLE_EQ(s.lr(50), 1e-3);               // the cosine starts at the peak
  EXPECT_NEAR(s.lr(70), (1e-3 + 1e-4) / 2, 1e-15);  // halfway down
  EXPECT_DOUBLE_EQ(s.lr(90), 1e-4);
  EXPECT_DOUBLE_EQ(s.lr(1000), 1e-4);
  for (int64_t t = 51; t < 90; ++t) EXPECT_LT(s.lr(t), s.lr(t - 1)) << t;
}

TEST(LrSchedule, DeepSeekV3ShapeScalesWithTheRun) {
  // TR §4.2 over 14.8T tokens: constant to 10T, cosine to 14.3T, peak/10 for the rest.
  const LrSchedule s = LrSchedule::deepseek_v3(1480, 2.2e-4);
  EXPECT_EQ(s.warmup_steps, 30);
  EXPECT_EQ(s.decay_start, 1000);
  EXPECT_EQ(s.decay_end, 1430);
  EXPECT_DOUBLE_EQ(s.final_lr, 2.2e-5);
  EXPECT_DOUBLE_EQ(LrSchedule::deepseek_v3(10'000'000).warmup_steps, 2000);  // the report's 2K steps
  EXPECT_EQ(LrSchedule::deepseek_v3(3).warmup_steps, 1);
  LrSchedule::deepseek_v3(3).validate();
  LrSchedule::deepseek_v3(1).validate();
}

TEST(LrSchedule, ValidateNamesTheProblem) {
  LrSchedule s;
  s.peak = -1;
  EXPECT_NE(error_of([&] { s.validate(); }).find("learning rate must be >= 0"), std::string::npos);
  s = LrSchedule{};
  s.warmup_steps = 100;
  s.decay_start = 50;
  s.decay_end = 80;
  EXPECT_NE(error_of([&] { s.validate(); }).find("after the warm-up"), std::string::npos);
}

// A tiny V3 layout (MTP aliases, norms, router bias) with random parameters and gradients.
struct Fixture {
  TrainParams<float> params{testing::v3_grad_config()};
  TrainParams<float> grads{params.layout_ptr()};
  Fixture(uint32_t seed = 1, float grad_scale = 0.01f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (int64_t i = 0; i < params.size(); ++i) params.data()[i] = 0.1f * normal(rng);
    fill_grads(seed + 100, grad_scale);
  }
  void fill_grads(uint32_t seed, float scale) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (int64_t i = 0; i < grads.size(); ++i) grads.data()[i] = scale * normal(rng);
  }
};

// AdamW as PyTorch documents it, in double, element by element (weight decay only where `decay`).
struct ReferenceAdamW {
  std::vector<double> m, v;
  int64_t t = 0;
  void step(double* p, const float* g, const std::vector<bool>& updated, const std::vector<bool>& decay, size_t n,
            double lr, const AdamWOptions& o, double grad_factor) {
    m.resize(n, 0.0);
    v.resize(n, 0.0);
    ++t;
    for (size_t i = 0; i < n; ++i) {
      if (!updated[i]) continue;
      const double gi = double(g[i]) * grad_factor;
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * gi;
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * gi * gi;
      const double mhat = m[i] / (1 - std::pow(o.beta1, double(t)));
      const double vhat = v[i] / (1 - std::pow(o.beta2, double(t)));
      if (decay[i]) p[i] *= 1 - lr * o.weight_decay;
      p[i] -= lr * mhat / (std::sqrt(vhat) + o.eps);
    }
  }
};

TEST(AdamW, MatchesADoublePrecisionTranscriptionWithClipping) {
  Fixture f(3, 0.5f);  // gradients large enough that the global norm exceeds 1 and is clipped
  const ParamLayout& layout = f.params.layout();
  const size_t n = size_t(f.params.size());
  std::vector<bool> updated(n, false), decay(n, false);
  for (const ParamInfo& p : layout.tensors) {
    if (p.alias || !p.trainable()) continue;
    for (int64_t i = 0; i < p.numel; ++i) {
      updated[size_t(p.offset + i)] = true;
      decay[size_t(p.offset + i)] = p.role != TensorRole::norm;
    }
  }
  std::vector<double> expected(n);
  for (size_t i = 0; i < n; ++i) expected[i] = f.params.data()[i];
  AdamWOptions o;  // β 0.9/0.95, wd 0.1, clip 1.0 (SPEC.md §2)
  AdamW adam(f.params.layout_ptr(), o);
  ReferenceAdamW ref;
  const double grad_scale = 0.5;  // as with 2 accumulated micro-batches
  for (int step = 0; step < 4; ++step) {
    f.fill_grads(50 + step, step == 0 ? 0.5f : 0.002f);
    double norm_sq = 0;
    for (size_t i = 0; i < n; ++i)
      if (updated[i]) norm_sq += double(f.grads.data()[i]) * f.grads.data()[i];
    const double norm = std::sqrt(norm_sq) * grad_scale;
    const double clip = norm > o.clip_norm ? o.clip_norm / (norm + 1e-6) : 1.0;
    const double lr = 1e-2 * (step + 1);
    const OptimizerStepStats stats = adam.step(f.params, f.grads, lr, grad_scale);
    EXPECT_NEAR(stats.grad_norm, norm, 1e-9 * norm);
    EXPECT_NEAR(stats.clip_scale, clip, 1e-12);
    if (step == 0) {
      EXPECT_LT(stats.clip_scale, 1.0);
    } else {
      EXPECT_EQ(stats.clip_scale, 1.0);
    }
    ref.step(expected.data(), f.grads.data(), updated, decay, n, lr, o, grad_scale * clip);
  }
  EXPECT_EQ(adam.steps(), 4);
  double worst = 0;
  for (size_t i = 0; i < n; ++i) worst = std::max(worst, std::fabs(double(f.params.data()[i]) - expected[i]));
  EXPECT_LT(worst, 2e-6);  // float arithmetic of ~10 operations per step on values of order 0.1
  // The correction bias is not touched by AdamW, norms moved but were not decayed (checked above).
  const ParamInfo& bias = layout.at("model.layers.1.mlp.gate.e_score_correction_bias");
  for (int64_t i = 0; i < bias.numel; ++i)
    EXPECT_EQ(f.params.data()[bias.offset + i], float(expected[size_t(bias.offset + i)]));
}

TEST(AdamW, Bf16MomentsStayCloseToF32) {
  Fixture a(4), b(4);
  AdamWOptions o;
  AdamW f32(a.params.layout_ptr(), o);
  o.moments = MomentDtype::bf16;
  AdamW bf16(b.params.layout_ptr(), o);
  for (int step = 0; step < 5; ++step) {
    a.fill_grads(60 + step, 0.01f);
    b.fill_grads(60 + step, 0.01f);
    f32.step(a.params, a.grads, 1e-3);
    bf16.step(b.params, b.grads, 1e-3);
  }
  double worst = 0;
  for (int64_t i = 0; i < a.params.size(); ++i)
    worst = std::max(worst, double(std::fabs(a.params.data()[i] - b.params.data()[i])));
  // Each update moves a weight by at most ~lr; BF16 moments (8 significant bits) change it by a few %.
  EXPECT_GT(worst, 0.0);
  EXPECT_LT(worst, 5 * 1e-3 * 0.05);
}

TEST(AdamW, NormAndUpdateDoNotDependOnTheThreadCount) {
  const int threads = num_threads();
  Fixture a(5), b(5);
  AdamW adam_a(a.params.layout_ptr(), {}), adam_b(b.params.layout_ptr(), {});
  set_num_threads(1);
  const double norm1 = global_grad_norm(a.grads);
  adam_a.step(a.params, a.grads, 1e-3);
  set_num_threads(2);
  const double norm2 = global_grad_norm(b.grads);
  adam_b.step(b.params, b.grads, 1e-3);
  set_num_threads(threads);
  EXPECT_EQ(norm1, norm2);
  EXPECT_EQ(std::memcmp(a.params.data(), b.params.data(), size_t(a.params.size()) * sizeof(float)), 0);
}

TEST(AdamW, SavedStateContinuesBitIdentically) {
  for (MomentDtype moments : {MomentDtype::f32, MomentDtype::bf16}) {
    TempDir dir("adamw");
    AdamWOptions o;
    o.moments = moments;
    Fixture a(6), b(6);
    AdamW straight(a.params.layout_ptr(), o), first(b.params.layout_ptr(), o);
    for (int step = 0; step < 2; ++step) {
      a.fill_grads(70 + step, 0.01f);
      b.fill_grads(70 + step, 0.01f);
      straight.step(a.params, a.grads, 1e-3);
      first.step(b.params, b.grads, 1e-3);
    }
    first.save(dir.sub("opt.safetensors"));
    AdamW resumed(b.params.layout_ptr(), o);
    resumed.load(dir.sub("opt.safetensors"));
    EXPECT_EQ(resumed.steps(), 2);
    for (int step = 2; step < 4; ++step) {
      a.fill_grads(70 + step, 0.01f);
      b.fill_grads(70 + step, 0.01f);
      straight.step(a.params, a.grads, 1e-3);
      resumed.step(b.params, b.grads, 1e-3);
    }
    EXPECT_EQ(std::memcmp(a.params.data(), b.params.data(), size_t(a.params.size()) * sizeof(float)), 0);
  }
}

TEST(AdamW, LoadRefusesAnotherMomentDtypeOrModel) {
  TempDir dir("adamw_errors");
  Fixture f;
  AdamW(f.params.layout_ptr(), {}).save(dir.sub("opt.safetensors"));
  AdamWOptions bf16;
  bf16.moments = MomentDtype::bf16;
  AdamW other(f.params.layout_ptr(), bf16);
  EXPECT_NE(error_of([&] { other.load(dir.sub("opt.safetensors")); }).find("--adam-moments"), std::string::npos);
  ModelConfig bigger = testing::v3_grad_config();
  bigger.hidden_size = 32;
  TrainParams<float> p2(bigger);
  AdamW wrong(p2.layout_ptr(), {});
  EXPECT_NE(error_of([&] { wrong.load(dir.sub("opt.safetensors")); }).find("the model needs"), std::string::npos);
  EXPECT_NE(error_of([&] { wrong.load(dir.sub("missing.safetensors")); }), "(no error)");
}

TEST(AdamW, DivergedGradientsAreReported) {
  Fixture f;
  f.grads.data()[5] = NAN;
  AdamW adam(f.params.layout_ptr(), {});
  EXPECT_NE(error_of([&] { adam.step(f.params, f.grads, 1e-3); }).find("diverged"), std::string::npos);
}

TEST(LoadBalance, MaxViolation) {
  EXPECT_DOUBLE_EQ(max_violation({4, 4, 4, 4}), 0.0);
  EXPECT_DOUBLE_EQ(max_violation({16, 0, 0, 0}), 3.0);  // everything on one of four experts
  EXPECT_DOUBLE_EQ(max_violation({6, 2, 4, 4}), 0.5);
  EXPECT_DOUBLE_EQ(max_violation({0, 0}), 0.0);
  EXPECT_DOUBLE_EQ(max_violation({}), 0.0);
}

TEST(LoadBalance, BiasMovesTowardTheMeanLoad) {
  TrainParams<float> params(testing::v3_grad_config());  // 8 experts, MoE layers 1 and 2 (MTP)
  const std::string name1 = "model.layers.1.mlp.gate.e_score_correction_bias";
  const std::string name2 = "model.layers.2.mlp.gate.e_score_correction_bias";
  params.get(name1)[0] = 0.5f;
  // Layer 1: mean 6 → underloaded experts gain γ, overloaded lose γ, exactly-mean ones stay.
  const std::vector<int64_t> load1 = {10, 2, 6, 6, 6, 6, 6, 6};
  const std::vector<int64_t> load2 = {6, 6, 6, 6, 6, 6, 6, 6};
  update_correction_biases(params, {1, 2}, {load1, load2}, 0.001);
  EXPECT_FLOAT_EQ(params.get(name1)[0], 0.5f - 0.001f);
  EXPECT_FLOAT_EQ(params.get(name1)[1], 0.001f);
  for (int e = 2; e < 8; ++e) EXPECT_EQ(params.get(name1)[e], 0.0f);
  for (int e = 0; e < 8; ++e) EXPECT_EQ(params.get(name2)[e], 0.0f);
  update_correction_biases(params, {1}, {load1}, 0.0);  // γ = 0 disables
  EXPECT_FLOAT_EQ(params.get(name1)[1], 0.001f);
  EXPECT_NE(error_of([&] { update_correction_biases(params, {0}, {load1}, 0.001); }).find("no correction bias"),
            std::string::npos);
}

}  // namespace
}  // namespace dsv3

namespace dsv3 {
namespace {

// ZeRO-1's pieces without MPI: two optimizers over halves of the arena (whole chunks each), stepping
// with the whole arena's Σ g² assembled from their chunk partials, update the parameters exactly as one
// optimizer over everything; a saved whole state loads into shards and continues identically.
TEST(AdamW, ShardsTogetherEqualTheWholeOptimizer) {
  for (MomentDtype moments : {MomentDtype::f32, MomentDtype::bf16}) {
    testing::TempDir dir("adamw_shards");
    AdamWOptions o;
    o.moments = moments;
    o.clip_norm = 0.05;  // the norm matters: clipping is on
    const ModelConfig config = testing::tiny_v3_config();
    TrainParams<float> whole_p(config), shard_p(config);
    TrainParams<float> grads(whole_p.layout_ptr());
    const int64_t total = whole_p.size(), chunks = (total + kOptimizerChunk - 1) / kOptimizerChunk;
    ASSERT_GE(chunks, 4);
    const int64_t cut = (chunks / 2) * kOptimizerChunk;
    std::mt19937 rng(3);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (int64_t i = 0; i < total; ++i) whole_p.data()[i] = shard_p.data()[i] = 0.1f * normal(rng);
    AdamW whole(whole_p.layout_ptr(), o), low(shard_p.layout_ptr(), o, 0, cut), high(shard_p.layout_ptr(), o, cut);
    for (int step = 0; step < 3; ++step) {
      for (int64_t i = 0; i < total; ++i) grads.data()[i] = 0.01f * normal(rng);
      if (step == 2) {  // continue from a saved whole state, loaded into the shards
        whole.save(dir.sub("opt.safetensors"));
        low = AdamW(shard_p.layout_ptr(), o, 0, cut);
        high = AdamW(shard_p.layout_ptr(), o, cut);
        low.load(dir.sub("opt.safetensors"));
        high.load(dir.sub("opt.safetensors"));
      }
      const OptimizerStepStats w = whole.step(whole_p, grads, 1e-3);
      double sum = 0;
      for (double p : grad_square_partials(grads, 0, chunks)) sum += p;
      const OptimizerStepStats a = low.step_shard(shard_p, grads, 1e-3, 1.0, sum);
      high.step_shard(shard_p, grads, 1e-3, 1.0, sum);
      EXPECT_EQ(a.grad_norm, w.grad_norm);
      EXPECT_LT(w.clip_scale, 1.0);
      ASSERT_EQ(std::memcmp(whole_p.data(), shard_p.data(), size_t(total) * sizeof(float)), 0) << "step " << step;
    }
    EXPECT_NE(testing::error_of([&] { low.save(dir.sub("x.safetensors")); }).find("gather the shards"),
              std::string::npos);
    EXPECT_NE(testing::error_of([&] { AdamW(shard_p.layout_ptr(), o, 100, cut); }).find("whole"), std::string::npos);
  }
}

}  // namespace
}  // namespace dsv3
