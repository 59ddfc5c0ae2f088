#include "rl/grpo.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace dsv3 {

GrpoLoss parse_grpo_loss(std::string_view name) {
  if (name == "grpo") return GrpoLoss::grpo;
  if (name == "dr_grpo") return GrpoLoss::dr_grpo;
  if (name == "dapo") return GrpoLoss::dapo;
  DSV3_FAIL("[grpo] unknown --loss-type \"", name, "\": choose grpo, dr_grpo or dapo");
}

const char* grpo_loss_name(GrpoLoss loss) {
  switch (loss) {
    case GrpoLoss::grpo: return "grpo";
    case GrpoLoss::dr_grpo: return "dr_grpo";
    case GrpoLoss::dapo: return "dapo";
  }
  return "?";
}

std::vector<double> group_advantages(const std::vector<double>& rewards, int64_t group, bool scale_by_std) {
  DSV3_CHECK(group >= 1 && int64_t(rewards.size()) % group == 0, "[grpo] ", rewards.size(),
             " rewards do not form groups of ", group);
  std::vector<double> advantages(rewards.size());
  for (size_t g0 = 0; g0 < rewards.size(); g0 += size_t(group)) {
    double mean = 0;
    for (int64_t i = 0; i < group; ++i) mean += rewards[g0 + size_t(i)];
    mean /= double(group);
    double var = 0;
    for (int64_t i = 0; i < group; ++i) var += (rewards[g0 + size_t(i)] - mean) * (rewards[g0 + size_t(i)] - mean);
    const double std = group > 1 ? std::sqrt(var / double(group - 1)) : 0.0;
    for (int64_t i = 0; i < group; ++i) {
      const double centred = rewards[g0 + size_t(i)] - mean;
      advantages[g0 + size_t(i)] = scale_by_std ? centred / (std + 1e-4) : centred;
    }
  }
  return advantages;
}

GrpoObjective::GrpoObjective(const GrpoOptions& options, const GrpoBatch& batch) : options_(options), batch_(batch) {
  DSV3_CHECK(options.epsilon >= 0 && options.high() >= 0 && options.beta >= 0, "[grpo] --epsilon, --epsilon-high and "
             "--beta must be >= 0");
  DSV3_CHECK(batch.old_logp.size() == batch.sequence.size() && batch.ref_logp.size() == batch.sequence.size() &&
                 batch.length.size() == batch.advantage.size(),
             "[grpo] the batch's per-row and per-completion arrays disagree in size");
  for (int64_t n : batch.length) total_tokens_ += n;
}

void GrpoObjective::reset() {
  value_ = kl_ = ratio_ = 0;
  tokens_ = clipped_ = 0;
}

double GrpoObjective::weight(int32_t s) const {
  const double sequences = double(batch_.advantage.size());
  switch (options_.loss) {
    case GrpoLoss::grpo: return 1.0 / (sequences * double(std::max<int64_t>(1, batch_.length[size_t(s)])));
    case GrpoLoss::dr_grpo: return 1.0 / (sequences * double(options_.max_completion_length));
    case GrpoLoss::dapo: return 1.0 / double(std::max<int64_t>(1, total_tokens_));
  }
  return 0;
}

double GrpoObjective::gradient(int64_t row, double logp) {
  DSV3_CHECK(row >= 0 && row < int64_t(batch_.sequence.size()), "[grpo] row ", row, " outside the batch");
  const int32_t s = batch_.sequence[size_t(row)];
  if (s < 0) return 0;  // a prompt row: not part of the objective (its target should be ignored)
  const double a = batch_.advantage[size_t(s)];
  const double ratio = std::exp(logp - batch_.old_logp[size_t(row)]);
  const double clipped_ratio = std::clamp(ratio, 1 - options_.epsilon, 1 + options_.high());
  const double unclipped = ratio * a, clipped = clipped_ratio * a;
  const bool clip_binds = clipped < unclipped;  // the min picks the clipped term, constant in θ
  const double ref_over = std::exp(batch_.ref_logp[size_t(row)] - logp);  // π_ref / π_θ
  const double kl = ref_over - (batch_.ref_logp[size_t(row)] - logp) - 1;
  const double w = weight(s);
  value_ += -w * (std::min(unclipped, clipped) - options_.beta * kl);
  kl_ += kl;
  ratio_ += ratio;
  ++tokens_;
  if (clip_binds) ++clipped_;
  // ∂ℓ/∂logπ = −[(clip binds ? 0 : ρA) − β(1 − π_ref/π_θ)]
  return -w * ((clip_binds ? 0.0 : unclipped) - options_.beta * (1 - ref_over));
}

}  // namespace dsv3
