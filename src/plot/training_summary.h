// A table of what training runs reached, from their metrics files: the figures a comparison of runs
// (an ablation, FP8 against BF16) reports.
#pragma once

#include <string>
#include <vector>

#include "plot/training_plots.h"

namespace dsv3 {

struct TrainingRunSummary {
  std::string label;
  int64_t steps = 0;
  int64_t tokens = -1;
  double final_val_loss = TrainingMetricsStep::kMissing;  // at the last evaluation
  double best_val_loss = TrainingMetricsStep::kMissing;
  double train_loss_tail = TrainingMetricsStep::kMissing;  // mean main-model loss over the last 10% of steps
  double max_vio_tail = TrainingMetricsStep::kMissing;     // mean MaxVio over the last 10% of steps
  double max_vio_all = TrainingMetricsStep::kMissing;      // mean MaxVio over every step
  double tokens_per_s = TrainingMetricsStep::kMissing;     // median over the steps
};

TrainingRunSummary summarize_training_run(const TrainingMetrics& run, const std::string& label);

// A Markdown table, one row per run; with two or more runs, a column of each final val loss's relative
// difference from the first run's.
std::string training_summary_table(const std::vector<TrainingRunSummary>& runs);

}  // namespace dsv3
