// Group Relative Policy Optimization (SPEC.md §6; DeepSeekMath §4.1, DeepSeek-R1): the objective of
// `dsv3 grpo`, as a per-token objective of the training path (train/loss_train.h's TokenObjective), so
// the policy's log-probabilities and their gradients come from the same model code as pretraining.
//
// For a group of G completions o_1 … o_G of one prompt with rewards r_i:
//   advantage  A_i = (r_i − mean(r)) / (std(r) + 1e-4)   (std unbiased, as TRL computes it)
//              A_i = r_i − mean(r)                        (Dr. GRPO: no std scaling)
// and for every token t of o_i, with ρ = π_θ(o_it) / π_old(o_it):
//   ℓ_it = −[ min(ρ A_i, clip(ρ, 1 − ε_low, 1 + ε_high) A_i) − β · KL_it ]
//   KL_it = π_ref/π_θ − log(π_ref/π_θ) − 1               (the k3 estimator, ≥ 0)
// averaged as the loss type says:
//   grpo     (1/N) Σ_i (1/|o_i|) Σ_t ℓ_it                 per-sequence means, then over the N sequences
//   dr_grpo  (1/(N · L_max)) Σ_i Σ_t ℓ_it                  a constant normaliser (L_max: the completion limit)
//   dapo     (1/Σ_i |o_i|) Σ_i Σ_t ℓ_it                    the token-level mean
// The derivative with respect to log π_θ(o_it): −A_i ρ where the unclipped term is the smaller (0 where
// the clip binds), plus β (1 − π_ref/π_θ).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "train/loss_train.h"

namespace dsv3 {

enum class GrpoLoss { grpo, dr_grpo, dapo };
GrpoLoss parse_grpo_loss(std::string_view name);  // "grpo", "dr_grpo", "dapo"
const char* grpo_loss_name(GrpoLoss loss);

struct GrpoOptions {
  double beta = 0.04;          // β, the KL weight (TRL's default)
  double epsilon = 0.2;        // ε_low
  double epsilon_high = -1;    // ε_high (DAPO's clip-higher); < 0: ε_low
  GrpoLoss loss = GrpoLoss::grpo;
  int64_t max_completion_length = 256;  // L_max, Dr. GRPO's normaliser
  double high() const { return epsilon_high < 0 ? epsilon : epsilon_high; }
};

// Advantages of rewards in groups of `group` consecutive completions.
std::vector<double> group_advantages(const std::vector<double>& rewards, int64_t group, bool scale_by_std);

// The training batch's view of the completions: target row r (b·seq + t of train_step.h) belongs to
// completion sequence[r] (−1: a prompt or padding row, not counted), with its sampling-time and
// reference log-probabilities; advantage and length per completion.
struct GrpoBatch {
  std::vector<int32_t> sequence;                // [rows]
  std::vector<double> old_logp, ref_logp;       // [rows]
  std::vector<double> advantage;                // [completions]
  std::vector<int64_t> length;                  // [completions]: tokens counted
};

// Records each counted row's log-probability into `logp` (π_old and π_ref of a rollout batch); the
// objective is 0, so a forward with it is a pure measurement.
class LogProbRecorder final : public TokenObjective {
 public:
  explicit LogProbRecorder(std::vector<double>& logp) : logp_(logp) {}
  double gradient(int64_t row, double logp) override {
    logp_[size_t(row)] = logp;
    return 0;
  }
  double value() const override { return 0; }
  void reset() override {}

 private:
  std::vector<double>& logp_;
};

class GrpoObjective final : public TokenObjective {
 public:
  GrpoObjective(const GrpoOptions& options, const GrpoBatch& batch);
  double gradient(int64_t row, double logp) override;
  double value() const override { return value_; }
  void reset() override;

  // Over the rows seen since reset(): mean KL per token, the fraction of tokens whose ratio the clip
  // binds, and the mean ratio.
  double mean_kl() const { return tokens_ ? kl_ / double(tokens_) : 0; }
  double clip_fraction() const { return tokens_ ? double(clipped_) / double(tokens_) : 0; }
  double mean_ratio() const { return tokens_ ? ratio_ / double(tokens_) : 0; }

 private:
  double weight(int32_t sequence) const;  // the loss type's normaliser of one token of `sequence`
  GrpoOptions options_;
  const GrpoBatch& batch_;
  int64_t total_tokens_ = 0;
  double value_ = 0, kl_ = 0, ratio_ = 0;
  int64_t tokens_ = 0, clipped_ = 0;
};

}  // namespace dsv3
