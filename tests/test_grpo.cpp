// GRPO's objective on the training path (rl/grpo.h): its gradient against finite differences in double
// for each loss type with clipping and KL active; with β = 0 and π_old = π_θ its gradient is the
// hand-derived policy gradient (1/N) Σ_i A_i ∇(mean CE of completion i); the training path's
// log-probabilities of a completion equal the inference engine's within 1e-4 in f32; advantages.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "model/model.h"
#include "rl/grpo.h"
#include "test_support.h"
#include "test_train_grad_support.h"
#include "train/train_model.h"
#include "train/train_step.h"

namespace dsv3 {
namespace {

// N sequences of S + 1 tokens: prompt (prompt[b] tokens), completion (completion[b]), padding. Fills the
// activations' documents and masks and the batch's row → completion map.
struct Rollouts {
  int64_t N = 3, S = 11;
  std::vector<int64_t> prompt = {3, 5, 2}, completion = {6, 4, 8};
  std::vector<int32_t> tokens;
  std::vector<int32_t> document_start;
  std::vector<uint8_t> mask;
  GrpoBatch batch;

  explicit Rollouts(int64_t vocab) {
    std::mt19937 rng(5);
    tokens.resize(size_t(N * (S + 1)));
    for (int32_t& t : tokens) t = int32_t(rng() % uint32_t(vocab));
    document_start.assign(tokens.size(), 0);
    mask.assign(tokens.size(), 0);
    batch.sequence.assign(size_t(N * S), -1);
    for (int64_t b = 0; b < N; ++b) {
      const int64_t end = prompt[size_t(b)] + completion[size_t(b)];
      for (int64_t t = end; t <= S; ++t) document_start[size_t(b * (S + 1) + t)] = int32_t(end);  // padding
      for (int64_t t = prompt[size_t(b)]; t < end; ++t) {
        mask[size_t(b * (S + 1) + t)] = 1;
        batch.sequence[size_t(b * S + t - 1)] = int32_t(b);  // row t − 1 predicts token t
      }
      batch.length.push_back(completion[size_t(b)]);
    }
  }
  template <typename T>
  void use(TrainActivations<T>& acts) const {
    acts.document_start = document_start;
    acts.loss_mask = mask;
  }
};

template <typename T>
std::vector<double> current_logp(TrainParams<T>& params, TrainActivations<T>& acts, const Rollouts& r,
                                 TrainOptions o) {
  std::vector<double> logp(size_t(r.N * r.S), NAN);
  LogProbRecorder rec(logp);
  o.token_objective = &rec;
  r.use(acts);
  train_forward(params, acts, r.tokens.data(), o);
  return logp;
}

// A small model in double (no MTP: the objective replaces the main head's loss), its rollouts and
// activations.
struct SmallPolicy {
  ModelConfig c = [] {
    ModelConfig m = testing::v3_grad_config();
    m.num_nextn_predict_layers = 0;
    return m;
  }();
  TrainParams<double> params{c};
  Rollouts r{c.vocab_size};
  TrainActivations<double> acts{c, r.N, r.S, 0};
  TrainOptions o;
  explicit SmallPolicy(uint64_t seed) {
    init_random(params, seed, TrainInitOptions{0.3});
    o.mtp_depth = 0;
  }
};

TEST(Grpo, GradientMatchesFiniteDifferences) {
  SmallPolicy su(3);
  TrainParams<double>& params = su.params;
  Rollouts& r = su.r;
  TrainActivations<double>& acts = su.acts;
  TrainOptions& o = su.o;
  const std::vector<double> now = current_logp(params, acts, r, o);
  std::mt19937 rng(9);
  std::uniform_real_distribution<double> noise(-0.4, 0.4);
  r.batch.old_logp = now;
  r.batch.ref_logp = now;
  for (size_t i = 0; i < now.size(); ++i) {
    r.batch.old_logp[i] += noise(rng);  // ratios away from 1: some clipped
    r.batch.ref_logp[i] += noise(rng);
  }
  r.batch.advantage = {0.9, -1.3, 0.4};
  for (GrpoLoss loss : {GrpoLoss::grpo, GrpoLoss::dr_grpo, GrpoLoss::dapo}) {
    GrpoOptions go;
    go.beta = 0.1;
    go.epsilon = 0.2;
    go.epsilon_high = 0.28;
    go.loss = loss;
    go.max_completion_length = 9;
    GrpoObjective objective(go, r.batch);
    o.token_objective = &objective;
    TrainParams<double> grads(params.layout_ptr());
    const StepStats st = train_forward_backward(params, grads, acts, r.tokens.data(), o);
    EXPECT_GT(objective.clip_fraction(), 0.05) << grpo_loss_name(loss);  // the clip binds somewhere
    EXPECT_LT(objective.clip_fraction(), 0.95);
    EXPECT_GT(objective.mean_kl(), 0);
    const auto value = [&] { return train_forward(params, acts, r.tokens.data(), o).loss; };
    EXPECT_NEAR(value(), st.loss, 1e-12);
    testing::FdOptions fd;
    fd.samples = 3;
    int64_t checked = 0;
    for (const ParamInfo& info : params.layout().tensors) {
      if (info.alias || !info.trainable()) continue;
      fd.seed += 7;
      checked += testing::check_gradient(info.name + " (" + grpo_loss_name(loss) + ")", params.data() + info.offset,
                                         grads.data() + info.offset, info.numel, value, fd)
                     .checked;
    }
    EXPECT_GT(checked, 30);
  }
}

TEST(Grpo, OneIterationWithoutKlIsThePolicyGradient) {
  SmallPolicy su(4);
  const ModelConfig& c = su.c;
  TrainParams<double>& params = su.params;
  Rollouts& r = su.r;
  TrainActivations<double>& acts = su.acts;
  TrainOptions& o = su.o;
  r.batch.old_logp = current_logp(params, acts, r, o);  // the rollouts' policy is the current one
  r.batch.ref_logp = r.batch.old_logp;
  r.batch.advantage = group_advantages({1.0, 0.1, 0.0}, 3, true);
  GrpoOptions go;
  go.beta = 0;
  GrpoObjective objective(go, r.batch);
  o.token_objective = &objective;
  TrainParams<double> grads(params.layout_ptr());
  train_forward_backward(params, grads, acts, r.tokens.data(), o);
  EXPECT_EQ(objective.clip_fraction(), 0);
  // By hand: L = −(1/N) Σ_i (A_i/|o_i|) Σ_t log π(o_it) = (1/N) Σ_i A_i · meanCE_i.
  std::vector<double> expected(size_t(grads.size()), 0.0);
  for (int64_t b = 0; b < r.N; ++b) {
    TrainActivations<double> one(c, 1, r.S, 0);
    one.document_start.assign(r.document_start.begin() + b * (r.S + 1), r.document_start.begin() + (b + 1) * (r.S + 1));
    one.loss_mask.assign(r.mask.begin() + b * (r.S + 1), r.mask.begin() + (b + 1) * (r.S + 1));
    TrainParams<double> g(params.layout_ptr());
    TrainOptions ce;
    ce.mtp_depth = 0;
    train_forward_backward(params, g, one, r.tokens.data() + b * (r.S + 1), ce);
    for (int64_t i = 0; i < g.size(); ++i) expected[size_t(i)] += r.batch.advantage[size_t(b)] * g.data()[i] / double(r.N);
  }
  double largest = 0;
  for (double v : expected) largest = std::max(largest, std::fabs(v));
  ASSERT_GT(largest, 0);
  for (int64_t i = 0; i < grads.size(); ++i) ASSERT_NEAR(grads.data()[i], expected[size_t(i)], 1e-9 * largest) << i;
}

TEST(Grpo, TrainingLogProbsEqualTheInferenceEngines) {
  ModelConfig c = testing::tiny_v3_config();
  c.num_nextn_predict_layers = 0;
  TrainParams<float> params(c);
  init_random(params, 6, TrainInitOptions{0.05});
  testing::TempDir dir("grpo_logp");
  save_params(params, dir.path(), DType::F32);
  const auto model = load_model(dir.path());
  Rollouts r(c.vocab_size);
  TrainActivations<float> acts(c, r.N, r.S, 0);
  TrainOptions o;
  o.mtp_depth = 0;
  o.precision = ComputePrecision::f32;
  const std::vector<double> train = current_logp(params, acts, r, o);
  ForwardOptions fo;
  fo.precision = Precision::f32;
  fo.all_logits = true;
  double worst = 0;
  int64_t compared = 0;
  for (int64_t b = 0; b < r.N; ++b) {
    const int64_t n = r.prompt[size_t(b)] + r.completion[size_t(b)];
    KVCache cache(c, n);
    Tensor logits;
    forward(*model, cache, r.tokens.data() + b * (r.S + 1), n - 1, fo, &logits);
    const float* l = logits.as<float>();
    for (int64_t t = r.prompt[size_t(b)] - 1; t < n - 1; ++t) {
      const float* row = l + t * c.vocab_size;
      double top = row[0], sum = 0;
      for (int64_t v = 0; v < c.vocab_size; ++v) top = std::max(top, double(row[v]));
      for (int64_t v = 0; v < c.vocab_size; ++v) sum += std::exp(double(row[v]) - top);
      const double inference = double(row[r.tokens[size_t(b * (r.S + 1) + t + 1)]]) - top - std::log(sum);
      worst = std::max(worst, std::fabs(inference - train[size_t(b * r.S + t)]));
      ++compared;
    }
  }
  EXPECT_EQ(compared, 6 + 4 + 8);
  EXPECT_LE(worst, 1e-4);
}

TEST(Grpo, GroupAdvantages) {
  const std::vector<double> a = group_advantages({1, 0, 0, 1, 1, 1}, 3, true);
  EXPECT_NEAR(a[0], (1 - 1.0 / 3) / (std::sqrt(1.0 / 3) + 1e-4), 1e-12);  // unbiased std of {1, 0, 0}
  EXPECT_NEAR(a[1] + a[2] + a[0], 0, 1e-12);
  EXPECT_EQ(a[3], 0);  // a group whose rewards are all equal carries no signal
  const std::vector<double> dr = group_advantages({1, 0, 0}, 3, false);
  EXPECT_NEAR(dr[0], 2.0 / 3, 1e-12);
  EXPECT_THROW(group_advantages({1, 0}, 3, true), Error);
  EXPECT_THROW(parse_grpo_loss("ppo"), Error);
}

}  // namespace
}  // namespace dsv3
