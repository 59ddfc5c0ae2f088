#include "plot/training_summary.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace dsv3 {

namespace {

// Mean of the finite values of field(step) over steps [begin, end).
template <typename Field>
double mean_of(const std::vector<TrainingMetricsStep>& steps, size_t begin, Field field) {
  double sum = 0;
  int64_t count = 0;
  for (size_t i = begin; i < steps.size(); ++i) {
    const double v = field(steps[i]);
    if (std::isfinite(v)) {
      sum += v;
      ++count;
    }
  }
  return count > 0 ? sum / double(count) : TrainingMetricsStep::kMissing;
}

std::string number(double v, const char* format) {
  if (!std::isfinite(v)) return "–";
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), format, v);
  return buffer;
}

}  // namespace

TrainingRunSummary summarize_training_run(const TrainingMetrics& run, const std::string& label) {
  TrainingRunSummary s;
  s.label = label;
  const std::vector<TrainingMetricsStep>& steps = run.steps;
  if (steps.empty()) return s;
  s.steps = steps.back().step;
  s.tokens = steps.back().tokens;
  for (const TrainingMetricsStep& st : steps)
    if (std::isfinite(st.val_loss)) {
      s.final_val_loss = st.val_loss;
      s.best_val_loss = std::isfinite(s.best_val_loss) ? std::min(s.best_val_loss, st.val_loss) : st.val_loss;
    }
  const size_t tail = steps.size() - std::max<size_t>(1, steps.size() / 10);
  s.train_loss_tail = mean_of(steps, tail, [](const TrainingMetricsStep& st) {
    return std::isfinite(st.main_loss) ? st.main_loss : st.loss;
  });
  s.max_vio_tail = mean_of(steps, tail, [](const TrainingMetricsStep& st) { return st.max_vio; });
  s.max_vio_all = mean_of(steps, 0, [](const TrainingMetricsStep& st) { return st.max_vio; });
  std::vector<double> rates;
  for (const TrainingMetricsStep& st : steps)
    if (std::isfinite(st.tokens_per_s)) rates.push_back(st.tokens_per_s);
  if (!rates.empty()) {
    std::nth_element(rates.begin(), rates.begin() + long(rates.size() / 2), rates.end());
    s.tokens_per_s = rates[rates.size() / 2];
  }
  return s;
}

std::string training_summary_table(const std::vector<TrainingRunSummary>& runs) {
  const bool compare = runs.size() >= 2 && std::isfinite(runs[0].final_val_loss);
  std::string out = "| run | steps | tokens | final val loss | best val loss | train loss (last 10%) | "
                    "MaxVio (last 10%) | MaxVio (all steps) | tokens/s |";
  out += compare ? " val loss vs first |\n" : "\n";
  out += "|---|---|---|---|---|---|---|---|---|";
  out += compare ? "---|\n" : "\n";
  for (const TrainingRunSummary& r : runs) {
    out += "| " + r.label + " | " + std::to_string(r.steps) + " | " +
           (r.tokens >= 0 ? std::to_string(r.tokens) : std::string("–")) + " | " +
           number(r.final_val_loss, "%.4f") + " | " + number(r.best_val_loss, "%.4f") + " | " +
           number(r.train_loss_tail, "%.4f") + " | " + number(r.max_vio_tail, "%.3f") + " | " +
           number(r.max_vio_all, "%.3f") + " | " + number(r.tokens_per_s, "%.0f") + " |";
    if (compare)
      out += " " + number(100.0 * (r.final_val_loss - runs[0].final_val_loss) / runs[0].final_val_loss, "%+.2f%%") +
             " |";
    out += "\n";
  }
  return out;
}

}  // namespace dsv3
