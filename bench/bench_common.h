// Shared benchmark helpers (header-only): timing with warm-up and medians, and the machine peaks that
// benchmarks report their fraction of — read bandwidth and oneDNN matmul GFLOP/s (STYLE.md §9).
#pragma once

#include <dnnl.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "ops/ops.h"

namespace dsv3::bench {

inline double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Reads "--flag value" pairs, handing each to on_flag (which returns false for a flag it does not know).
// --help or -h prints `usage` and exits 0; an unknown flag or a missing value prints the problem and
// `usage` to stderr and exits 2.
inline void parse_flags(int argc, char** argv, const char* usage,
                        const std::function<bool(const std::string&, const std::string&)>& on_flag) {
  for (int i = 1; i < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(usage, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s needs a value\n%s", flag.c_str(), usage);
      std::exit(2);
    }
    if (!on_flag(flag, argv[i + 1])) {
      std::fprintf(stderr, "unknown option %s\n%s", flag.c_str(), usage);
      std::exit(2);
    }
  }
}

// "1,4,16" -> {1, 4, 16}.
inline std::vector<int64_t> parse_list(const std::string& text) {
  std::vector<int64_t> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::stoll(item));
  return out;
}

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Runs fn `warmup` times untimed, then `runs` times; returns every timed duration in seconds.
template <typename F>
std::vector<double> time_runs(F&& fn, int runs, int warmup = 1) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> seconds;
  for (int i = 0; i < runs; ++i) {
    const double t0 = now_seconds();
    fn();
    seconds.push_back(now_seconds() - t0);
  }
  return seconds;
}

// 64-byte aligned, zero-initialised scratch for benchmarks.
struct AlignedBuffer {
  std::unique_ptr<uint8_t[], void (*)(void*)> data{nullptr, std::free};
  size_t bytes = 0;
  explicit AlignedBuffer(size_t n) : bytes(n) {
    data.reset(static_cast<uint8_t*>(std::aligned_alloc(64, (n + 63) / 64 * 64)));
    DSV3_CHECK(data != nullptr, "[bench] out of memory allocating ", n, " bytes");
  }
  template <typename T>
  T* as() { return reinterpret_cast<T*>(data.get()); }
};

struct BandwidthResult {
  double best_gbs = 0;    // the peak: the fastest pass
  double median_gbs = 0;
  size_t bytes = 0;
  int threads = 0;
  int streams = 0;  // the access pattern that read fastest
  bool prefetch = false;
};

// Read bandwidth: every thread of parallel_for sums its contiguous part of a buffer far larger than the
// caches (first-touched by the same thread) with stream_sum (ops.h): its part read as several streams in
// lockstep, optionally with software prefetch — the access pattern of the GEMV kernels, which read
// several weight rows at once. The constructor tries 1, 2, 4 and 8 streams with and without prefetch and
// keeps the fastest; a peak is then the best of N passes, so that no kernel's streaming read should
// exceed it (bench_linear checks that none does). Reused across calls so benchmarks can interleave
// probe passes with kernel passes on a machine whose bandwidth drifts.
class ReadBandwidthProbe {
 public:
  explicit ReadBandwidthProbe(size_t bytes = size_t(1) << 30)
      : n_(int64_t(bytes / sizeof(float))), buffer_(size_t(n_) * sizeof(float)) {
    float* a = buffer_.as<float>();
    parallel_for(n_, 1 << 16, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) a[i] = float(i & 7) * 0.125f;
    });
    double best = 0;
    int best_streams = 4;
    bool best_prefetch = true;
    for (int streams : {1, 2, 4, 8})
      for (bool prefetch : {false, true}) {
        streams_ = streams;
        prefetch_ = prefetch;
        const double gbs = std::max(pass(), pass());
        if (gbs > best) best = gbs, best_streams = streams, best_prefetch = prefetch;
      }
    streams_ = best_streams;
    prefetch_ = best_prefetch;
  }
  size_t bytes() const { return size_t(n_) * sizeof(float); }
  int streams() const { return streams_; }
  bool prefetch() const { return prefetch_; }
  // One timed pass with the fastest access pattern; returns GB/s.
  double pass() {
    const float* a = buffer_.as<float>();
    const double t0 = now_seconds();
    parallel_for(n_, 1 << 16, [&](int64_t begin, int64_t end) {
      // The sum keeps the pass from being optimised away.
      sink_.store(stream_sum(a + begin, end - begin, streams_, prefetch_), std::memory_order_relaxed);
    });
    return double(bytes()) / (now_seconds() - t0) / 1e9;
  }

 private:
  int64_t n_;
  AlignedBuffer buffer_;
  int streams_ = 4;
  bool prefetch_ = true;
  std::atomic<float> sink_{0};
};

inline BandwidthResult measure_read_bandwidth(ReadBandwidthProbe& probe, int runs = 9) {
  probe.pass();  // warm-up
  std::vector<double> gbs;
  for (int i = 0; i < runs; ++i) gbs.push_back(probe.pass());
  BandwidthResult r;
  r.best_gbs = *std::max_element(gbs.begin(), gbs.end());
  r.median_gbs = median(gbs);
  r.bytes = probe.bytes();
  r.threads = num_threads();
  r.streams = probe.streams();
  r.prefetch = probe.prefetch();
  return r;
}

inline BandwidthResult measure_read_bandwidth(size_t bytes = size_t(1) << 30, int runs = 9) {
  ReadBandwidthProbe probe(bytes);
  return measure_read_bandwidth(probe, runs);
}

// oneDNN matmul [m, k] × [k, n] -> f32 [m, n] with src/weights in `dt` (f32 or bf16), weights
// transposed as the checkpoints store them. The best GFLOP/s of `runs` timed runs (a peak is the most
// the machine did); 0 when this oneDNN/CPU lacks the primitive.
inline double measure_onednn_matmul_gflops(int64_t m, int64_t n, int64_t k, dnnl::memory::data_type dt,
                                           int runs = 7) {
  using dnnl::memory;
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  const memory::desc a_md({m, k}, dt, memory::format_tag::ab);
  const memory::desc b_md({k, n}, dt, memory::format_tag::ba);
  const memory::desc c_md({m, n}, memory::data_type::f32, memory::format_tag::ab);
  dnnl::matmul::primitive_desc pd;
  try {
    pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_md, c_md), engine);
  } catch (const dnnl::error&) {
    return 0;
  }
  dnnl::matmul mm(pd);
  memory a(a_md, engine), b(b_md, engine), c(c_md, engine);
  // Small non-zero values (1/64 in either dtype), so the timing is of real arithmetic.
  const size_t esize = dt == memory::data_type::f32 ? 4 : 2;
  for (auto* mem : {&a, &b}) {
    uint8_t* p = static_cast<uint8_t*>(mem->get_data_handle());
    const size_t count = mem->get_desc().get_size() / esize;
    for (size_t i = 0; i < count; ++i) {
      if (esize == 4) {
        const float v = 0.015625f;
        std::memcpy(p + 4 * i, &v, 4);
      } else {
        const uint16_t v = 0x3c80;  // bf16 1/64
        std::memcpy(p + 2 * i, &v, 2);
      }
    }
  }
  auto run = [&] {
    mm.execute(stream, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
    stream.wait();
  };
  double best = 0;
  for (double s : time_runs(run, runs, 2)) best = std::max(best, 2.0 * double(m) * double(n) * double(k) / s / 1e9);
  return best;
}

}  // namespace dsv3::bench
