#include "plot/chart.h"

#include <cairo.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <numbers>

#include "core/error.h"

namespace dsv3::plot {

namespace {

constexpr const char* kFont = "sans-serif";
constexpr Rgb kTextColor{0.15, 0.15, 0.15};
constexpr Rgb kAxisColor{0.35, 0.35, 0.35};
constexpr Rgb kGridColor{0.90, 0.90, 0.90};
constexpr double kTickFont = 12;

Rgb hex(uint32_t rgb) {
  return {((rgb >> 16) & 0xff) / 255.0, ((rgb >> 8) & 0xff) / 255.0, (rgb & 0xff) / 255.0};
}

void set_color(cairo_t* cr, Rgb c, double alpha = 1.0) { cairo_set_source_rgba(cr, c.r, c.g, c.b, alpha); }

void set_font(cairo_t* cr, double size, bool bold) {
  cairo_select_font_face(cr, kFont, CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
}

void line(cairo_t* cr, double x0, double y0, double x1, double y1) {
  cairo_move_to(cr, x0, y0);
  cairo_line_to(cr, x1, y1);
}

// Finite data range of the chart's x values (over all series), or of y values with x inside [x_lo, x_hi].
void data_range(const LineChart& chart, bool y_axis, double x_lo, double x_hi, double& lo, double& hi) {
  lo = INFINITY;
  hi = -INFINITY;
  for (const Series& s : chart.series)
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      if (y_axis && (s.x[i] < x_lo || s.x[i] > x_hi)) continue;
      const double v = y_axis ? s.y[i] : s.x[i];
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
}

// Widens a degenerate or empty range so that it can be drawn.
void widen(double& lo, double& hi) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) {
    lo = 0;
    hi = 1;
  } else if (hi <= lo) {
    const double pad = lo == 0 ? 1.0 : std::abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
}

struct Legend {
  std::vector<const Series*> entries;
  double w = 0, h = 0;
  static constexpr double kRow = 20, kSwatch = 26, kPad = 8;
};

Legend measure_legend(cairo_t* cr, const LineChart& chart) {
  Legend legend;
  double text_w = 0;
  std::vector<size_t> order = chart.legend_order;
  if (order.empty())
    for (size_t i = 0; i < chart.series.size(); ++i) order.push_back(i);
  for (size_t i : order) {
    DSV3_CHECK(i < chart.series.size(), "[plot] legend entry ", i, " of ", chart.series.size(), " series");
    const Series& s = chart.series[i];
    if (s.label.empty()) continue;
    legend.entries.push_back(&s);
    text_w = std::max(text_w, text_width(cr, s.label, kTickFont));
  }
  legend.w = 2 * Legend::kPad + Legend::kSwatch + 6 + text_w;
  legend.h = 2 * Legend::kPad + Legend::kRow * double(legend.entries.size()) - 4;
  return legend;
}

void draw_legend(cairo_t* cr, const Legend& legend, double x, double y) {
  cairo_rectangle(cr, x, y, legend.w, legend.h);
  set_color(cr, {1, 1, 1}, 0.88);
  cairo_fill_preserve(cr);
  set_color(cr, {0.75, 0.75, 0.75});
  cairo_set_line_width(cr, 1);
  cairo_stroke(cr);
  double row_y = y + Legend::kPad + (Legend::kRow - 4) / 2;
  for (const Series* s : legend.entries) {
    const double sx = x + Legend::kPad;
    if (s->line_width > 0) {
      set_color(cr, s->color, std::max(s->alpha, 0.5));
      cairo_set_line_width(cr, std::max(s->line_width, 2.0));
      line(cr, sx, row_y, sx + Legend::kSwatch, row_y);
      cairo_stroke(cr);
    }
    if (s->marker_radius > 0) {
      set_color(cr, s->color, 1.0);
      cairo_arc(cr, sx + Legend::kSwatch / 2, row_y, std::max(s->marker_radius, 3.0), 0, 2 * std::numbers::pi);
      cairo_fill(cr);
    }
    draw_text(cr, s->label, sx + Legend::kSwatch + 6, row_y, kTickFont, 0, 0.5);
    row_y += Legend::kRow;
  }
}

}  // namespace

Rgb run_color(size_t i) {
  static constexpr std::array<uint32_t, 10> kPalette = {0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd,
                                                        0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf};
  return hex(kPalette[i % kPalette.size()]);
}

Rgb diverging_color(double t) {
  // ColorBrewer RdBu, reversed (blue for low, red for high), with a light grey middle.
  static constexpr std::array<uint32_t, 11> kStops = {0x053061, 0x2166ac, 0x4393c3, 0x92c5de, 0xd1e5f0, 0xf7f7f7,
                                                      0xfddbc7, 0xf4a582, 0xd6604d, 0xb2182b, 0x67001f};
  if (!std::isfinite(t)) t = 0.5;
  t = std::clamp(t, 0.0, 1.0) * double(kStops.size() - 1);
  const size_t i = std::min(size_t(t), kStops.size() - 2);
  const double f = t - double(i);
  const Rgb a = hex(kStops[i]), b = hex(kStops[i + 1]);
  return {a.r + f * (b.r - a.r), a.g + f * (b.g - a.g), a.b + f * (b.b - a.b)};
}

double nice_step(double lo, double hi, int max_ticks) {
  DSV3_CHECK(std::isfinite(lo) && std::isfinite(hi), "[plot] axis range [", lo, ", ", hi, "] is not finite");
  if (hi < lo) std::swap(lo, hi);
  max_ticks = std::max(max_ticks, 2);
  double span = hi - lo;
  if (span <= 0) span = lo == 0 ? 1.0 : std::abs(lo);
  // Start one decade below the spacing that would give exactly max_ticks intervals, and take the first
  // 1/2/5 multiple whose ticks fit.
  double base = std::pow(10.0, std::floor(std::log10(span / max_ticks)) - 1);
  for (;;) {
    for (double m : {1.0, 2.0, 5.0}) {
      const double step = m * base;
      const double count = std::floor(hi / step + 1e-9) - std::ceil(lo / step - 1e-9) + 1;
      if (count <= max_ticks) return step;
    }
    base *= 10;
  }
}

std::vector<double> nice_ticks(double lo, double hi, int max_ticks) {
  if (hi < lo) std::swap(lo, hi);
  return ticks_at(lo, hi, nice_step(lo, hi, max_ticks));
}

std::vector<double> ticks_at(double lo, double hi, double step) {
  std::vector<double> ticks;
  DSV3_CHECK(step > 0 && std::isfinite(step) && std::isfinite(lo) && std::isfinite(hi), "[plot] tick step ", step,
             " over [", lo, ", ", hi, "]");
  const int64_t first = int64_t(std::ceil(lo / step - 1e-9)), last = int64_t(std::floor(hi / step + 1e-9));
  DSV3_CHECK(last - first < 10000, "[plot] ", last - first + 1, " ticks of ", step, " over [", lo, ", ", hi, "]");
  // k · m · 10^e with an integer mantissa m, dividing by 10^-e for fractions: 3 · 0.2 gives 0.6, not
  // 0.6000000000000001.
  const int e = int(std::floor(std::log10(step) + 1e-9));
  const double m = std::round(step / std::pow(10.0, e));
  const bool exact = std::abs(m * std::pow(10.0, e) - step) <= 1e-9 * step;
  for (int64_t k = first; k <= last; ++k)
    ticks.push_back(!exact ? double(k) * step
                    : e >= 0 ? double(k) * m * std::pow(10.0, e)
                             : double(k) * m / std::pow(10.0, -e));
  return ticks;
}

std::string format_tick(double value, double step) {
  step = std::abs(step);
  if (std::abs(value) < step * 1e-6 || value == 0) return "0";
  char buf[64];
  if (step >= 1e6 || (step >= 1e3 && std::abs(value) >= 1e4)) {
    const bool mega = step >= 1e6;
    std::snprintf(buf, sizeof buf, "%.0f%s", value / (mega ? 1e6 : 1e3), mega ? "M" : "k");
  } else if (step < 1e-3) {
    const int exponent = int(std::floor(std::log10(std::abs(value)) + 1e-9));
    const int decimals = std::max(0, exponent - int(std::floor(std::log10(step) + 1e-9)));
    std::snprintf(buf, sizeof buf, "%.*f", decimals, value / std::pow(10.0, exponent));
    std::string mantissa = buf;
    if (mantissa.find('.') != std::string::npos) {
      while (mantissa.back() == '0') mantissa.pop_back();
      if (mantissa.back() == '.') mantissa.pop_back();
    }
    return mantissa + "e" + std::to_string(exponent);
  } else {
    const int decimals = std::max(0, -int(std::floor(std::log10(step) + 1e-9)));
    std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
  }
  return buf;
}

Canvas::Canvas(int width, int height) : width_(width), height_(height) {
  surface_ = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, width, height);
  DSV3_CHECK(cairo_surface_status(surface_) == CAIRO_STATUS_SUCCESS, "[plot] cannot create a ", width, "x",
             height, " image: ", cairo_status_to_string(cairo_surface_status(surface_)));
  cr_ = cairo_create(surface_);
  cairo_set_source_rgb(cr_, 1, 1, 1);
  cairo_paint(cr_);
}

