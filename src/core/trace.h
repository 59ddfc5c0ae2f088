// Timelines in the Chrome trace-event format (viewable in Perfetto or chrome://tracing): complete events
// ("ph": "X") with a start and a duration in microseconds, one process per rank.
//
//   TraceRecorder trace;                          // its clock starts now
//   { auto span = trace.span("adamw", "optimizer"); ... }
//   write_chrome_trace(path, events, {"rank 0", "rank 1"});
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace dsv3 {

struct TraceEvent {
  std::string name, category;
  double start_us = 0, duration_us = 0;
  int64_t process = 0, thread = 0;
};

// {"traceEvents": [...], "displayTimeUnit": "ms"} with a process_name metadata event per name.
std::string chrome_trace_json(const std::vector<TraceEvent>& events, const std::vector<std::string>& process_names);
void write_chrome_trace(const std::string& path, const std::vector<TraceEvent>& events,
                        const std::vector<std::string>& process_names);

// Records spans of one process against its own clock (started at construction or restart()).
class TraceRecorder {
 public:
  TraceRecorder() { restart(); }
  void restart() { origin_ = std::chrono::steady_clock::now(); }
  bool enabled = false;

  class Span {
   public:
    Span(TraceRecorder* owner, std::string name, std::string category);
    ~Span();
    Span(const Span&) = delete;
    Span& operator=(const Span&) = delete;

   private:
    TraceRecorder* owner_;
    std::string name_, category_;
    double start_us_ = 0;
  };
  // A span from now to the end of the returned object's scope (nothing when not enabled).
  Span span(std::string name, std::string category) { return Span(enabled ? this : nullptr, std::move(name), std::move(category)); }
  double now_us() const;
  const std::vector<TraceEvent>& events() const { return events_; }

 private:
  std::chrono::steady_clock::time_point origin_;
  std::vector<TraceEvent> events_;
};

}  // namespace dsv3
