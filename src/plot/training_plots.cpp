#include "plot/training_plots.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "plot/chart.h"

namespace dsv3 {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr double kNaN = TrainingMetricsStep::kMissing;

double number_field(const json& j, const char* key, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return kNaN;
  DSV3_CHECK(it->is_number(), "[plot] ", where, ": \"", key, "\" should be a number, got ", it->type_name());
  return it->get<double>();
}

std::vector<double> number_array_field(const json& j, const char* key, const std::string& where) {
  std::vector<double> values;
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return values;
  DSV3_CHECK(it->is_array(), "[plot] ", where, ": \"", key, "\" should be an array of numbers, got ",
             it->type_name());
  for (const json& v : *it) {
    DSV3_CHECK(v.is_number() || v.is_null(), "[plot] ", where, ": \"", key,
               "\" should hold only numbers, found a ", v.type_name());
    values.push_back(v.is_null() ? kNaN : v.get<double>());
  }
  return values;
}

int64_t count_value(const json& v, const char* key, const std::string& where) {
  DSV3_CHECK(v.is_number() && v.get<double>() >= 0 && v.get<double>() == std::floor(v.get<double>()),
             "[plot] ", where, ": \"", key, "\" should hold non-negative integers, found ", v.dump());
  return v.get<int64_t>();
}

TrainingMetricsStep parse_step(const json& j, const std::string& where) {
  TrainingMetricsStep s;
  const auto step = j.find("step");
  DSV3_CHECK(step != j.end(), "[plot] ", where, ": the line has no \"step\"");
  DSV3_CHECK(step->is_number_integer() && step->get<int64_t>() >= 0, "[plot] ", where,
             ": \"step\" should be a non-negative integer, got ", step->dump());
  s.step = step->get<int64_t>();
  DSV3_CHECK(j.contains("loss"), "[plot] ", where, ": the line has no \"loss\"");
  s.loss = number_field(j, "loss", where);
  if (const auto tokens = j.find("tokens"); tokens != j.end() && !tokens->is_null())
    s.tokens = count_value(*tokens, "tokens", where);
  s.main_loss = number_field(j, "main_loss", where);
  s.balance_loss = number_field(j, "balance_loss", where);
  s.lr = number_field(j, "lr", where);
  s.grad_norm = number_field(j, "grad_norm", where);
  s.tokens_per_s = number_field(j, "tokens_per_s", where);
  s.elapsed_s = number_field(j, "elapsed_s", where);
  s.max_vio = number_field(j, "max_vio", where);
  s.val_loss = number_field(j, "val_loss", where);
  s.mtp_loss = number_array_field(j, "mtp_loss", where);
  s.max_vio_layers = number_array_field(j, "max_vio_layers", where);
  if (const auto load = j.find("expert_load"); load != j.end() && !load->is_null()) {
    DSV3_CHECK(load->is_array(), "[plot] ", where, ": \"expert_load\" should be an array (one per MoE layer)");
    for (const json& layer : *load) {
      DSV3_CHECK(layer.is_array(), "[plot] ", where,
                 ": \"expert_load\" should hold one array of per-expert counts per MoE layer");
      std::vector<int64_t>& counts = s.expert_load.emplace_back();
      for (const json& v : layer) counts.push_back(count_value(v, "expert_load", where));
    }
  }
  return s;
}

std::string shape_string(const std::vector<std::vector<int64_t>>& load) {
  std::string out = std::to_string(load.size()) + " layers of [";
  for (size_t i = 0; i < load.size(); ++i) out += (i ? "," : "") + std::to_string(load[i].size());
  return out + "] experts";
}

}  // namespace

bool TrainingMetrics::has_expert_load() const {
  return std::any_of(steps.begin(), steps.end(), [](const TrainingMetricsStep& s) { return !s.expert_load.empty(); });
}