Canvas::~Canvas() {
  cairo_destroy(cr_);
  cairo_surface_destroy(surface_);
}

void Canvas::write_png(const std::string& path) const {
  cairo_surface_flush(surface_);
  const cairo_status_t status = cairo_surface_write_to_png(surface_, path.c_str());
  DSV3_CHECK(status == CAIRO_STATUS_SUCCESS, "[plot] cannot write ", path, ": ", cairo_status_to_string(status));
}

void draw_text(cairo_t* cr, const std::string& text, double x, double y, double size, double align_x,
               double align_y, Rgb color, bool bold) {
  set_font(cr, size, bold);
  cairo_text_extents_t ext;
  cairo_text_extents(cr, text.c_str(), &ext);
  // Vertical alignment uses the height of capitals and digits (~0.73 em in sans fonts), so labels on
  // one row share a baseline whatever their letters.
  const double cap = 0.73 * size;
  set_color(cr, color);
  cairo_move_to(cr, x - align_x * ext.x_advance, y + (1 - align_y) * cap);
  cairo_show_text(cr, text.c_str());
  cairo_new_path(cr);
}

void draw_text_vertical(cairo_t* cr, const std::string& text, double x, double y, double size) {
  cairo_save(cr);
  cairo_translate(cr, x, y);
  cairo_rotate(cr, -std::numbers::pi / 2);
  draw_text(cr, text, 0, 0, size, 0.5, 0.5, kTextColor);
  cairo_restore(cr);
}

