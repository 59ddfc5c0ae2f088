// bench_linear: linear() against the machine's peaks. One JSON line per case on stdout:
//   validate                  first, before any figure: every (dtype, precision, path, tokens) case that is
//                             timed below, its sampled outputs against reference::linear, as the worst
//                             error over the f32-accumulation bound (must be <= 1, else the run stops)
//   read_bandwidth            the read probe (bench_common.h): best and median GB/s, its access pattern
//   onednn_peak               oneDNN matmul GFLOP/s, f32 and bf16 (0 where the CPU/oneDNN lacks bf16)
//   gemv                      decode: GB/s over a weight set far larger than cache; fraction = median
//                             kernel GB/s / the best probe pass (probe passes interleaved with the kernel's);
//                             kernel_beat_probe says whether any kernel pass read faster than every probe
//   gemm                      prefill (512 tokens): GFLOP/s over the peak of the arithmetic linear() ran —
//                             oneDNN's bf16 matmul for BF16 weights with bf16 activations on a CPU that has
//                             one, the f32 matmul otherwise — measured at 2048³ and at the case's own shape
//   crossover                 GEMV vs GEMM seconds for 1..64 tokens (how gemm_min_tokens was chosen)
// The validate and gemv cases run once per SIMD implementation of the gemv family the CPU has
// (avx512_bf16, avx512, avx2), named in "kernel"; the crossover uses the default one.
// Usage: bench_linear [--quick] [--gemv-only] [--threads N]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "core/dtype.h"
#include "core/parallel.h"
#include "ops/gemm.h"
#include "ops/kernels.h"
#include "ops/linear.h"

using namespace dsv3;
using namespace dsv3::bench;

namespace {

uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  return x ^ (x >> 33);
}
// Uniform in [-1, 1), deterministic in (seed, i).
float uniform(uint64_t seed, uint64_t i) { return float(mix(seed * 0x9e3779b97f4a7c15ULL + i) >> 40) / float(1 << 23) - 1.0f; }

// A weight with its storage.
struct OwnedWeight {
  LinearWeight w;
  std::vector<uint8_t> data;
  std::vector<float> scales;
};

OwnedWeight make_weight(DType dtype, int64_t rows, int64_t cols, uint64_t seed) {
  OwnedWeight o;
  o.w.dtype = dtype;
  o.w.rows = rows;
  o.w.cols = cols;
  const size_t n = size_t(rows * cols);
  o.data.resize(n * dtype_size(dtype));
  parallel_for(int64_t(n), 1 << 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float v = uniform(seed, uint64_t(i));
      switch (dtype) {
        case DType::F32: reinterpret_cast<float*>(o.data.data())[i] = 0.05f * v; break;
        case DType::BF16: reinterpret_cast<uint16_t*>(o.data.data())[i] = f32_to_bf16(0.05f * v); break;
        case DType::F16: reinterpret_cast<uint16_t*>(o.data.data())[i] = f32_to_f16(0.05f * v); break;
        default: o.data[size_t(i)] = f32_to_e4m3(400.0f * v); break;
      }
    }
  });
  o.w.data = o.data.data();
  if (dtype == DType::F8_E4M3) {
    o.scales.resize(size_t((rows + 127) / 128 * o.w.scale_cols()));
    for (size_t i = 0; i < o.scales.size(); ++i) o.scales[i] = 1e-4f * (1.5f + uniform(seed + 1, i));
    o.w.scale_inv = o.scales.data();
  }
  return o;
}

std::vector<float> make_activations(int64_t n_tokens, int64_t cols, uint64_t seed) {
  std::vector<float> x(size_t(n_tokens * cols));
  for (size_t i = 0; i < x.size(); ++i) x[i] = uniform(seed, i);
  return x;
}

const char* precision_name(Precision p) { return p == Precision::f32 ? "f32" : "bf16"; }

