// A one-line progress display for long jobs (tokenizer training, corpus encoding, model training).
//
// On a terminal it redraws one stderr line in place ("\r"), at most ~8 times a second:
//   encoding   42.0%  1.23M/2.93M tokens  1.52M tokens/s  ETA 0:01
// When the stream is not a terminal (a log file, a pipe, a test) it prints only the final line, so
// logs stay clean. Safe to call add()/update() from several threads at once.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>

namespace dsv3 {

// 1234 -> "1234", 12345 -> "12.3k", 1.5e6 -> "1.50M" (3 significant digits above 1000).
std::string format_count(double value);
// Seconds -> "0:07", "12:34", "1:02:03".
std::string format_duration(double seconds);

class ProgressBar {
 public:
  // `total` is the amount of work in `unit`s; 0 when unknown (then no percentage or ETA).
  // `stream` defaults to stderr; `enabled` false prints nothing at all, not even the final line.
  ProgressBar(std::string label, int64_t total, std::string unit, bool enabled = true, std::FILE* stream = nullptr);
  ~ProgressBar();  // finishes the line if finish() was not called
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void add(int64_t amount);    // done += amount
  void update(int64_t done);   // done = `done` (absolute)
  void set_total(int64_t total);
  // Free text shown after the numbers (e.g. "loss 3.21"); copied under a lock.
  void set_note(const std::string& note);
  // Prints the final line "label 100.0%  N unit in 3.2s (R unit/s)  note" and ends it with "\n".
  void finish();

  int64_t done() const { return done_.load(std::memory_order_relaxed); }
  double elapsed_seconds() const;
  // Seconds left at the pace so far; negative while unknown (no total, or nothing done yet).
  double eta_seconds() const;
  bool is_terminal() const { return terminal_; }

 private:
  void maybe_draw();
  std::string line(bool final) const;  // caller holds mutex_

  std::string label_, unit_, note_;
  std::atomic<int64_t> done_{0};
  std::atomic<int64_t> total_{0};
  std::FILE* stream_;
  bool enabled_, terminal_, finished_ = false;
  size_t last_width_ = 0;
  std::chrono::steady_clock::time_point start_;
  std::atomic<int64_t> next_draw_ns_{0};
  mutable std::mutex mutex_;
};

}  // namespace dsv3