double text_width(cairo_t* cr, const std::string& text, double size, bool bold) {
  set_font(cr, size, bold);
  cairo_text_extents_t ext;
  cairo_text_extents(cr, text.c_str(), &ext);
  return ext.x_advance;
}

void draw_line_chart(cairo_t* cr, const Rect& area, const LineChart& chart) {
  double x_lo = chart.x_min, x_hi = chart.x_max;
  {
    double lo, hi;
    data_range(chart, false, 0, 0, lo, hi);
    if (!std::isfinite(x_lo)) x_lo = lo;
    if (!std::isfinite(x_hi)) x_hi = hi;
    widen(x_lo, x_hi);
  }
  double y_lo = chart.y_min, y_hi = chart.y_max;
  {
    double lo, hi;
    data_range(chart, true, x_lo, x_hi, lo, hi);
    const double pad = std::isfinite(lo) && hi > lo ? 0.05 * (hi - lo) : 0;
    if (!std::isfinite(y_lo)) y_lo = lo - pad;
    if (!std::isfinite(y_hi)) y_hi = hi + pad;
    widen(y_lo, y_hi);
  }

  // Layout: title on top, y tick labels and the rotated y title on the left, x ones below.
  const std::vector<double> y_ticks = nice_ticks(y_lo, y_hi, std::max(3, int(area.h / 70)));
  const double y_step = nice_step(y_lo, y_hi, std::max(3, int(area.h / 70)));
  double y_label_w = 0;
  for (double t : y_ticks) y_label_w = std::max(y_label_w, text_width(cr, format_tick(t, y_step), kTickFont));
  Rect plot;
  plot.x = area.x + 16 + (chart.y_label.empty() ? 0 : 22) + y_label_w + 8;
  plot.y = area.y + (chart.title.empty() ? 16 : 48);
  plot.w = area.right() - 24 - plot.x;
  plot.h = area.bottom() - (chart.x_label.empty() ? 30 : 54) - plot.y;
  const int x_max_ticks = std::max(3, int(plot.w / 90));
  const double x_step = std::max(chart.x_integer ? 1.0 : 0.0, nice_step(x_lo, x_hi, x_max_ticks));
  const std::vector<double> x_ticks = ticks_at(x_lo, x_hi, x_step);
  auto px = [&](double x) { return plot.x + (x - x_lo) / (x_hi - x_lo) * plot.w; };
  auto py = [&](double y) { return plot.bottom() - (y - y_lo) / (y_hi - y_lo) * plot.h; };

  if (!chart.title.empty())
    draw_text(cr, chart.title, plot.x + plot.w / 2, area.y + 22, 17, 0.5, 0.5, kTextColor, true);
  if (!chart.x_label.empty())
    draw_text(cr, chart.x_label, plot.x + plot.w / 2, area.bottom() - 16, 13, 0.5, 0.5);
  if (!chart.y_label.empty()) draw_text_vertical(cr, chart.y_label, area.x + 20, plot.y + plot.h / 2, 13);

  // Grid and tick labels.
  cairo_set_line_width(cr, 1);
  for (double t : y_ticks) {
    const double y = std::round(py(t)) + 0.5;
    set_color(cr, kGridColor);
    line(cr, plot.x, y, plot.right(), y);
    cairo_stroke(cr);
    draw_text(cr, format_tick(t, y_step), plot.x - 8, y, kTickFont, 1, 0.5);
  }
  for (double t : x_ticks) {
    const double x = std::round(px(t)) + 0.5;
    set_color(cr, kGridColor);
    line(cr, x, plot.y, x, plot.bottom());
    cairo_stroke(cr);
    set_color(cr, kAxisColor);
    line(cr, x, plot.bottom(), x, plot.bottom() + 5);
    cairo_stroke(cr);
    draw_text(cr, format_tick(t, x_step), x, plot.bottom() + 9, kTickFont, 0.5, 0);
  }

  // Series, clipped to the plot.
  cairo_save(cr);
  cairo_rectangle(cr, plot.x, plot.y, plot.w, plot.h);
  cairo_clip(cr);
  cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
  cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
  for (const Series& s : chart.series) {
    const size_t n = std::min(s.x.size(), s.y.size());
    if (s.line_width > 0) {
      bool pen_down = false;
      for (size_t i = 0; i < n; ++i) {
        if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) {
          pen_down = false;
          continue;
        }
        if (pen_down) {
          cairo_line_to(cr, px(s.x[i]), py(s.y[i]));
        } else {
          cairo_move_to(cr, px(s.x[i]), py(s.y[i]));
          pen_down = true;
        }
      }
      set_color(cr, s.color, s.alpha);
      cairo_set_line_width(cr, s.line_width);
      cairo_stroke(cr);
    }
    if (s.marker_radius > 0) {
      // Markers on the frame (a last-step evaluation, say) are drawn whole.
      const double r = s.marker_radius + 1;
      cairo_save(cr);
      cairo_reset_clip(cr);
      cairo_rectangle(cr, plot.x - r, plot.y - r, plot.w + 2 * r, plot.h + 2 * r);
      cairo_clip(cr);
      set_color(cr, s.color, s.alpha);
      for (size_t i = 0; i < n; ++i) {
        if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
        cairo_new_sub_path(cr);
        cairo_arc(cr, px(s.x[i]), py(s.y[i]), s.marker_radius, 0, 2 * std::numbers::pi);
      }
      cairo_fill(cr);
      cairo_restore(cr);
    }
  }
  cairo_restore(cr);

  // Frame on top of the data.
  set_color(cr, kAxisColor);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, std::round(plot.x) + 0.5, std::round(plot.y) + 0.5, std::round(plot.w), std::round(plot.h));
  cairo_stroke(cr);

  // Legend in the corner hiding the fewest data points (sampled along each line, so sparse series count).
  const Legend legend = measure_legend(cr, chart);
  if (legend.entries.empty()) return;
  const double inset = 10;
  const std::array<std::array<double, 2>, 4> corners = {{
      {plot.right() - inset - legend.w, plot.y + inset},   // top right
      {plot.x + inset, plot.y + inset},                    // top left
      {plot.right() - inset - legend.w, plot.bottom() - inset - legend.h},  // bottom right
      {plot.x + inset, plot.bottom() - inset - legend.h},  // bottom left
  }};
  std::array<int64_t, 4> hidden{};
  for (const Series& s : chart.series) {
    const size_t n = std::min(s.x.size(), s.y.size());
    const int samples = s.line_width > 0 ? 8 : 1;
    for (size_t i = 0; i < n; ++i) {
      const bool next_ok = i + 1 < n && std::isfinite(s.y[i + 1]) && std::isfinite(s.x[i + 1]);
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      for (int k = 0; k < (next_ok ? samples : 1); ++k) {
        const double f = double(k) / samples;
        const double x = next_ok ? px(s.x[i] + f * (s.x[i + 1] - s.x[i])) : px(s.x[i]);
        const double y = next_ok ? py(s.y[i] + f * (s.y[i + 1] - s.y[i])) : py(s.y[i]);
        for (size_t c = 0; c < corners.size(); ++c)
          if (x >= corners[c][0] - 4 && x <= corners[c][0] + legend.w + 4 && y >= corners[c][1] - 4 &&
              y <= corners[c][1] + legend.h + 4)
            ++hidden[c];
      }
    }
  }
  const size_t best = size_t(std::min_element(hidden.begin(), hidden.end()) - hidden.begin());
  draw_legend(cr, legend, corners[best][0], corners[best][1]);
}

