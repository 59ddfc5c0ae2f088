// bench_fp8: FP8 conversions, fine-grained quantizers and the FP8 GEMM (src/ops/fp8.h). One JSON line
// per case on stdout, validation first:
//   validate      before any figure, every case timed below: conversions and quantizers bit for bit
//                 against their references; each GEMM's sampled rows against reference::fp8_gemm_rows —
//                 bit for bit for the kernels that sum in k order (decided by the kernel that runs), within
//                 fp8_gemm_error_bound for all; a failure stops the run
//   onednn_peak   oneDNN f32 and bf16 matmul GFLOP/s at 2048³ (best of runs)
//   convert       f32 <-> FP8 element conversion, GB/s of f32 data
//   quantize      quantize_fp8 per tiling on an activation-sized matrix, GB/s of f32 input
//   gemm          GFLOP/s (2·M·N·K per call) of each fp8_gemm kernel this build holds (ops/kernels.h) on
//                 the Fprop/Dgrad/Wgrad layouts at 1024³, of the default kernel at DeepSeek-V3 projection
//                 shapes, and of fp8_gemm_by_runs (the training path) on each bf16_matmul implementation;
//                 fraction = GFLOP/s over the peak of the arithmetic the kernel uses (the bf16 matmul's for
//                 avx512_bf16 and by-runs on oneDNN's bf16 matmul, the f32 matmul's for the f32-FMA
//                 kernels), the larger of its 2048³ peak and the case's own shape
//   gemm_emulated the scalar narrow-accumulator emulation (14 bits, no promotion), GFLOP/s
// Usage: bench_fp8 [--quick] [--threads N]
#include <algorithm>
#include <cmath>
#include <memory>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "core/dtype.h"
#include "core/parallel.h"
#include "ops/fp8.h"
#include "ops/gemm.h"
#include "ops/kernels.h"

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
// Roughly normal (sum of four uniforms), deterministic in (seed, i).
float noise(uint64_t seed, uint64_t i) {
  float s = 0;
  for (uint64_t j = 0; j < 4; ++j) s += float(mix((seed * 0x9e3779b97f4a7c15ULL + i) * 4 + j) >> 40) / float(1 << 24);
  return (s - 2.0f) * 1.7f;
}

std::vector<float> make_matrix(int64_t rows, int64_t cols, uint64_t seed, float scale) {
  std::vector<float> x(size_t(rows * cols));
  parallel_for(rows * cols, 1 << 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) x[size_t(i)] = scale * noise(seed, uint64_t(i));
  });
  return x;
}

struct Quantized {
  std::vector<uint8_t> q;
  std::vector<float> s;
  Fp8Matrix m;
};

Quantized quantize(const std::vector<float>& x, int64_t rows, int64_t cols, Fp8Tiling t) {
  Quantized r;
  r.q.resize(size_t(rows * cols));
  r.s.resize(size_t(fp8_scale_rows(t, rows) * fp8_scale_cols(t, cols)));
  quantize_fp8(x.data(), rows, cols, Fp8Format::e4m3, t, false, r.q.data(), r.s.data());
  r.m = Fp8Matrix{r.q.data(), r.s.data(), rows, cols, Fp8Format::e4m3, t};
  return r;
}

const char* json_bool(bool b) { return b ? "true" : "false"; }

void print_validation(const char* what, const std::string& detail, bool ok) {
  std::printf("{\"case\":\"validate\",\"what\":\"%s\",%s,\"ok\":%s}\n", what, detail.c_str(), json_bool(ok));
  std::fflush(stdout);
  DSV3_CHECK(ok, "[bench_fp8] ", what, " (", detail, ") does not match its reference: nothing is timed");
}

