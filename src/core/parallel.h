// The one place that owns threading. Work is split into contiguous ranges by a fixed rule that
// depends only on (n, thread count), so results are reproducible run to run (STYLE.md §5).
#pragma once

#include <cstdint>
#include <functional>

namespace dsv3 {

int num_threads();
void set_num_threads(int n);  // n <= 0 means all hardware threads

// Calls fn(begin, end) on disjoint ranges covering [0, n); ranges are at least `grain` long.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

// Calls fn(thread_index, n_threads) once on each worker thread.
void parallel_run(const std::function<void(int, int)>& fn);

}  // namespace dsv3
