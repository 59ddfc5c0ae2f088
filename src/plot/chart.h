// Small chart pieces drawn with cairo on an image surface: a line chart with axes, ticks and a legend;
// a heatmap panel with a colour bar; the colour maps; "nice" tick values. Only what `dsv3 plot` needs —
// the data-specific composition lives in plot/training_plots.
//
// Coordinates are pixels, origin top-left. Text uses cairo's toy font API ("sans-serif").
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

typedef struct _cairo cairo_t;
typedef struct _cairo_surface cairo_surface_t;

namespace dsv3::plot {

struct Rgb {
  double r = 0, g = 0, b = 0;  // 0..1
};

// The i-th colour of a qualitative palette (Tableau 10), cycling; run 0 is blue.
Rgb run_color(size_t i);
// Diverging blue → light grey → red for t in [0, 1] (clamped); t = 0.5 is the neutral middle.
Rgb diverging_color(double t);

// Tick spacing 1, 2 or 5 × 10^k giving at most max_ticks ticks over [lo, hi] (and as many as that allows).
double nice_step(double lo, double hi, int max_ticks);
// The multiples of nice_step(lo, hi, max_ticks) inside [lo, hi]. lo == hi gives that one value.
std::vector<double> nice_ticks(double lo, double hi, int max_ticks = 8);
// The multiples of `step` inside [lo, hi].
std::vector<double> ticks_at(double lo, double hi, double step);
// A tick label with as many decimals as the spacing needs: 0.25 / "0.25", 20000 / "20k",
// 0.0003 with step 1e-4 / "3e-4".
std::string format_tick(double value, double step);

struct Rect {
  double x = 0, y = 0, w = 0, h = 0;
  double right() const { return x + w; }
  double bottom() const { return y + h; }
};

// An ARGB image surface filled white, written out with write_png.
class Canvas {
 public:
  Canvas(int width, int height);
  ~Canvas();
  Canvas(const Canvas&) = delete;
  Canvas& operator=(const Canvas&) = delete;

  cairo_t* cr() const { return cr_; }
  int width() const { return width_; }
  int height() const { return height_; }
  // Throws dsv3::Error naming the path when cairo cannot write it.
  void write_png(const std::string& path) const;

 private:
  int width_, height_;
  cairo_surface_t* surface_;
  cairo_t* cr_;
};

// Text drawing with the chart font. `align_x`: 0 left, 0.5 centre, 1 right of x; `align_y` likewise
// for the ink box around y (0.5 centres the text vertically on y).
void draw_text(cairo_t* cr, const std::string& text, double x, double y, double size, double align_x,
               double align_y, Rgb color = {0.15, 0.15, 0.15}, bool bold = false);
// Text reading bottom to top, centred on (x, y).
void draw_text_vertical(cairo_t* cr, const std::string& text, double x, double y, double size);
double text_width(cairo_t* cr, const std::string& text, double size, bool bold = false);

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct Series {
  std::string label;            // empty: not listed in the legend
  Rgb color;
  std::vector<double> x, y;     // same length; a non-finite y breaks the line
  double line_width = 1.5;      // 0: points only
  double alpha = 1.0;
  double marker_radius = 0;     // > 0: a filled circle at every point
};

struct LineChart {
  std::string title, x_label, y_label;
  std::vector<Series> series;   // drawn in order, later ones on top
  std::vector<size_t> legend_order;   // indices into series for the legend; empty: drawing order
  double x_min = kNaN, x_max = kNaN;  // NaN: the data's range
  double y_min = kNaN, y_max = kNaN;  // NaN: the data's range plus a margin; data outside is clipped
  bool x_integer = false;             // x ticks at whole numbers only (steps)
};

// Draws the chart (title, axes, grid, tick labels, axis titles, series, legend) inside `area`. The
// legend goes into the corner of the plot where it hides the fewest data points.
void draw_line_chart(cairo_t* cr, const Rect& area, const LineChart& chart);

// A value → colour mapping for heatmaps: values in [lo, hi] spread over diverging_color; values
// above hi are drawn as hi and labelled "hi+" on the colour bar.
struct ColorScale {
  double lo = 0, hi = 2;
  std::string label;
  Rgb color(double value) const;  // non-finite: grey
};

struct Heatmap {
  int64_t rows = 0, cols = 0;
  std::vector<double> values;        // [rows, cols] row-major; row 0 is drawn at the top
  double x_first = 0, x_last = 0;    // x-axis values at the centres of the first and last column
  double row_first = 0;              // y-axis value of row 0 (rows count up from it)
  bool x_integer = false;            // x ticks at whole numbers only
};

// The cells of `map` stretched over `cells` with a frame, y-axis tick labels left of it (row values,
// integer ticks) and, when `x_axis` is true, x-axis tick labels below it.
void draw_heatmap(cairo_t* cr, const Rect& cells, const Heatmap& map, const ColorScale& scale, bool x_axis);
// A vertical colour bar in `bar` with tick labels on its right and the scale's label above it.
void draw_color_bar(cairo_t* cr, const Rect& bar, const ColorScale& scale);

}  // namespace dsv3::plot
