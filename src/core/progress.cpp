#include "core/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace dsv3 {

namespace {

constexpr int64_t kRedrawIntervalNs = 125'000'000;  // at most 8 redraws a second

std::string printf_string(const char* format, double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), format, value);
  return buffer;
}

}  // namespace

std::string format_count(double value) {
  const double a = std::fabs(value);
  if (a < 1000) return a == std::floor(a) ? printf_string("%.0f", value) : printf_string("%.1f", value);
  static const char* suffixes[] = {"k", "M", "G", "T"};
  int index = -1;
  double scaled = value;
  while (std::fabs(scaled) >= 999.5 && index < 3) {
    scaled /= 1000;
    ++index;
  }
  const double s = std::fabs(scaled);
  const char* format = s >= 99.95 ? "%.0f" : s >= 9.995 ? "%.1f" : "%.2f";
  return printf_string(format, scaled) + suffixes[index];
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t total = int64_t(std::llround(seconds));
  const int64_t h = total / 3600, m = (total / 60) % 60, s = total % 60;
  char buffer[48];
  if (h > 0) std::snprintf(buffer, sizeof(buffer), "%lld:%02lld:%02lld", (long long)h, (long long)m, (long long)s);
  else std::snprintf(buffer, sizeof(buffer), "%lld:%02lld", (long long)m, (long long)s);
  return buffer;
}

ProgressBar::ProgressBar(std::string label, int64_t total, std::string unit, bool enabled, std::FILE* stream)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      stream_(stream ? stream : stderr),
      enabled_(enabled),
      terminal_(enabled && ::isatty(::fileno(stream_)) == 1),
      start_(std::chrono::steady_clock::now()) {
  total_.store(std::max<int64_t>(total, 0));
  if (terminal_) {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::string text = line(false);
    std::fprintf(stream_, "\r%s", text.c_str());
    std::fflush(stream_);
    last_width_ = text.size();
  }
}

ProgressBar::~ProgressBar() {
  if (!finished_) finish();
}

double ProgressBar::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

double ProgressBar::eta_seconds() const {
  const int64_t done = done_.load(std::memory_order_relaxed);
  const int64_t total = total_.load(std::memory_order_relaxed);
  if (total <= 0 || done <= 0) return -1.0;
  return double(std::max<int64_t>(total - done, 0)) * elapsed_seconds() / double(done);
}

void ProgressBar::add(int64_t amount) {
  done_.fetch_add(amount, std::memory_order_relaxed);
  maybe_draw();
}

void ProgressBar::update(int64_t done) {
  done_.store(done, std::memory_order_relaxed);
  maybe_draw();
}

void ProgressBar::set_total(int64_t total) { total_.store(std::max<int64_t>(total, 0)); }

void ProgressBar::set_note(const std::string& note) {
  std::lock_guard<std::mutex> lock(mutex_);
  note_ = note;
}

void ProgressBar::maybe_draw() {
  if (!terminal_) return;
  const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::steady_clock::now() - start_)
                          .count();
  if (now < next_draw_ns_.load(std::memory_order_relaxed)) return;
  std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
  if (!lock.owns_lock() || finished_) return;  // another thread is drawing
  next_draw_ns_.store(now + kRedrawIntervalNs, std::memory_order_relaxed);
  std::string text = line(false);
  const size_t width = text.size();
  if (width < last_width_) text.append(last_width_ - width, ' ');  // erase the longer previous line
  std::fprintf(stream_, "\r%s", text.c_str());
  std::fflush(stream_);
  last_width_ = width;
}

std::string ProgressBar::line(bool final) const {
  const double elapsed = elapsed_seconds();
  const int64_t done = done_.load(std::memory_order_relaxed);
  const int64_t total = total_.load(std::memory_order_relaxed);
  const std::string unit = unit_.empty() ? "" : " " + unit_;
  std::string out = label_;
  if (total > 0) out += printf_string("  %5.1f%%", 100.0 * double(std::min(done, total)) / double(total));
  if (final) {
    out += "  " + format_count(double(done)) + unit + " in " + printf_string("%.2fs", elapsed);
    if (elapsed > 0 && done > 0) out += " (" + format_count(double(done) / elapsed) + unit + "/s)";
  } else {
    out += "  " + format_count(double(done));
    if (total > 0) out += "/" + format_count(double(total));
    out += unit;
    if (elapsed > 0.2 && done > 0) {
      const double rate = double(done) / elapsed;
      out += "  " + format_count(rate) + unit + "/s";
      if (total > done) out += "  ETA " + format_duration(eta_seconds());
    }
  }
  if (!note_.empty()) out += "  " + note_;
  return out;
}

void ProgressBar::finish() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (finished_) return;
  finished_ = true;
  if (!enabled_) return;
  std::string text = line(true);
  const size_t width = text.size();
  if (terminal_ && width < last_width_) text.append(last_width_ - width, ' ');
  std::fprintf(stream_, terminal_ ? "\r%s\n" : "%s\n", text.c_str());
  std::fflush(stream_);
}

}  // namespace dsv3
