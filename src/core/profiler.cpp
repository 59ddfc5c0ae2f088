#include "core/profiler.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

namespace dsv3 {

namespace {

struct ZoneStats {
  const char* name = nullptr;
  int64_t calls = 0;
  int64_t total_ns = 0;
  int64_t self_ns = 0;
};

struct Profiler {
  std::atomic<bool> enabled{false};
  std::mutex mutex;                // guards the slot table's growth (zones are entered by one thread)
  std::vector<ZoneStats> zones;    // slot per distinct name pointer
  ProfileZone* current = nullptr;  // innermost open zone

  Profiler() {
    const char* env = std::getenv("DSV3_PROFILE");
    if (env && *env && std::strcmp(env, "0") != 0) {
      enabled = true;
      std::atexit([] {
        if (profiler_enabled()) std::fprintf(stderr, "%s", profiler_report().c_str());
      });
    }
  }
  int slot(const char* name) {
    std::lock_guard<std::mutex> lock(mutex);
    for (size_t i = 0; i < zones.size(); ++i)
      if (zones[i].name == name || std::strcmp(zones[i].name, name) == 0) return int(i);
    zones.push_back({name});
    return int(zones.size() - 1);
  }
};

Profiler& profiler() {
  static Profiler p;
  return p;
}

}  // namespace

bool profiler_enabled() { return profiler().enabled.load(std::memory_order_relaxed); }
void set_profiler_enabled(bool on) { profiler().enabled = on; }

void reset_profiler() {
  Profiler& p = profiler();
  std::lock_guard<std::mutex> lock(p.mutex);
  p.zones.clear();
}

void ProfileZone::enter(const char* name) {
  if (omp_in_parallel()) return;
  Profiler& p = profiler();
  slot_ = p.slot(name);
  parent_ = p.current;
  p.current = this;
  active_ = true;
  start_ = std::chrono::steady_clock::now();
}

void ProfileZone::leave() {
  const int64_t ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start_).count();
  Profiler& p = profiler();
  ZoneStats& z = p.zones[size_t(slot_)];
  ++z.calls;
  z.total_ns += ns;
  z.self_ns += ns - child_ns_;
  if (parent_) parent_->child_ns_ += ns;
  p.current = parent_;
}

std::string profiler_report() {
  Profiler& p = profiler();
  std::lock_guard<std::mutex> lock(p.mutex);
  std::vector<ZoneStats> zones = p.zones;
  std::sort(zones.begin(), zones.end(), [](const ZoneStats& a, const ZoneStats& b) { return a.self_ns > b.self_ns; });
  int64_t self_sum = 0;
  for (const ZoneStats& z : zones) self_sum += z.self_ns;
  std::string out = "zone                              calls     total s      self s   self %\n";
  char line[160];
  for (const ZoneStats& z : zones) {
    std::snprintf(line, sizeof(line), "%-30s %8lld %11.4f %11.4f %7.1f%%\n", z.name, (long long)z.calls,
                  double(z.total_ns) * 1e-9, double(z.self_ns) * 1e-9,
                  self_sum > 0 ? 100.0 * double(z.self_ns) / double(self_sum) : 0.0);
    out += line;
  }
  return out;
}

std::vector<ProfileEntry> profiler_entries() {
  Profiler& p = profiler();
  std::lock_guard<std::mutex> lock(p.mutex);
  std::vector<ProfileEntry> out;
  for (const ZoneStats& z : p.zones)
    out.push_back({z.name, z.calls, double(z.total_ns) * 1e-9, double(z.self_ns) * 1e-9});
  return out;
}

}  // namespace dsv3
