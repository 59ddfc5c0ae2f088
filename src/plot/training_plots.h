// Training metrics: the JSON Lines file `dsv3 train` writes (one object per optimizer step), its
// reader, and the PNG charts `dsv3 plot` draws from one or more such files.
//
// A step line holds step (1-based), tokens (cumulative), loss, main_loss, balance_loss, mtp_loss [per
// MTP depth], lr, grad_norm, tokens_per_s, elapsed_s, max_vio (mean over MoE layers of
// max_i load_i / mean load − 1), max_vio_layers, moe_layers (Hugging Face layer index of each MoE
// layer), expert_load [MoE layer][expert] (tokens routed this step), and val_loss on evaluation steps.
// Only step and loss are required. Objects with a "type" other than "step" (the "type":"run" header
// with the run's settings) are not steps.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace dsv3 {

struct TrainingMetricsStep {
  static constexpr double kMissing = std::numeric_limits<double>::quiet_NaN();
  int64_t step = 0;
  int64_t tokens = -1;  // -1: not recorded
  // NaN when the line lacks the field (or holds null).
  double loss = kMissing, main_loss = kMissing, balance_loss = kMissing;
  double lr = kMissing, grad_norm = kMissing, tokens_per_s = kMissing, elapsed_s = kMissing;
  double max_vio = kMissing, val_loss = kMissing;
  std::vector<double> mtp_loss, max_vio_layers;
  std::vector<std::vector<int64_t>> expert_load;  // [MoE layer][expert]; empty when not recorded
};

struct TrainingMetrics {
  std::string path;
  std::string run_header;           // the "type":"run" object as JSON text; empty when the file has none
  std::vector<int64_t> moe_layers;  // as on the step lines (the first that has them)
  std::vector<TrainingMetricsStep> steps;  // in step order

  bool has_expert_load() const;
};

// Reads a metrics file. Blank lines are skipped. When a step number is not above the previous one (a
// run resumed from an earlier checkpoint appends to the same file), the later lines replace the
// earlier ones from that step on. Throws dsv3::Error naming the file (and line) when it is missing,
// empty, holds no step lines, or has a line that is not a JSON object, lacks step or loss, has a field
// of the wrong type, or has expert_load of a different shape than the earlier lines.
TrainingMetrics read_training_metrics(const std::string& path);

// Centred moving average over `window` values (shortened at the ends); non-finite values are skipped
// and stay non-finite in the output. window <= 1 returns the input.
std::vector<double> moving_average(const std::vector<double>& values, int64_t window);

namespace plot {

struct TrainingPlotOptions {
  std::string out_dir;              // created when missing
  std::vector<std::string> labels;  // one per run; empty: from the file names
  int64_t smooth = 0;               // moving-average window in steps; 0: longest run's steps / 50
  std::string title;                // prefixed to every chart title when not empty
};

// Draws loss.png, max_vio.png (when any run recorded max_vio), lr.png (when the first run recorded lr)
// and expert_load_<label>.png for each run with expert_load into out_dir. Returns the paths written.
std::vector<std::string> write_training_plots(const std::vector<TrainingMetrics>& runs,
                                              const TrainingPlotOptions& options);

// The label a run gets without --label: its file's parent directory name, or the file's stem when the
// file sits in the current directory.
std::string default_run_label(const std::string& path);

}  // namespace plot
}  // namespace dsv3
