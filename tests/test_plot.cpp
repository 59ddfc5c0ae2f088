// dsv3 plot: tick computation, the metrics reader (and its errors), and the charts drawn from a
// synthetic metrics file, reloaded as PNGs and inspected pixel by pixel.
#include <cairo.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <random>

#include "plot/chart.h"
#include "plot/training_plots.h"
#include "test_support.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;
using testing::error_of;

struct SyntheticRun {
  int steps = 200;
  int layers = 2;
  int experts = 8;
  int val_every = 50;
  bool expert_load = true;
  bool header = true;
  double loss_floor = 3.0;
};

// A metrics file like dsv3 train writes: loss falling from ~ln(vocab), warmup + cosine lr, expert load
// imbalance that the bias update removes over the run, val loss every val_every steps.
void write_synthetic_metrics(const std::string& path, const SyntheticRun& run) {
  std::mt19937 rng(7);
  std::normal_distribution<double> noise(0.0, 1.0);
  std::ofstream out(path);
  if (run.header) out << R"({"type":"run","preset":"tiny","balance":"aux-free","steps":)" << run.steps << "}\n";
  for (int s = 1; s <= run.steps; ++s) {
    const double main_loss = run.loss_floor + 7.8 * std::exp(-s / 15.0) + 0.08 * noise(rng);
    const double lr = s <= 20 ? 3e-4 * s / 20 : 3e-4 * (0.55 + 0.45 * std::cos(std::numbers::pi * (s - 20) / (run.steps - 20)));
    out << "{\"type\":\"step\",\"step\":" << s << ",\"tokens\":" << s * 2048 << ",\"loss\":" << main_loss + 0.4
        << ",\"main_loss\":" << main_loss << ",\"balance_loss\":0.0001,\"mtp_loss\":[" << main_loss + 0.3
        << "],\"lr\":" << lr << ",\"grad_norm\":" << 1.0 + 0.1 * noise(rng) << ",\"tokens_per_s\":1500"
        << ",\"elapsed_s\":" << s * 1.3;
    if (run.expert_load) {
      std::string loads = "[", vio_layers = "[", layer_ids = "[";
      double vio_sum = 0;
      for (int l = 0; l < run.layers; ++l) {
        const double skew = 1.5 * std::exp(-s / 60.0) * (l + 1) / run.layers;
        std::vector<int64_t> load(size_t(run.experts));
        int64_t total = 0, peak = 0;
        for (int e = 0; e < run.experts; ++e) {
          const double share = 1.0 + skew * std::cos(e * 1.3 + l) + 0.1 * noise(rng);
          load[size_t(e)] = std::max<int64_t>(0, std::llround(512 * share));
          total += load[size_t(e)];
          peak = std::max(peak, load[size_t(e)]);
        }
        const double vio = double(peak) * run.experts / double(total) - 1;
        vio_sum += vio;
        loads += (l ? ",[" : "[");
        for (int e = 0; e < run.experts; ++e) loads += (e ? "," : "") + std::to_string(load[size_t(e)]);
        loads += "]";
        vio_layers += (l ? "," : "") + std::to_string(vio);
        layer_ids += (l ? "," : "") + std::to_string(l + 1);
      }
      out << ",\"max_vio\":" << vio_sum / run.layers << ",\"max_vio_layers\":" << vio_layers
          << "],\"moe_layers\":" << layer_ids << "],\"expert_load\":" << loads << "]";
    }
    if (run.val_every > 0 && s % run.val_every == 0) out << ",\"val_loss\":" << main_loss + 0.15;
    out << "}\n";
  }
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

struct PngStats {
  int width = 0, height = 0;
  int64_t non_background = 0;  // pixels that are not (near) white
  int64_t near_color = 0;      // pixels within a small distance of the colour asked for
};

PngStats png_stats(const std::string& path, plot::Rgb color) {
  PngStats st;
  cairo_surface_t* s = cairo_image_surface_create_from_png(path.c_str());
  EXPECT_EQ(cairo_surface_status(s), CAIRO_STATUS_SUCCESS) << path;
  if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) return st;
  st.width = cairo_image_surface_get_width(s);
  st.height = cairo_image_surface_get_height(s);
  const int stride = cairo_image_surface_get_stride(s);
  const unsigned char* data = cairo_image_surface_get_data(s);
  for (int y = 0; y < st.height; ++y)
    for (int x = 0; x < st.width; ++x) {
      const uint32_t p = reinterpret_cast<const uint32_t*>(data + y * stride)[x];
      const int r = (p >> 16) & 0xff, g = (p >> 8) & 0xff, b = p & 0xff;
      if (r < 245 || g < 245 || b < 245) ++st.non_background;
      const double d = std::abs(r - color.r * 255) + std::abs(g - color.g * 255) + std::abs(b - color.b * 255);
      if (d < 24) ++st.near_color;
    }
  cairo_surface_destroy(s);
  return st;
}