void validate_convert(int64_t n) {
  const std::vector<float> x = make_matrix(1, n, 1, 30.0f);
  std::vector<uint8_t> q(static_cast<size_t>(n)), q_ref(static_cast<size_t>(n));
  std::vector<float> y(static_cast<size_t>(n)), y_ref(static_cast<size_t>(n));
  for (Fp8Format f : {Fp8Format::e4m3, Fp8Format::e5m2}) {
    f32_to_fp8(x.data(), n, f, q.data());
    reference::f32_to_fp8(x.data(), n, f, q_ref.data());
    fp8_to_f32(q.data(), n, f, y.data());
    reference::fp8_to_f32(q.data(), n, f, y_ref.data());
    const bool ok = q == q_ref && std::memcmp(y.data(), y_ref.data(), y.size() * sizeof(float)) == 0;
    print_validation("convert", std::string("\"format\":\"") + fp8_format_name(f) + "\",\"kernel\":\"" +
                                    active_kernel(KernelFamily::fp8_convert) + "\",\"bit_exact\":" + json_bool(ok),
                     ok);
  }
}

void bench_convert(int64_t n, int runs) {
  const std::vector<float> x = make_matrix(1, n, 1, 30.0f);
  std::vector<uint8_t> q(static_cast<size_t>(n)), q_ref(static_cast<size_t>(n));
  std::vector<float> y(static_cast<size_t>(n));
  for (Fp8Format f : {Fp8Format::e4m3, Fp8Format::e5m2}) {
    // Single-threaded element conversions: per-core throughput.
    const double enc = median(time_runs([&] { f32_to_fp8(x.data(), n, f, q.data()); }, runs));
    const double dec = median(time_runs([&] { fp8_to_f32(q.data(), n, f, y.data()); }, runs));
    const double enc_ref = median(time_runs([&] { reference::f32_to_fp8(x.data(), n, f, q_ref.data()); }, 3));
    std::printf(
        "{\"case\":\"convert\",\"format\":\"%s\",\"kernel\":\"%s\",\"elements\":%lld,\"threads\":1,"
        "\"encode_gbs\":%.2f,\"decode_gbs\":%.2f,\"scalar_encode_gbs\":%.2f}\n",
        fp8_format_name(f), active_kernel(KernelFamily::fp8_convert).c_str(), (long long)n,
        4.0 * double(n) / enc / 1e9, 4.0 * double(n) / dec / 1e9, 4.0 * double(n) / enc_ref / 1e9);
    std::fflush(stdout);
  }
}

constexpr Fp8Tiling kTilings[] = {Fp8Tiling::tile_1x128, Fp8Tiling::tile_128x1, Fp8Tiling::block_128x128};

void validate_quantize(int64_t rows, int64_t cols) {
  const std::vector<float> x = make_matrix(rows, cols, 2, 1.0f);
  for (Fp8Tiling t : kTilings) {
    const size_t ns = size_t(fp8_scale_rows(t, rows) * fp8_scale_cols(t, cols));
    std::vector<uint8_t> q(x.size()), q_ref(x.size());
    std::vector<float> s(ns), s_ref(ns);
    quantize_fp8(x.data(), rows, cols, Fp8Format::e4m3, t, false, q.data(), s.data());
    reference::quantize_fp8(x.data(), rows, cols, Fp8Format::e4m3, t, false, q_ref.data(), s_ref.data());
    const bool ok = q == q_ref && s == s_ref;
    print_validation("quantize", std::string("\"tiling\":\"") + fp8_tiling_name(t) + "\",\"bit_exact\":" +
                                     json_bool(ok), ok);
  }
}

void bench_quantize(int64_t rows, int64_t cols, int runs) {
  const std::vector<float> x = make_matrix(rows, cols, 2, 1.0f);
  for (Fp8Tiling t : kTilings) {
    const size_t ns = size_t(fp8_scale_rows(t, rows) * fp8_scale_cols(t, cols));
    std::vector<uint8_t> q(x.size());
    std::vector<float> s(ns);
    const double sec = median(
        time_runs([&] { quantize_fp8(x.data(), rows, cols, Fp8Format::e4m3, t, false, q.data(), s.data()); }, runs));
    std::printf(
        "{\"case\":\"quantize\",\"tiling\":\"%s\",\"rows\":%lld,\"cols\":%lld,\"threads\":%d,\"gbs\":%.2f}\n",
        fp8_tiling_name(t), (long long)rows, (long long)cols, num_threads(), 4.0 * double(x.size()) / sec / 1e9);
    std::fflush(stdout);
  }
}