Rgb ColorScale::color(double value) const {
  if (!std::isfinite(value)) return {0.8, 0.8, 0.8};
  return diverging_color((value - lo) / (hi - lo));
}

void draw_heatmap(cairo_t* cr, const Rect& cells, const Heatmap& map, const ColorScale& scale, bool x_axis) {
  DSV3_CHECK(map.rows > 0 && map.cols > 0 && int64_t(map.values.size()) == map.rows * map.cols,
             "[plot] heatmap of ", map.rows, "x", map.cols, " has ", map.values.size(), " values");
  // One pixel per cell in an image, stretched over the panel without smoothing.
  cairo_surface_t* image = cairo_image_surface_create(CAIRO_FORMAT_RGB24, int(map.cols), int(map.rows));
  DSV3_CHECK(cairo_surface_status(image) == CAIRO_STATUS_SUCCESS, "[plot] cannot create a ", map.cols, "x",
             map.rows, " heatmap image");
  cairo_surface_flush(image);
  unsigned char* data = cairo_image_surface_get_data(image);
  const int stride = cairo_image_surface_get_stride(image);
  for (int64_t r = 0; r < map.rows; ++r) {
    auto* row = reinterpret_cast<uint32_t*>(data + r * stride);
    for (int64_t c = 0; c < map.cols; ++c) {
      const Rgb color = scale.color(map.values[size_t(r * map.cols + c)]);
      row[c] = (uint32_t(std::lround(color.r * 255)) << 16) | (uint32_t(std::lround(color.g * 255)) << 8) |
               uint32_t(std::lround(color.b * 255));
    }
  }
  cairo_surface_mark_dirty(image);
  cairo_save(cr);
  cairo_rectangle(cr, cells.x, cells.y, cells.w, cells.h);
  cairo_clip(cr);
  cairo_translate(cr, cells.x, cells.y);
  cairo_scale(cr, cells.w / double(map.cols), cells.h / double(map.rows));
  cairo_set_source_surface(cr, image, 0, 0);
  cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_NEAREST);
  cairo_pattern_set_extend(cairo_get_source(cr), CAIRO_EXTEND_PAD);
  cairo_paint(cr);
  cairo_restore(cr);
  cairo_surface_destroy(image);

  set_color(cr, kAxisColor);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, std::round(cells.x) - 0.5, std::round(cells.y) - 0.5, std::round(cells.w) + 1,
                  std::round(cells.h) + 1);
  cairo_stroke(cr);

  // Row ticks at integer rows, at cell centres.
  const double row_h = cells.h / double(map.rows);
  const int row_max_ticks = std::max(2, int(cells.h / 18));
  const double row_step = std::max(1.0, nice_step(0, double(map.rows - 1), row_max_ticks));
  for (int64_t r = 0; r < map.rows; r += int64_t(row_step)) {
    const double y = cells.y + (double(r) + 0.5) * row_h;
    set_color(cr, kAxisColor);
    line(cr, cells.x - 5, y, cells.x - 1, y);
    cairo_stroke(cr);
    draw_text(cr, format_tick(map.row_first + double(r), 1), cells.x - 8, y, kTickFont - 1, 1, 0.5);
  }
  if (!x_axis) return;
  const double col_w = cells.w / double(map.cols);
  const double x0 = cells.x + col_w / 2, x1 = cells.right() - col_w / 2;
  const double span = map.x_last - map.x_first;
  const int x_max_ticks = std::max(3, int(cells.w / 90));
  const double x_step = std::max(map.x_integer ? 1.0 : 0.0, nice_step(map.x_first, map.x_last, x_max_ticks));
  for (double t : ticks_at(map.x_first, map.x_last, x_step)) {
    const double x = span > 0 ? x0 + (t - map.x_first) / span * (x1 - x0) : (x0 + x1) / 2;
    set_color(cr, kAxisColor);
    line(cr, x, cells.bottom() + 1, x, cells.bottom() + 5);
    cairo_stroke(cr);
    draw_text(cr, format_tick(t, x_step), x, cells.bottom() + 9, kTickFont, 0.5, 0);
  }
}