// Compares y (from linear) with the double-precision reference at `samples` (token, row) pairs against
// the f32 accumulation bound (cols + 8) · 2^-24 · Σ|w·x|. Returns the worst ratio error / bound.
double validate(const LinearWeight& w, const float* x, const float* y, int64_t n_tokens, Precision p,
                int samples = 48) {
  double worst = 0;
  for (int s = 0; s < samples; ++s) {
    const int64_t t = int64_t(mix(uint64_t(s) * 7 + 1) % uint64_t(n_tokens));
    const int64_t r = int64_t(mix(uint64_t(s) * 13 + 5) % uint64_t(w.rows));
    double ref = 0, mag = 0;
    for (int64_t c = 0; c < w.cols; ++c) {
      float a = x[t * w.cols + c];
      if (p == Precision::bf16) a = bf16_to_f32(f32_to_bf16(a));
      const double term = double(a) * double(w.at(r, c));
      ref += term;
      mag += std::fabs(term);
    }
    const double bound = double(w.cols + 8) * 0x1p-24 * mag + 1e-30;
    worst = std::max(worst, std::fabs(double(y[t * w.rows + r]) - ref) / bound);
  }
  return worst;
}

struct WeightSet {
  std::vector<OwnedWeight> weights;
  size_t bytes = 0;
  int64_t max_rows = 0, max_cols = 0;
};

// DeepSeek-V3-like projections at ~1.5 GB-model scale (hidden 2048), repeated until the set holds at
// least `min_bytes`, so a pass over it cannot be served from the 32 MB L3.
WeightSet make_set(DType dtype, size_t min_bytes) {
  static const int64_t shapes[][2] = {{1536, 2048}, {2048, 1536}, {576, 2048}, {4096, 512}, {2048, 2048},
                                      {1408, 2048}, {2048, 1408}, {8192, 2048}, {2048, 8192}, {512, 7168}};
  WeightSet set;
  uint64_t seed = 100;
  while (set.bytes < min_bytes) {
    for (const auto& s : shapes) {
      set.weights.push_back(make_weight(dtype, s[0], s[1], seed++));
      set.bytes += set.weights.back().w.weight_bytes();
      set.max_rows = std::max(set.max_rows, s[0]);
      set.max_cols = std::max(set.max_cols, s[1]);
    }
  }
  return set;
}

// Runs linear() once on `path` and validates sampled outputs against the reference; prints the validation
// line and stops the benchmark (throws) when an output is outside the bound.
double validate_case(const LinearWeight& w, int64_t n_tokens, Precision p, LinearPath path) {
  const std::vector<float> x = make_activations(n_tokens, w.cols, 7);
  std::vector<float> y(size_t(n_tokens * w.rows));
  linear(w, x.data(), y.data(), n_tokens, p, path);
  const double err = validate(w, x.data(), y.data(), n_tokens, p);
  const bool ok = err <= 1.0;
  std::printf("{\"case\":\"validate\",\"dtype\":\"%s\",\"precision\":\"%s\",\"path\":\"%s\",\"n_tokens\":%lld,"
              "\"rows\":%lld,\"cols\":%lld,\"gemv_kernel\":\"%s\",\"bf16_matmul\":\"%s\",\"err_over_bound\":%.3f,"
              "\"ok\":%s}\n",
              std::string(dtype_name(w.dtype)).c_str(), precision_name(p), path == LinearPath::gemv ? "gemv" : "gemm",
              (long long)n_tokens, (long long)w.rows, (long long)w.cols, active_kernel(KernelFamily::gemv).c_str(),
              active_kernel(KernelFamily::bf16_matmul).c_str(), err, ok ? "true" : "false");
  std::fflush(stdout);
  DSV3_CHECK(ok, "[bench_linear] ", dtype_name(w.dtype), " ", precision_name(p), " output outside the error bound (",
             err, "x): nothing is timed");
  return err;
}