struct Layout {
  const char* name;
  Fp8Tiling a_tiling;
  bool a_transposed;
  Fp8Tiling b_tiling;
  bool b_transposed;
};
// Fprop y = x·Wᵀ, Dgrad dx = dy·W, Wgrad dW = dyᵀ·x (fp8.h); M, N, K are the GEMM's own dimensions.
constexpr Layout kFprop{"fprop", Fp8Tiling::tile_1x128, false, Fp8Tiling::block_128x128, false};
constexpr Layout kDgrad{"dgrad", Fp8Tiling::tile_1x128, false, Fp8Tiling::block_128x128, true};
constexpr Layout kWgrad{"wgrad", Fp8Tiling::tile_128x1, true, Fp8Tiling::tile_128x1, true};

// Sampled rows of C against the reference; returns the worst |error| / bound and counts bit mismatches
// (which fail a kernel that sums in k order: every one but avx512_bf16 and the bf16 matmul's runs).
double validate(const Fp8Operand& a, const Fp8Operand& b, const std::vector<float>& c, const Fp8GemmOptions& o,
                int64_t* mismatches) {
  const int64_t m_len = a.outer(), n_len = b.outer(), k_len = a.inner();
  double worst = 0;
  *mismatches = 0;
  for (int64_t m : {int64_t(0), m_len / 2 + 1, m_len - 1}) {
    if (m < 0 || m >= m_len) continue;
    std::vector<float> row(static_cast<size_t>(n_len));
    reference::fp8_gemm_rows(a, b, row.data(), o, m, m + 1);
    for (int64_t n = 0; n < n_len; ++n) {
      const float got = c[size_t(m * n_len + n)];
      *mismatches += f32_to_bits(got) != f32_to_bits(row[size_t(n)]);
      double abs_dot = 0;
      for (int64_t k = 0; k < k_len; ++k)
        abs_dot += std::fabs(double(a.value(m, k)) * a.scale(m, k) * double(b.value(n, k)) * b.scale(n, k));
      worst = std::max(
          worst, std::fabs(double(got) - double(row[size_t(n)])) / (2 * fp8_gemm_error_bound(k_len, abs_dot) + 1e-30));
    }
  }
  return worst;
}

// One GEMM case: its operands, the kernel it runs with, and how it is validated and timed.
struct GemmCase {
  Layout layout;
  int64_t m, n, k;
  Fp8Accumulation accumulation;
  bool by_runs = false;
  std::string fp8_kernel, bf16_matmul;  // the implementations selected for this case
  int runs = 3;
  Quantized qa, qb;
  std::vector<float> c;

  Fp8Operand a() const { return {qa.m, layout.a_transposed}; }
  Fp8Operand b() const { return {qb.m, layout.b_transposed}; }
  bool emulated() const { return accumulation.accumulator_bits != 0; }
  // The kernel's name, and whether it sums in k order (bit-exact with the reference). fp8_gemm_by_runs
  // without oneDNN's bf16 matmul computes fp8_gemm with the selected fp8_gemm kernel.
  std::string kernel() const {
    return by_runs ? "by_runs_" + bf16_matmul + (bf16_matmul == "onednn_bf16" ? "" : "_" + fp8_kernel) : fp8_kernel;
  }
  bool uses_bf16_arithmetic() const {
    return (by_runs && bf16_matmul == "onednn_bf16") || (!(by_runs && bf16_matmul == "onednn_bf16") && fp8_kernel == "avx512_bf16");
  }
  bool k_ordered() const { return !uses_bf16_arithmetic(); }
  void multiply() {
    ScopedKernel fk(KernelFamily::fp8_gemm, fp8_kernel), bk(KernelFamily::bf16_matmul, bf16_matmul);
    Fp8GemmOptions o;
    o.accumulation = accumulation;
    if (by_runs)
      fp8_gemm_by_runs(a(), b(), c.data(), o);
    else
      fp8_gemm(a(), b(), c.data(), o);
  }
};