TEST(PlotTicks, NiceStepsAreRoundAndInsideTheRange) {
  const std::vector<double> ticks = plot::nice_ticks(0.013, 0.98, 8);
  ASSERT_GE(ticks.size(), 3u);
  ASSERT_LE(ticks.size(), 8u);
  const double step = plot::nice_step(0.013, 0.98, 8);
  const double mantissa = step / std::pow(10.0, std::floor(std::log10(step) + 1e-9));
  EXPECT_TRUE(std::abs(mantissa - 1) < 1e-9 || std::abs(mantissa - 2) < 1e-9 || std::abs(mantissa - 5) < 1e-9)
      << step;
  for (size_t i = 0; i < ticks.size(); ++i) {
    EXPECT_GE(ticks[i], 0.013);
    EXPECT_LE(ticks[i], 0.98);
    EXPECT_NEAR(ticks[i] / step, std::round(ticks[i] / step), 1e-9);
    if (i > 0) {
      EXPECT_NEAR(ticks[i] - ticks[i - 1], step, 1e-12);
    }
  }
  EXPECT_EQ(plot::nice_ticks(0.013, 0.98, 8), (std::vector<double>{0.2, 0.4, 0.6, 0.8}));
  EXPECT_EQ(plot::nice_ticks(0, 200, 5), (std::vector<double>{0, 50, 100, 150, 200}));
  EXPECT_EQ(plot::nice_ticks(1, 200, 8), (std::vector<double>{50, 100, 150, 200}));  // 20 would give 10 ticks
  EXPECT_EQ(plot::nice_ticks(3, 3, 5), std::vector<double>{3});
}

TEST(PlotTicks, LabelsUseTheDecimalsTheStepNeeds) {
  EXPECT_EQ(plot::format_tick(0.4, 0.2), "0.4");
  EXPECT_EQ(plot::format_tick(0.05, 0.05), "0.05");
  EXPECT_EQ(plot::format_tick(0, 0.2), "0");
  EXPECT_EQ(plot::format_tick(150, 50), "150");
  EXPECT_EQ(plot::format_tick(20000, 5000), "20k");
  EXPECT_EQ(plot::format_tick(3e6, 1e6), "3M");
  EXPECT_EQ(plot::format_tick(3e-4, 1e-4), "3e-4");
  EXPECT_EQ(plot::format_tick(1.5e-4, 5e-5), "1.5e-4");
  EXPECT_EQ(plot::format_tick(-2.5, 0.5), "-2.5");
}

TEST(PlotMetrics, ReadsEveryField) {
  TempDir dir("plot_read");
  const std::string path = dir.sub("metrics.jsonl");
  write_synthetic_metrics(path, {});
  const TrainingMetrics m = read_training_metrics(path);
  ASSERT_EQ(m.steps.size(), 200u);
  EXPECT_NE(m.run_header.find("\"preset\":\"tiny\""), std::string::npos);
  EXPECT_EQ(m.moe_layers, (std::vector<int64_t>{1, 2}));
  EXPECT_TRUE(m.has_expert_load());
  const TrainingMetricsStep& s = m.steps[49];
  EXPECT_EQ(s.step, 50);
  EXPECT_EQ(s.tokens, 50 * 2048);
  EXPECT_TRUE(std::isfinite(s.val_loss));
  EXPECT_FALSE(std::isfinite(m.steps[48].val_loss));
  EXPECT_NEAR(s.loss - s.main_loss, 0.4, 1e-4);
  EXPECT_EQ(s.mtp_loss.size(), 1u);
  EXPECT_EQ(s.max_vio_layers.size(), 2u);
  ASSERT_EQ(s.expert_load.size(), 2u);
  EXPECT_EQ(s.expert_load[1].size(), 8u);
  EXPECT_GT(s.lr, 0);
}

