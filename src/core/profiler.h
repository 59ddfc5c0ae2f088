// Named timing zones, for finding where a step's time goes (bench/bench_train --profile, or
// DSV3_PROFILE=1 in the environment of any dsv3 command).
//
//   void moe_forward(...) {
//     DSV3_ZONE("moe.forward");
//     ...
//   }
//
// When profiling is off a zone costs one predictable branch. When on, a zone entered on the thread
// that runs the program's sequential part (outside any parallel region) adds its wall time to its
// name; zones entered inside parallel regions are not timed (their time is inside the enclosing
// zone). Nested zones are reported inclusive ("total") and exclusive ("self"), so the self column
// sums to the profiled time.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace dsv3 {

bool profiler_enabled();
void set_profiler_enabled(bool on);
void reset_profiler();
// A table of the zones, largest self time first: name, calls, total and self seconds, share of self.
std::string profiler_report();
// The same figures as values (benchmarks that report a breakdown).
struct ProfileEntry {
  std::string name;
  int64_t calls = 0;
  double total_seconds = 0, self_seconds = 0;
};
std::vector<ProfileEntry> profiler_entries();

class ProfileZone {
 public:
  explicit ProfileZone(const char* name) {
    if (profiler_enabled()) enter(name);
  }
  ~ProfileZone() {
    if (active_) leave();
  }
  ProfileZone(const ProfileZone&) = delete;
  ProfileZone& operator=(const ProfileZone&) = delete;

 private:
  void enter(const char* name);
  void leave();
  bool active_ = false;
  int slot_ = 0;
  ProfileZone* parent_ = nullptr;
  int64_t child_ns_ = 0;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace dsv3

#define DSV3_ZONE_CONCAT2(a, b) a##b
#define DSV3_ZONE_CONCAT(a, b) DSV3_ZONE_CONCAT2(a, b)
#define DSV3_ZONE(name) ::dsv3::ProfileZone DSV3_ZONE_CONCAT(dsv3_zone_, __LINE__)(name)