TrainingMetrics read_training_metrics(const std::string& path) {
  std::error_code ec;
  DSV3_CHECK(fs::exists(path, ec), "[plot] metrics file ", path, " does not exist");
  DSV3_CHECK(!fs::is_directory(path, ec), "[plot] ", path,
             " is a directory; give the metrics file itself (the .jsonl that dsv3 train --metrics wrote)");
  std::ifstream in(path);
  DSV3_CHECK(in, "[plot] cannot open metrics file ", path);

  TrainingMetrics metrics;
  metrics.path = path;
  std::vector<std::vector<int64_t>> shape;  // expert_load of the first step that has it
  int64_t shape_line = 0, non_blank = 0;
  std::string text;
  for (int64_t line_no = 1; std::getline(in, text); ++line_no) {
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.find_first_not_of(" \t") == std::string::npos) continue;
    ++non_blank;
    const std::string where = cat(path, ":", line_no);
    json j;
    try {
      j = json::parse(text);
    } catch (const json::parse_error& e) {
      DSV3_FAIL("[plot] ", where, ": not valid JSON (", e.what(), ")");
    }
    DSV3_CHECK(j.is_object(), "[plot] ", where, ": expected a JSON object, got ", j.type_name());
    if (const auto type = j.find("type"); type != j.end() && *type != "step") {
      if (*type == "run" && metrics.run_header.empty()) metrics.run_header = j.dump();
      continue;
    }
    TrainingMetricsStep s = parse_step(j, where);
    if (metrics.moe_layers.empty())
      if (const auto layers = j.find("moe_layers"); layers != j.end() && layers->is_array())
        for (const json& v : *layers) metrics.moe_layers.push_back(count_value(v, "moe_layers", where));
    if (!s.expert_load.empty()) {
      if (shape_line == 0) {
        shape = s.expert_load;
        shape_line = line_no;
      }
      bool same = shape.size() == s.expert_load.size();
      for (size_t l = 0; same && l < shape.size(); ++l) same = shape[l].size() == s.expert_load[l].size();
      DSV3_CHECK(same, "[plot] ", where, ": expert_load has ", shape_string(s.expert_load), ", but line ",
                 shape_line, " had ", shape_string(shape));
    }
    // A resumed run rewinds to its checkpoint's step: its lines replace the ones from there on.
    if (!metrics.steps.empty() && s.step <= metrics.steps.back().step) {
      const auto from = std::lower_bound(metrics.steps.begin(), metrics.steps.end(), s.step,
                                         [](const TrainingMetricsStep& a, int64_t step) { return a.step < step; });
      metrics.steps.erase(from, metrics.steps.end());
    }
    metrics.steps.push_back(std::move(s));
  }
  DSV3_CHECK(!in.bad(), "[plot] error reading ", path);
  DSV3_CHECK(non_blank > 0, "[plot] metrics file ", path, " is empty");
  DSV3_CHECK(!metrics.steps.empty(), "[plot] metrics file ", path,
             " has no step lines (objects with \"step\" and \"loss\")");
  return metrics;
}

std::vector<double> moving_average(const std::vector<double>& values, int64_t window) {
  if (window <= 1) return values;
  const int64_t n = int64_t(values.size());
  std::vector<double> sum(size_t(n + 1), 0.0);
  std::vector<int64_t> count(size_t(n + 1), 0);
  for (int64_t i = 0; i < n; ++i) {
    const bool ok = std::isfinite(values[size_t(i)]);
    sum[size_t(i + 1)] = sum[size_t(i)] + (ok ? values[size_t(i)] : 0.0);
    count[size_t(i + 1)] = count[size_t(i)] + (ok ? 1 : 0);
  }
  std::vector<double> out(values.size(), kNaN);
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(values[size_t(i)])) continue;
    const int64_t lo = std::max<int64_t>(0, i - (window - 1) / 2), hi = std::min(n, i + window / 2 + 1);
    out[size_t(i)] = (sum[size_t(hi)] - sum[size_t(lo)]) / double(count[size_t(hi)] - count[size_t(lo)]);
  }
  return out;
}