TEST(PlotMetrics, ErrorsNameTheFileAndLine) {
  TempDir dir("plot_errors");
  const std::string path = dir.sub("m.jsonl");
  write_text(path, "{\"step\":1,\"loss\":5}\n\n{\"step\":2,\"loss\":4.5\n");
  std::string e = error_of([&] { read_training_metrics(path); });
  EXPECT_NE(e.find(path + ":3:"), std::string::npos) << e;
  EXPECT_NE(e.find("not valid JSON"), std::string::npos) << e;

  write_text(path, "{\"step\":1,\"loss\":5}\n{\"step\":2}\n");
  e = error_of([&] { read_training_metrics(path); });
  EXPECT_NE(e.find(path + ":2:"), std::string::npos) << e;
  EXPECT_NE(e.find("\"loss\""), std::string::npos) << e;

  write_text(path, "{\"loss\":5}\n");
  e = error_of([&] { read_training_metrics(path); });
  EXPECT_NE(e.find(path + ":1:"), std::string::npos) << e;
  EXPECT_NE(e.find("\"step\""), std::string::npos) << e;

  write_text(path, "{\"step\":1,\"loss\":\"high\"}\n");
  e = error_of([&] { read_training_metrics(path); });
  EXPECT_NE(e.find("should be a number"), std::string::npos) << e;

  write_text(path, "{\"step\":1,\"loss\":5,\"expert_load\":[[1,2],[3,4]]}\n{\"step\":2,\"loss\":5,"
                   "\"expert_load\":[[1,2,3],[3,4]]}\n");
  e = error_of([&] { read_training_metrics(path); });
  EXPECT_NE(e.find(path + ":2:"), std::string::npos) << e;
  EXPECT_NE(e.find("line 1"), std::string::npos) << e;

  write_text(path, "");
  EXPECT_NE(error_of([&] { read_training_metrics(path); }).find("is empty"), std::string::npos);
  write_text(path, "{\"type\":\"run\",\"preset\":\"tiny\"}\n");
  EXPECT_NE(error_of([&] { read_training_metrics(path); }).find("no step lines"), std::string::npos);
  EXPECT_NE(error_of([&] { read_training_metrics(dir.sub("absent.jsonl")); }).find("does not exist"),
            std::string::npos);
}

TEST(PlotMetrics, ToleratesMissingOptionalFieldsAndResumedRuns) {
  TempDir dir("plot_resume");
  const std::string path = dir.sub("m.jsonl");
  // Steps 1-3, then a run resumed from step 2's checkpoint rewrites 3 and goes on; nulls are missing values.
  write_text(path,
             "{\"step\":1,\"loss\":5}\n{\"step\":2,\"loss\":4,\"lr\":null}\n{\"step\":3,\"loss\":3.5}\n"
             "{\"type\":\"run\",\"preset\":\"tiny\"}\n{\"step\":3,\"loss\":3.4}\n{\"step\":4,\"loss\":3.3}\n");
  const TrainingMetrics m = read_training_metrics(path);
  ASSERT_EQ(m.steps.size(), 4u);
  EXPECT_EQ(m.steps[2].step, 3);
  EXPECT_DOUBLE_EQ(m.steps[2].loss, 3.4);
  EXPECT_TRUE(std::isnan(m.steps[1].lr));
  EXPECT_TRUE(std::isnan(m.steps[0].main_loss));
  EXPECT_FALSE(m.has_expert_load());
  EXPECT_EQ(m.steps[0].tokens, -1);
}

TEST(PlotMetrics, MovingAverageIsCentredAndSkipsGaps) {
  const double nan = std::nan("");
  EXPECT_EQ(moving_average({1, 2, 3, 4, 5}, 3), (std::vector<double>{1.5, 2, 3, 4, 4.5}));
  EXPECT_EQ(moving_average({1, 2, 3}, 1), (std::vector<double>{1, 2, 3}));
  const std::vector<double> gap = moving_average({1, nan, 3}, 3);
  EXPECT_DOUBLE_EQ(gap[0], 1);
  EXPECT_TRUE(std::isnan(gap[1]));
  EXPECT_DOUBLE_EQ(gap[2], 3);
}