// Decode over the whole set, `runs` times, each run preceded by a bandwidth-probe pass: the fraction is
// the median kernel GB/s over the best probe pass.
void bench_gemv(const WeightSet& set, Precision p, int64_t n_tokens, ReadBandwidthProbe& probe, int runs) {
  const std::vector<float> x = make_activations(n_tokens, set.max_cols, 7);
  std::vector<float> y(size_t(n_tokens * set.max_rows));
  const LinearWeight& w0 = set.weights.front().w;
  auto pass = [&] {
    for (const OwnedWeight& o : set.weights) linear(o.w, x.data(), y.data(), n_tokens, p, LinearPath::gemv);
  };
  pass();
  std::vector<double> kernel_gbs, probe_gbs;
  for (int i = 0; i < runs; ++i) {
    probe_gbs.push_back(probe.pass());
    const double t0 = now_seconds();
    pass();
    kernel_gbs.push_back(double(set.bytes) / (now_seconds() - t0) / 1e9);
  }
  probe_gbs.push_back(probe.pass());
  const double peak = *std::max_element(probe_gbs.begin(), probe_gbs.end());
  const double kernel_best = *std::max_element(kernel_gbs.begin(), kernel_gbs.end());
  std::printf(
      "{\"case\":\"gemv\",\"dtype\":\"%s\",\"precision\":\"%s\",\"n_tokens\":%lld,\"kernel\":\"%s\","
      "\"matrices\":%zu,\"weight_mb\":%.1f,\"gb_per_s\":%.2f,\"best_gb_per_s\":%.2f,\"gflops\":%.1f,"
      "\"read_peak_gb_per_s\":%.2f,\"fraction_of_read_peak\":%.3f,\"kernel_beat_probe\":%s}\n",
      std::string(dtype_name(w0.dtype)).c_str(), precision_name(p), (long long)n_tokens,
      active_kernel(KernelFamily::gemv).c_str(), set.weights.size(), double(set.bytes) / 1e6, median(kernel_gbs),
      kernel_best, 2.0 * double(n_tokens) * median(kernel_gbs) / double(dtype_size(w0.dtype)), peak,
      median(kernel_gbs) / peak, kernel_best > peak ? "true" : "false");
  std::fflush(stdout);
}

double time_linear(const LinearWeight& w, const float* x, float* y, int64_t n_tokens, Precision p,
                   LinearPath path, int runs) {
  return median(time_runs([&] { linear(w, x, y, n_tokens, p, path); }, runs, 1));
}

// Whether linear() multiplies these weights on oneDNN's bf16 matmul (see linear.cpp), i.e. which peak
// its GEMM is measured against.
bool runs_on_bf16_matmul(DType dtype, Precision p) {
  return dtype == DType::BF16 && p == Precision::bf16 && has_native_bf16_gemm();
}

void bench_gemm(DType dtype, int64_t rows, int64_t cols, Precision p, double peak_2048, int runs) {
  const int64_t n_tokens = 512;
  const OwnedWeight o = make_weight(dtype, rows, cols, 3);
  const std::vector<float> x = make_activations(n_tokens, cols, 11);
  std::vector<float> y(size_t(n_tokens * rows));
  const bool bf16 = runs_on_bf16_matmul(dtype, p);
  const double seconds = time_linear(o.w, x.data(), y.data(), n_tokens, p, LinearPath::gemm, runs);
  const double gflops = 2.0 * double(n_tokens) * double(rows) * double(cols) / seconds / 1e9;
  // The peak of the same arithmetic: the larger of 2048³ and the case's own shape.
  const double peak = std::max(peak_2048, measure_onednn_matmul_gflops(
                                              n_tokens, rows, cols,
                                              bf16 ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32, runs));
  std::printf(
      "{\"case\":\"gemm\",\"dtype\":\"%s\",\"precision\":\"%s\",\"n_tokens\":%lld,\"rows\":%lld,\"cols\":%lld,"
      "\"seconds\":%.5f,\"gflops\":%.1f,\"peak_kind\":\"%s\",\"peak_gflops\":%.1f,\"fraction_of_peak\":%.3f}\n",
      std::string(dtype_name(dtype)).c_str(), precision_name(p), (long long)n_tokens, (long long)rows,
      (long long)cols, seconds, gflops, bf16 ? "onednn_bf16" : "onednn_f32", peak, gflops / peak);
  std::fflush(stdout);
}

