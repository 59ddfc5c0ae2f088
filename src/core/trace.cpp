#include "core/trace.h"

#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace dsv3 {

std::string chrome_trace_json(const std::vector<TraceEvent>& events, const std::vector<std::string>& process_names) {
  nlohmann::json list = nlohmann::json::array();
  for (size_t p = 0; p < process_names.size(); ++p)
    list.push_back({{"name", "process_name"}, {"ph", "M"}, {"pid", p}, {"args", {{"name", process_names[p]}}}});
  for (const TraceEvent& e : events)
    list.push_back({{"name", e.name}, {"cat", e.category}, {"ph", "X"}, {"ts", e.start_us}, {"dur", e.duration_us},
                    {"pid", e.process}, {"tid", e.thread}});
  return nlohmann::json{{"traceEvents", list}, {"displayTimeUnit", "ms"}}.dump();
}

void write_chrome_trace(const std::string& path, const std::vector<TraceEvent>& events,
                        const std::vector<std::string>& process_names) {
  std::ofstream out(path, std::ios::trunc);
  DSV3_CHECK(out.good(), "[trace] cannot write ", path);
  out << chrome_trace_json(events, process_names) << "\n";
  DSV3_CHECK(out.good(), "[trace] writing ", path, " failed");
}

TraceRecorder::Span::Span(TraceRecorder* owner, std::string name, std::string category)
    : owner_(owner), name_(std::move(name)), category_(std::move(category)) {
  if (owner_) start_us_ = owner_->now_us();
}

TraceRecorder::Span::~Span() {
  if (!owner_) return;
  owner_->events_.push_back({std::move(name_), std::move(category_), start_us_, owner_->now_us() - start_us_, 0, 0});
}

double TraceRecorder::now_us() const {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - origin_).count();
}

}  // namespace dsv3