std::unique_ptr<GemmCase> make_case(const Layout& l, int64_t m_len, int64_t n_len, int64_t k_len, int runs,
                                    const std::string& fp8_kernel, const std::string& bf16_matmul, bool by_runs = false,
                                    const Fp8Accumulation& acc = {}) {
  auto g = std::make_unique<GemmCase>();
  g->layout = l;
  g->m = m_len, g->n = n_len, g->k = k_len;
  g->accumulation = acc;
  g->by_runs = by_runs;
  g->fp8_kernel = fp8_kernel;
  g->bf16_matmul = bf16_matmul;
  g->runs = runs;
  // Operand storage: direct [outer, k] or transposed [k, outer].
  const int64_t ar = l.a_transposed ? k_len : m_len, ac = l.a_transposed ? m_len : k_len;
  const int64_t br = l.b_transposed ? k_len : n_len, bc = l.b_transposed ? n_len : k_len;
  g->qa = quantize(make_matrix(ar, ac, 3, 1.0f), ar, ac, l.a_tiling);
  g->qb = quantize(make_matrix(br, bc, 4, 0.02f), br, bc, l.b_tiling);
  g->c.resize(size_t(m_len * n_len));
  return g;
}

void validate_case(GemmCase& g) {
  g.multiply();
  if (g.emulated()) return;  // the emulation is the reference itself
  Fp8GemmOptions o;
  o.accumulation = g.accumulation;
  int64_t mismatches = 0;
  const double err = validate(g.a(), g.b(), g.c, o, &mismatches);
  const bool ok = err <= 1.0 && (!g.k_ordered() || mismatches == 0);
  print_validation("gemm",
                   cat("\"layout\":\"", g.layout.name, "\",\"m\":", g.m, ",\"n\":", g.n, ",\"k\":", g.k,
                       ",\"kernel\":\"", g.kernel(), "\",\"err_over_bound\":", err, ",\"bit_checked\":",
                       json_bool(g.k_ordered()), ",\"bit_mismatches\":", mismatches),
                   ok);
}

// Peaks of the two arithmetics, best of 2048³ and the shapes asked for.
struct Peaks {
  double f32 = 0, bf16 = 0;
  double of(const GemmCase& g, int runs) const {
    const auto type = g.uses_bf16_arithmetic() ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32;
    return std::max(g.uses_bf16_arithmetic() ? bf16 : f32, measure_onednn_matmul_gflops(g.m, g.n, g.k, type, runs));
  }
};