namespace plot {

namespace {

constexpr int kChartWidth = 1200, kChartHeight = 700;
constexpr double kRawAlpha = 0.22, kSmoothWidth = 2.2;

double percentile(std::vector<double> values, double q) {
  values.erase(std::remove_if(values.begin(), values.end(), [](double v) { return !std::isfinite(v); }),
               values.end());
  if (values.empty()) return kNaN;
  const size_t k = std::min(values.size() - 1, size_t(q * double(values.size() - 1) + 0.5));
  std::nth_element(values.begin(), values.begin() + ptrdiff_t(k), values.end());
  return values[k];
}

double finite_mean(const std::vector<double>& values) {
  double sum = 0;
  int64_t n = 0;
  for (double v : values)
    if (std::isfinite(v)) sum += v, ++n;
  return n > 0 ? sum / double(n) : kNaN;
}

bool any_finite(const std::vector<double>& values) {
  return std::any_of(values.begin(), values.end(), [](double v) { return std::isfinite(v); });
}

std::string titled(const TrainingPlotOptions& o, const std::string& title) {
  return o.title.empty() ? title : o.title + ": " + title;
}

// A label as a file name part: letters, digits, '-', '.', '_'; any other run of bytes becomes one '_'.
std::string file_safe(const std::string& label) {
  std::string out;
  for (char c : label) {
    const bool keep = std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
    if (keep) {
      out += c;
    } else if (!out.empty() && out.back() != '_') {
      out += '_';
    }
  }
  while (!out.empty() && (out.back() == '_' || out.back() == '.')) out.pop_back();
  return out.empty() ? "run" : out;
}

// Step axes start at 0 when the data starts near it, so the first tick is labelled.
double x_axis_start(const LineChart& chart) {
  double lo = INFINITY, hi = -INFINITY;
  for (const Series& s : chart.series)
    for (double x : s.x) lo = std::min(lo, x), hi = std::max(hi, x);
  return lo >= 0 && lo <= hi / 50 ? 0.0 : kNaN;
}

std::vector<double> step_axis(const TrainingMetrics& run) {
  std::vector<double> x;
  for (const TrainingMetricsStep& s : run.steps) x.push_back(double(s.step));
  return x;
}

// MaxVio of one step of one layer: max_i load_i / mean load − 1 (NaN when nothing was routed).
double max_vio_of(const std::vector<int64_t>& load) {
  if (load.empty()) return kNaN;
  int64_t total = 0, peak = 0;
  for (int64_t v : load) {
    total += v;
    peak = std::max(peak, v);
  }
  if (total == 0) return kNaN;
  return double(peak) * double(load.size()) / double(total) - 1.0;
}

// Per step, MaxVio per MoE layer: as recorded, else computed from expert_load.
std::vector<std::vector<double>> layer_max_vio(const TrainingMetrics& run) {
  std::vector<std::vector<double>> out;
  for (const TrainingMetricsStep& s : run.steps) {
    std::vector<double>& row = out.emplace_back(s.max_vio_layers);
    if (row.empty())
      for (const auto& load : s.expert_load) row.push_back(max_vio_of(load));
  }
  return out;
}

std::string layer_name(const TrainingMetrics& run, size_t l) {
  return l < run.moe_layers.size() ? cat("layer ", run.moe_layers[l]) : cat("MoE layer ", l);
}

std::string write_loss_chart(const std::vector<TrainingMetrics>& runs, const std::vector<std::string>& labels,
                             int64_t smooth, const TrainingPlotOptions& o) {
  LineChart chart;
  std::vector<Series> raw, smoothed, val;
  std::vector<double> all_values;
  bool all_main = true;
  for (size_t r = 0; r < runs.size(); ++r) {
    const TrainingMetrics& run = runs[r];
    const bool use_main = std::any_of(run.steps.begin(), run.steps.end(),
                                      [](const TrainingMetricsStep& s) { return std::isfinite(s.main_loss); });
    all_main = all_main && use_main;
    Series s;
    s.color = run_color(r);
    s.x = step_axis(run);
    for (const TrainingMetricsStep& st : run.steps) s.y.push_back(use_main ? st.main_loss : st.loss);
    all_values.insert(all_values.end(), s.y.begin(), s.y.end());
    Series avg = s;
    s.line_width = 1;
    s.alpha = kRawAlpha;
    avg.y = moving_average(s.y, smooth);
    avg.line_width = kSmoothWidth;
    const std::string train = smooth > 1 ? cat("train (mean of ", smooth, " steps)") : std::string("train");
    avg.label = runs.size() > 1 ? labels[r] + " train" : train;
    raw.push_back(std::move(s));
    smoothed.push_back(std::move(avg));

    // Drawn: all raw lines, then the smoothed ones, then val; listed: each run's train, then its val.
    chart.legend_order.push_back(runs.size() + r);
    Series v;
    v.color = run_color(r);
    for (const TrainingMetricsStep& st : run.steps)
      if (std::isfinite(st.val_loss)) {
        v.x.push_back(double(st.step));
        v.y.push_back(st.val_loss);
      }
    if (v.x.empty()) continue;
    all_values.insert(all_values.end(), v.y.begin(), v.y.end());
    v.label = runs.size() > 1 ? labels[r] + " val" : "val";
    v.line_width = 1.2;
    v.marker_radius = 4;
    chart.legend_order.push_back(2 * runs.size() + val.size());
    val.push_back(std::move(v));
  }
  for (auto* group : {&raw, &smoothed, &val})
    for (Series& s : *group) chart.series.push_back(std::move(s));

  // The first steps' loss (≈ ln vocab) would squash the rest of the curve: the range stops at a high
  // percentile, and the early spikes run off the top.
  double lo = kNaN, hi = percentile(all_values, 0.97);
  for (double v : all_values)
    if (std::isfinite(v)) lo = std::isfinite(lo) ? std::min(lo, v) : v;
  if (std::isfinite(lo) && hi > lo) {
    chart.y_min = lo - 0.04 * (hi - lo);
    chart.y_max = hi + 0.06 * (hi - lo);
  }
  chart.title = titled(o, runs.size() == 1 ? "Loss — " + labels[0]
                          : smooth > 1      ? cat("Loss (train: mean of ", smooth, " steps)")
                                            : std::string("Loss"));
  chart.x_label = "step";
  chart.x_min = x_axis_start(chart);
  chart.x_integer = true;
  chart.y_label = all_main ? "cross-entropy (main model)" : "loss";
  Canvas canvas(kChartWidth, kChartHeight);
  draw_line_chart(canvas.cr(), {0, 0, double(kChartWidth), double(kChartHeight)}, chart);
  const std::string path = (fs::path(o.out_dir) / "loss.png").string();
  canvas.write_png(path);
  return path;
}

std::string write_max_vio_chart(const std::vector<TrainingMetrics>& runs, const std::vector<std::string>& labels,
                                int64_t smooth, const TrainingPlotOptions& o) {
  LineChart chart;
  std::vector<Series> layers, raw, smoothed;
  std::vector<double> all_values;
  for (size_t r = 0; r < runs.size(); ++r) {
    const TrainingMetrics& run = runs[r];
    const std::vector<std::vector<double>> per_layer = layer_max_vio(run);
    Series s;
    s.color = run_color(r);
    s.x = step_axis(run);
    for (size_t i = 0; i < run.steps.size(); ++i) {
      double v = run.steps[i].max_vio;
      if (!std::isfinite(v)) v = finite_mean(per_layer[i]);  // older files: from the per-layer values
      s.y.push_back(v);
    }
    if (!any_finite(s.y)) continue;
    all_values.insert(all_values.end(), s.y.begin(), s.y.end());
    Series avg = s;
    s.line_width = 1;
    s.alpha = kRawAlpha;
    avg.y = moving_average(s.y, smooth);
    avg.line_width = kSmoothWidth;
    avg.label = runs.size() > 1 ? labels[r] : smooth > 1 ? cat("mean over layers (mean of ", smooth, " steps)")
                                                         : std::string("mean over layers");

    // One run: each layer as a thin smoothed line; named in the legend while there are few of them.
    size_t n_layers = 0;
    for (const auto& row : per_layer) n_layers = std::max(n_layers, row.size());
    if (runs.size() == 1 && n_layers > 1) {
      for (size_t l = 0; l < n_layers; ++l) {
        Series ls;
        ls.x = s.x;
        for (const auto& row : per_layer) ls.y.push_back(l < row.size() ? row[l] : kNaN);
        ls.y = moving_average(ls.y, smooth);
        ls.line_width = 1;
        if (n_layers <= 8) {
          ls.color = run_color(l + 1);
          ls.alpha = 0.8;
          ls.label = layer_name(run, l);
        } else {
          ls.color = {0.45, 0.45, 0.45};
          ls.alpha = 0.35;
          if (l == 0) ls.label = "each MoE layer";
        }
        all_values.insert(all_values.end(), ls.y.begin(), ls.y.end());
        layers.push_back(std::move(ls));
      }
    }
    raw.push_back(std::move(s));
    smoothed.push_back(std::move(avg));
  }
  if (raw.empty()) return "";
  // Drawn: layers, raw, smoothed (on top); listed: the smoothed means first.
  for (size_t i = 0; i < smoothed.size(); ++i) chart.legend_order.push_back(layers.size() + raw.size() + i);
  for (size_t i = 0; i < layers.size(); ++i) chart.legend_order.push_back(i);
  for (auto* group : {&layers, &raw, &smoothed})
    for (Series& s : *group) chart.series.push_back(std::move(s));
  chart.y_min = 0;
  const double hi = percentile(all_values, 0.98);
  if (std::isfinite(hi) && hi > 0) chart.y_max = hi * 1.08;
  chart.title = titled(o, runs.size() == 1 ? "Expert load imbalance — " + labels[0]
                          : smooth > 1      ? cat("Expert load imbalance (mean of ", smooth, " steps)")
                                            : std::string("Expert load imbalance"));
  chart.x_label = "step";
  chart.x_min = x_axis_start(chart);
  chart.x_integer = true;
  chart.y_label = "MaxVio = max load / mean load − 1";
  Canvas canvas(kChartWidth, kChartHeight);
  draw_line_chart(canvas.cr(), {0, 0, double(kChartWidth), double(kChartHeight)}, chart);
  const std::string path = (fs::path(o.out_dir) / "max_vio.png").string();
  canvas.write_png(path);
  return path;
}

std::string write_lr_chart(const TrainingMetrics& run, const std::string& label, const TrainingPlotOptions& o) {
  LineChart chart;
  Series s;
  s.color = run_color(0);
  s.x = step_axis(run);
  for (const TrainingMetricsStep& st : run.steps) s.y.push_back(st.lr);
  if (!any_finite(s.y)) return "";
  s.line_width = kSmoothWidth;
  double hi = 0;
  for (double v : s.y)
    if (std::isfinite(v)) hi = std::max(hi, v);
  chart.series.push_back(std::move(s));
  chart.y_min = 0;
  if (hi > 0) chart.y_max = hi * 1.08;
  chart.title = titled(o, "Learning rate — " + label);
  chart.x_label = "step";
  chart.x_min = x_axis_start(chart);
  chart.x_integer = true;
  chart.y_label = "learning rate";
  Canvas canvas(kChartWidth, 500);
  draw_line_chart(canvas.cr(), {0, 0, double(kChartWidth), 500}, chart);
  const std::string path = (fs::path(o.out_dir) / "lr.png").string();
  canvas.write_png(path);
  return path;
}

std::string write_expert_load_chart(const TrainingMetrics& run, const std::string& label,
                                    const std::string& file_name, const TrainingPlotOptions& o) {
  std::vector<const TrainingMetricsStep*> steps;
  for (const TrainingMetricsStep& s : run.steps)
    if (!s.expert_load.empty()) steps.push_back(&s);
  if (steps.empty()) return "";
  const size_t n_layers = steps.front()->expert_load.size();
  size_t max_experts = 1;
  for (const auto& layer : steps.front()->expert_load) max_experts = std::max(max_experts, layer.size());

  // Layout: title and subtitle, then per layer a panel title row and the cells; the colour bar on the
  // right; the step axis under the last panel. Panels shrink when there are many layers.
  const double left = 84, right = 130, top = 74, title_row = 24, gap = 14, bottom = 56;
  double panel_h = std::clamp(double(max_experts) * 10.0, 90.0, 240.0);
  if (double(n_layers) * (panel_h + title_row + gap) > 3600)
    panel_h = std::max(36.0, 3600 / double(n_layers) - title_row - gap);
  const int width = kChartWidth;
  const int height = int(top + double(n_layers) * (title_row + panel_h + gap) - gap + bottom);
  Canvas canvas(width, height);
  cairo_t* cr = canvas.cr();
  const double cells_w = width - left - right;

  const int64_t n = int64_t(steps.size());
  const int64_t bins = std::min<int64_t>(n, int64_t(cells_w));
  const ColorScale scale{0, 2, "load / mean"};
  draw_text(cr, titled(o, "Expert load — " + label), left + cells_w / 2, 24, 17, 0.5, 0.5, {0.15, 0.15, 0.15}, true);
  draw_text(cr,
            cat("colour: tokens routed to each expert / mean over the layer's experts",
                bins < n ? cat(", each column the mean of ", format_tick(double(n) / double(bins), 0.1), " steps")
                         : std::string()),
            left + cells_w / 2, 48, 12, 0.5, 0.5, {0.4, 0.4, 0.4});

  size_t last_panel = 0;  // the step axis goes under the last panel drawn
  for (size_t l = 0; l < n_layers; ++l)
    if (!steps.front()->expert_load[l].empty()) last_panel = l;
  for (size_t l = 0; l < n_layers; ++l) {
    const size_t experts = steps.front()->expert_load[l].size();
    if (experts == 0) continue;
    Heatmap map;
    map.rows = int64_t(experts);
    map.cols = bins;
    map.values.assign(size_t(map.rows * map.cols), kNaN);
    std::vector<double> vio;
    for (int64_t b = 0; b < bins; ++b) {
      const int64_t s0 = b * n / bins, s1 = (b + 1) * n / bins;  // steps [s0, s1) form column b
      std::vector<double> sum(experts, 0.0);
      int64_t used = 0;
      for (int64_t s = s0; s < s1; ++s) {
        const std::vector<int64_t>& load = steps[size_t(s)]->expert_load[l];
        int64_t total = 0;
        for (int64_t v : load) total += v;
        if (total == 0) continue;
        const double mean = double(total) / double(experts);
        for (size_t e = 0; e < experts; ++e) sum[e] += double(load[e]) / mean;
        ++used;
      }
      if (used > 0)
        for (size_t e = 0; e < experts; ++e) map.values[e * size_t(bins) + size_t(b)] = sum[e] / double(used);
    }
    for (const TrainingMetricsStep* s : steps) vio.push_back(max_vio_of(s->expert_load[l]));
    map.x_first = double(steps.front()->step);
    map.x_last = double(steps.back()->step);
    map.x_integer = true;

    const double y = top + double(l) * (title_row + panel_h + gap) + title_row;
    const Rect cells{left, y, cells_w, panel_h};
    draw_text(cr, layer_name(run, l), left, y - 7, 13, 0, 1, {0.15, 0.15, 0.15}, true);
    const std::vector<double> tail(vio.end() - std::max<ptrdiff_t>(1, ptrdiff_t(vio.size()) / 10), vio.end());
    const double mean_all = finite_mean(vio), mean_tail = finite_mean(tail);
    char note[128];
    std::snprintf(note, sizeof note, "MaxVio: mean %.3f, last 10%% of steps %.3f", mean_all, mean_tail);
    if (std::isfinite(mean_all) && std::isfinite(mean_tail))
      draw_text(cr, note, cells.right(), y - 7, 12, 1, 1, {0.35, 0.35, 0.35});
    draw_heatmap(cr, cells, map, scale, l == last_panel);
    if (panel_h >= 60) draw_text_vertical(cr, "expert", 22, y + panel_h / 2, 12);
  }
  const double panels_h = double(n_layers) * (title_row + panel_h + gap) - gap - title_row;
  draw_color_bar(cr, {left + cells_w + 34, top + title_row, 18, std::min(panels_h, 300.0)}, scale);
  draw_text(cr, "step", left + cells_w / 2, height - 16, 13, 0.5, 0.5);

  const std::string path = (fs::path(o.out_dir) / file_name).string();
  canvas.write_png(path);
  return path;
}

}  // namespace

std::string default_run_label(const std::string& path) {
  const fs::path p(path);
  const std::string parent = p.parent_path().filename().string();
  if (!parent.empty() && parent != "." && parent != "..") return parent;
  return p.stem().string();
}

std::vector<std::string> write_training_plots(const std::vector<TrainingMetrics>& runs,
                                              const TrainingPlotOptions& options) {
  DSV3_CHECK(!runs.empty(), "[plot] no metrics files given");
  DSV3_CHECK(options.labels.empty() || options.labels.size() == runs.size(), "[plot] ", options.labels.size(),
             " labels for ", runs.size(), " metrics files; give one --label per --metrics, or none");
  DSV3_CHECK(options.smooth >= 0, "[plot] the smoothing window must be at least 1 step, got ", options.smooth);
  for (const TrainingMetrics& run : runs)
    DSV3_CHECK(!run.steps.empty(), "[plot] metrics file ", run.path, " has no steps");
  DSV3_CHECK(!options.out_dir.empty(), "[plot] no output directory given");
  std::error_code ec;
  fs::create_directories(options.out_dir, ec);
  DSV3_CHECK(fs::is_directory(options.out_dir), "[plot] cannot create the output directory ", options.out_dir,
             ec ? ": " + ec.message() : std::string());

  // Labels: as given, else from the file names; repeated default labels fall back to the file stems,
  // then get a number.
  std::vector<std::string> labels = options.labels;
  if (labels.empty()) {
    std::map<std::string, int> uses;
    for (const TrainingMetrics& run : runs) ++uses[default_run_label(run.path)];
    for (const TrainingMetrics& run : runs) {
      const std::string label = default_run_label(run.path);
      labels.push_back(uses[label] > 1 ? fs::path(run.path).stem().string() : label);
    }
  }
  std::map<std::string, int> seen;
  for (std::string& label : labels)
    if (++seen[label] > 1) label += cat(" (", seen[label], ")");

  size_t longest = 0;
  for (const TrainingMetrics& run : runs) longest = std::max(longest, run.steps.size());
  const int64_t smooth = options.smooth > 0 ? options.smooth : std::max<int64_t>(1, int64_t(longest) / 50);

  std::vector<std::string> written;
  written.push_back(write_loss_chart(runs, labels, smooth, options));
  if (std::string p = write_max_vio_chart(runs, labels, smooth, options); !p.empty()) written.push_back(p);
  if (std::string p = write_lr_chart(runs[0], labels[0], options); !p.empty()) written.push_back(p);
  std::set<std::string> names;
  for (size_t r = 0; r < runs.size(); ++r) {
    std::string name = "expert_load_" + file_safe(labels[r]);
    for (int k = 2; names.count(name); ++k) name = cat("expert_load_", file_safe(labels[r]), "_", k);
    names.insert(name);
    if (std::string p = write_expert_load_chart(runs[r], labels[r], name + ".png", options); !p.empty())
      written.push_back(p);
  }
  return written;
}

}  // namespace plot
}  // namespace dsv3