TEST(PlotCharts, WritesEveryChartAsAVisiblePng) {
  TempDir dir("plot_charts");
  fs::create_directories(dir.sub("runA"));
  const std::string path = dir.sub("runA/metrics.jsonl");
  write_synthetic_metrics(path, {});
  plot::TrainingPlotOptions o;
  o.out_dir = dir.sub("out/plots");  // created, parents included
  const std::vector<std::string> written = plot::write_training_plots({read_training_metrics(path)}, o);
  const std::vector<std::string> expected = {"loss.png", "max_vio.png", "lr.png", "expert_load_runA.png"};
  ASSERT_EQ(written.size(), expected.size());
  const plot::Rgb first_run = plot::run_color(0);
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(fs::path(written[i]).filename().string(), expected[i]);
    ASSERT_TRUE(fs::exists(written[i])) << written[i];
    const PngStats st = png_stats(written[i], first_run);
    EXPECT_EQ(st.width, 1200) << written[i];
    EXPECT_GE(st.height, 300) << written[i];
    EXPECT_GT(st.non_background, 5000) << written[i];
    if (expected[i] != "expert_load_runA.png") {
      EXPECT_GT(st.near_color, 200) << written[i];
    }
  }
  // The heatmap: 2 panels of 8 experts; strong blues and reds where the early steps are imbalanced.
  const PngStats low = png_stats(written[3], plot::diverging_color(0.1));
  const PngStats high = png_stats(written[3], plot::diverging_color(0.9));
  EXPECT_GT(low.near_color, 500);
  EXPECT_GT(high.near_color, 500);
}

TEST(PlotCharts, ComparesRunsAndSkipsTheHeatmapWithoutExpertLoad) {
  TempDir dir("plot_two");
  SyntheticRun plain;
  plain.expert_load = false;
  plain.header = false;
  plain.steps = 120;
  write_synthetic_metrics(dir.sub("a.jsonl"), {});
  write_synthetic_metrics(dir.sub("b.jsonl"), plain);
  const std::vector<TrainingMetrics> runs = {read_training_metrics(dir.sub("a.jsonl")),
                                             read_training_metrics(dir.sub("b.jsonl"))};
  plot::TrainingPlotOptions o;
  o.out_dir = dir.sub("out");
  o.title = "ablation";
  const std::vector<std::string> written = plot::write_training_plots(runs, o);
  // Both files sit in the same directory, so the labels are the file stems.
  EXPECT_TRUE(fs::exists(dir.sub("out/expert_load_a.png")));
  EXPECT_FALSE(fs::exists(dir.sub("out/expert_load_b.png")));
  EXPECT_EQ(written.size(), 4u);  // loss, max_vio (run a), lr, one heatmap
  const PngStats second = png_stats(dir.sub("out/loss.png"), plot::run_color(1));
  EXPECT_GT(second.near_color, 100);

  // A run without expert_load alone: loss and lr only.
  o.out_dir = dir.sub("out_b");
  EXPECT_EQ(plot::write_training_plots({runs[1]}, o).size(), 2u);
  EXPECT_FALSE(fs::exists(dir.sub("out_b/max_vio.png")));
}

TEST(PlotCharts, RejectsBadOptions) {
  TempDir dir("plot_bad");
  write_synthetic_metrics(dir.sub("a.jsonl"), {});
  const std::vector<TrainingMetrics> runs = {read_training_metrics(dir.sub("a.jsonl"))};
  plot::TrainingPlotOptions o;
  o.out_dir = dir.sub("out");
  o.labels = {"x", "y"};
  EXPECT_NE(error_of([&] { plot::write_training_plots(runs, o); }).find("2 labels for 1 metrics files"),
            std::string::npos);
  o.labels.clear();
  write_text(dir.sub("file"), "x");
  o.out_dir = dir.sub("file/sub");
  EXPECT_NE(error_of([&] { plot::write_training_plots(runs, o); }).find("cannot create the output directory"),
            std::string::npos);
}

TEST(PlotCharts, DefaultLabelIsTheDirectoryName) {
  EXPECT_EQ(plot::default_run_label("runs/tiny-aux-free/metrics.jsonl"), "tiny-aux-free");
  EXPECT_EQ(plot::default_run_label("metrics.jsonl"), "metrics");
  EXPECT_EQ(plot::default_run_label("./baseline.jsonl"), "baseline");
}

}  // namespace
}  // namespace dsv3