void bench_crossover(DType dtype, int64_t rows, int64_t cols, int runs) {
  const OwnedWeight o = make_weight(dtype, rows, cols, 5);
  for (int64_t n : {1, 2, 4, 8, 12, 16, 24, 32, 48, 64}) {
    const std::vector<float> x = make_activations(n, cols, 13);
    std::vector<float> y(size_t(n * rows));
    const double gemv = time_linear(o.w, x.data(), y.data(), n, Precision::bf16, LinearPath::gemv, runs);
    const double gemm = time_linear(o.w, x.data(), y.data(), n, Precision::bf16, LinearPath::gemm, runs);
    std::printf(
        "{\"case\":\"crossover\",\"dtype\":\"%s\",\"rows\":%lld,\"cols\":%lld,\"n_tokens\":%lld,"
        "\"gemv_seconds\":%.6f,\"gemm_seconds\":%.6f,\"automatic_uses\":\"%s\"}\n",
        std::string(dtype_name(dtype)).c_str(), (long long)rows, (long long)cols, (long long)n, gemv, gemm,
        n >= gemm_min_tokens(o.w) ? "gemm" : "gemv");
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, gemv_only = false;
  int threads = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
    else if (std::strcmp(argv[i], "--gemv-only") == 0) gemv_only = true;
    else if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: bench_linear [--quick] [--gemv-only] [--threads N]\n");
      return 2;
    }
  }
  set_num_threads(threads);
  try {
    const int runs = quick ? 5 : 9;
    const size_t set_bytes = quick ? (size_t(96) << 20) : (size_t(320) << 20);
    struct GemmCase {
      DType dtype;
      int64_t rows, cols;
      Precision p;
    };
    std::vector<GemmCase> gemm_cases;
    for (DType dtype : {DType::BF16, DType::F8_E4M3, DType::F32})
      for (Precision p : {Precision::bf16, Precision::f32}) {
        gemm_cases.push_back({dtype, 2048, 2048, p});
        if (!quick) gemm_cases.push_back({dtype, 1536, 7168, p});
      }

    std::vector<std::string> gemv_kernels;
    for (const std::string& k : kernel_variants(KernelFamily::gemv))
      if (k != "scalar") gemv_kernels.push_back(k);
    if (gemv_kernels.empty()) gemv_kernels.push_back("scalar");
    if (gemv_only) gemm_cases.clear();

    // Validation of every timed case, before any figure.
    for (const std::string& kernel : gemv_kernels) {
      ScopedKernel use(KernelFamily::gemv, kernel);
      for (DType dtype : {DType::BF16, DType::F8_E4M3}) {
        const OwnedWeight o = make_weight(dtype, 1536, 2048, 100);  // the first shape of make_set
        for (Precision p : {Precision::bf16, Precision::f32}) validate_case(o.w, 1, p, LinearPath::gemv);
        for (int64_t n : {2, 4, 8, 16}) validate_case(o.w, n, Precision::bf16, LinearPath::gemv);
      }
    }
    for (const GemmCase& g : gemm_cases) {
      const OwnedWeight o = make_weight(g.dtype, g.rows, g.cols, 3);
      validate_case(o.w, 512, g.p, LinearPath::gemm);
    }

    ReadBandwidthProbe probe(size_t(1) << 30);
    const BandwidthResult bw = measure_read_bandwidth(probe, runs);
    std::printf("{\"case\":\"read_bandwidth\",\"threads\":%d,\"buffer_mb\":%.0f,\"streams\":%d,\"prefetch\":%s,"
                "\"best_gb_per_s\":%.2f,\"median_gb_per_s\":%.2f}\n",
                bw.threads, double(bw.bytes) / 1e6, bw.streams, bw.prefetch ? "true" : "false", bw.best_gbs,
                bw.median_gbs);
    std::fflush(stdout);

    using dt = dnnl::memory::data_type;
    double peak_f32 = 0, peak_bf16 = 0;
    for (dt type : {dt::f32, dt::bf16}) {
      const double g = measure_onednn_matmul_gflops(2048, 2048, 2048, type, runs);
      (type == dt::f32 ? peak_f32 : peak_bf16) = g;
      std::printf("{\"case\":\"onednn_peak\",\"type\":\"%s\",\"m\":2048,\"n\":2048,\"k\":2048,\"gflops\":%.1f,"
                  "\"supported\":%s}\n",
                  type == dt::f32 ? "f32" : "bf16", g, g > 0 ? "true" : "false");
      std::fflush(stdout);
    }

    for (DType dtype : {DType::BF16, DType::F8_E4M3}) {
      const WeightSet set = make_set(dtype, set_bytes);
      for (const std::string& kernel : gemv_kernels) {
        ScopedKernel use(KernelFamily::gemv, kernel);
        for (Precision p : {Precision::bf16, Precision::f32}) bench_gemv(set, p, 1, probe, runs);
        for (int64_t n : {2, 4, 8, 16}) bench_gemv(set, Precision::bf16, n, probe, quick ? 3 : 5);
      }
    }
    if (gemv_only) return 0;
    for (const GemmCase& g : gemm_cases)
      bench_gemm(g.dtype, g.rows, g.cols, g.p, runs_on_bf16_matmul(g.dtype, g.p) ? peak_bf16 : peak_f32, runs);
    for (DType dtype : {DType::BF16, DType::F8_E4M3}) bench_crossover(dtype, 2048, 2048, runs);
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
