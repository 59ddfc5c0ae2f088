// `dsv3 plot`: PNG charts of one or more training runs' metrics files (loss, expert load imbalance,
// learning rate, per-layer expert load heatmaps).
#include <cstdio>

#include "commands.h"
#include "core/error.h"
#include "plot/training_plots.h"
#include "plot/training_summary.h"

namespace dsv3::cli {

namespace {

struct PlotArgs {
  std::vector<std::string> metrics, labels;
  std::string out_dir, title;
  int64_t smooth = 0;
};

}  // namespace

Runner add_plot(CLI::App& app) {
  auto a = std::make_shared<PlotArgs>();
  CLI::App* cmd = app.add_subcommand(
      "plot", "Draw PNG charts of training metrics files (dsv3 train --metrics): loss.png (train and val loss), "
              "max_vio.png (expert load imbalance), lr.png (learning rate) and expert_load_<label>.png (load "
              "of every expert per MoE layer over the steps), plus summary.md: a table of each run's final and "
              "best val loss, late train loss, MaxVio and tokens/s");
  cmd->add_option("--metrics", a->metrics,
                  "Metrics file (JSON Lines, one object per step); repeat to compare runs in one chart")
      ->required();
  cmd->add_option("--label", a->labels,
                  "Name of the run in legends and file names, one per --metrics in the same order (default: "
                  "the metrics file's directory name)");
  cmd->add_option("--out", a->out_dir, "Directory for the PNG files (created when missing)")->required();
  cmd->add_option("--smooth", a->smooth,
                  "Moving-average window in steps for the smoothed lines (default: the longest run's steps / 50, "
                  "at least 1)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--title", a->title, "Text put in front of every chart's title");
  return [a] {
    DSV3_CHECK(a->labels.empty() || a->labels.size() == a->metrics.size(), "[plot] ", a->labels.size(),
               " --label values for ", a->metrics.size(), " --metrics files; give one label per file, or none");
    std::vector<TrainingMetrics> runs;
    for (const std::string& path : a->metrics) runs.push_back(read_training_metrics(path));
    plot::TrainingPlotOptions options;
    options.out_dir = a->out_dir;
    options.labels = a->labels;
    options.smooth = a->smooth;
    options.title = a->title;
    for (const std::string& path : plot::write_training_plots(runs, options)) std::printf("%s\n", path.c_str());
    // The figures behind the charts, as a Markdown table (also written to OUT/summary.md).
    std::vector<TrainingRunSummary> summaries;
    for (size_t i = 0; i < runs.size(); ++i)
      summaries.push_back(summarize_training_run(
          runs[i], a->labels.empty() ? plot::default_run_label(a->metrics[i]) : a->labels[i]));
    const std::string table = training_summary_table(summaries);
    const std::string summary_path = a->out_dir + "/summary.md";
    std::FILE* f = std::fopen(summary_path.c_str(), "w");
    DSV3_CHECK(f != nullptr, "[plot] cannot write ", summary_path);
    std::fputs(table.c_str(), f);
    std::fclose(f);
    std::printf("%s\n%s", summary_path.c_str(), table.c_str());
    return 0;
  };
}

}  // namespace dsv3::cli