void time_case(GemmCase& g, const Peaks& peaks) {
  const double sec = median(time_runs([&] { g.multiply(); }, g.runs));
  const double gflops = 2.0 * double(g.m) * double(g.n) * double(g.k) / sec / 1e9;
  if (g.emulated()) {
    std::printf(
        "{\"case\":\"gemm_emulated\",\"layout\":\"%s\",\"m\":%lld,\"n\":%lld,\"k\":%lld,"
        "\"accumulator_bits\":%d,\"fused_terms\":%d,\"promote_interval\":%lld,\"threads\":%d,"
        "\"gflops\":%.3f}\n",
        g.layout.name, (long long)g.m, (long long)g.n, (long long)g.k, g.accumulation.accumulator_bits,
        g.accumulation.fused_terms, (long long)g.accumulation.promote_interval, num_threads(), gflops);
  } else {
    const double peak = peaks.of(g, 3);
    std::printf(
        "{\"case\":\"gemm\",\"layout\":\"%s\",\"m\":%lld,\"n\":%lld,\"k\":%lld,\"kernel\":\"%s\",\"threads\":%d,"
        "\"median_s\":%.4f,\"gflops\":%.1f,\"peak_kind\":\"%s\",\"peak_gflops\":%.1f,\"fraction_of_peak\":%.3f}\n",
        g.layout.name, (long long)g.m, (long long)g.n, (long long)g.k, g.kernel().c_str(), num_threads(), sec, gflops,
        g.uses_bf16_arithmetic() ? "onednn_bf16" : "onednn_f32", peak, peak > 0 ? gflops / peak : 0.0);
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      set_num_threads(std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: bench_fp8 [--quick] [--threads N]\n");
      return 2;
    }
  }
  try {
    const int runs = quick ? 3 : 7;
    const int64_t convert_n = quick ? (1 << 22) : (1 << 24), quantize_rows = quick ? 1024 : 4096;
    const std::string default_fp8 = active_kernel(KernelFamily::fp8_gemm);
    const std::string default_bf16 = active_kernel(KernelFamily::bf16_matmul);

    // The cases: every fast fp8_gemm kernel on the three layouts at 1024³; the default kernel at
    // DeepSeek-V3 shapes — an expert's up/gate projection (7168 -> 2048) and its down projection for a
    // batch of tokens, and a decode-sized batch (16 tokens) through the same weight; fp8_gemm_by_runs on
    // each bf16_matmul implementation; the narrow-accumulator emulation.
    std::vector<std::unique_ptr<GemmCase>> cases;
    for (const std::string& kernel : kernel_variants(KernelFamily::fp8_gemm)) {
      if (kernel == "scalar") continue;  // the reference itself, row-parallel: not a kernel to time
      for (const Layout& l : {kFprop, kDgrad, kWgrad})
        cases.push_back(make_case(l, 1024, 1024, 1024, runs, kernel, default_bf16));
    }
    cases.push_back(make_case(kFprop, quick ? 1024 : 4096, 2048, 7168, quick ? 2 : 5, default_fp8, default_bf16));
    if (!quick) {
      cases.push_back(make_case(kFprop, 4096, 7168, 2048, 5, default_fp8, default_bf16));
      cases.push_back(make_case(kDgrad, 4096, 7168, 2048, 5, default_fp8, default_bf16));
      cases.push_back(make_case(kWgrad, 2048, 7168, 4096, 5, default_fp8, default_bf16));
    }
    cases.push_back(make_case(kFprop, 16, 2048, 7168, runs, default_fp8, default_bf16));
    for (const std::string& matmul : kernel_variants(KernelFamily::bf16_matmul)) {
      for (const Layout& l : {kFprop, kDgrad, kWgrad})
        cases.push_back(make_case(l, 1024, 1024, 1024, runs, default_fp8, matmul, true));
      cases.push_back(make_case(kFprop, quick ? 1024 : 4096, 2048, 7168, quick ? 2 : 5, default_fp8, matmul, true));
    }
    Fp8Accumulation narrow;
    narrow.promote_interval = 0;
    narrow.accumulator_bits = 14;
    cases.push_back(make_case(kFprop, 64, 64, 4096, 3, default_fp8, default_bf16, false, narrow));

    // Validation first: nothing is timed unless everything matches its reference.
    validate_convert(convert_n);
    validate_quantize(quantize_rows, 7168);
    for (auto& g : cases) validate_case(*g);

    Peaks peaks;
    peaks.f32 = measure_onednn_matmul_gflops(2048, 2048, 2048, dnnl::memory::data_type::f32, runs);
    peaks.bf16 = measure_onednn_matmul_gflops(2048, 2048, 2048, dnnl::memory::data_type::bf16, runs);
    std::printf("{\"case\":\"onednn_peak\",\"m\":2048,\"n\":2048,\"k\":2048,\"threads\":%d,\"f32_gflops\":%.1f,"
                "\"bf16_gflops\":%.1f}\n",
                num_threads(), peaks.f32, peaks.bf16);
    std::fflush(stdout);
    const int saved = num_threads();
    set_num_threads(1);
    bench_convert(convert_n, runs);
    set_num_threads(saved);
    bench_quantize(quantize_rows, 7168, runs);
    for (auto& g : cases) time_case(*g, peaks);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