void draw_color_bar(cairo_t* cr, const Rect& bar, const ColorScale& scale) {
  const int rows = std::max(1, int(std::round(bar.h)));
  for (int i = 0; i < rows; ++i) {
    const double value = scale.hi - (i + 0.5) / rows * (scale.hi - scale.lo);
    set_color(cr, scale.color(value));
    cairo_rectangle(cr, bar.x, bar.y + bar.h * i / rows, bar.w, bar.h / rows + 0.5);
    cairo_fill(cr);
  }
  set_color(cr, kAxisColor);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, std::round(bar.x) - 0.5, std::round(bar.y) - 0.5, std::round(bar.w) + 1, std::round(bar.h) + 1);
  cairo_stroke(cr);
  const int max_ticks = std::max(3, int(bar.h / 40));
  const double step = nice_step(scale.lo, scale.hi, max_ticks);
  for (double t : nice_ticks(scale.lo, scale.hi, max_ticks)) {
    const double y = bar.bottom() - (t - scale.lo) / (scale.hi - scale.lo) * bar.h;
    set_color(cr, kAxisColor);
    line(cr, bar.right() + 1, y, bar.right() + 5, y);
    cairo_stroke(cr);
    std::string label = format_tick(t, step);
    if (std::abs(t - scale.hi) < step * 1e-6) label += "+";
    draw_text(cr, label, bar.right() + 8, y, kTickFont, 0, 0.5);
  }
  if (!scale.label.empty()) draw_text(cr, scale.label, bar.x + bar.w / 2, bar.y - 12, kTickFont, 0.5, 1);
}

}  // namespace dsv3::plot
