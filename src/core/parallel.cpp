#include "core/parallel.h"

#include <omp.h>

#include <algorithm>

namespace dsv3 {

namespace {
int g_threads = 0;
}

int num_threads() { return g_threads > 0 ? g_threads : omp_get_max_threads(); }

void set_num_threads(int n) {
  g_threads = n > 0 ? n : omp_get_num_procs();
  omp_set_num_threads(g_threads);
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t max_chunks = (n + grain - 1) / grain;
  const int threads = int(std::min<int64_t>(num_threads(), max_chunks));
  if (threads <= 1) {
    fn(0, n);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    // The team may be smaller than requested (nested regions, OMP_DYNAMIC): split by its real size.
    const int team = omp_get_num_threads();
    const int t = omp_get_thread_num();
    const int64_t begin = n * t / team;
    const int64_t end = n * (t + 1) / team;
    if (begin < end) fn(begin, end);
  }
}

void parallel_run(const std::function<void(int, int)>& fn) {
  const int threads = num_threads();
  if (threads <= 1) {
    fn(0, 1);
    return;
  }
#pragma omp parallel num_threads(threads)
  fn(omp_get_thread_num(), omp_get_num_threads());
}

}  // namespace dsv3
