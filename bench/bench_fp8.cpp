// bench_fp8: FP8 conversions, fine-grained quantizers and the FP8 GEMM (src/ops/fp8.h). One JSON line
// per case on stdout:
//   onednn_peak   oneDNN f32 matmul GFLOP/s at 1024³ (the machine's measured GEMM peak)
//   convert       f32 <-> FP8 element conversion, GB/s of f32 data
//   quantize      quantize_fp8 per tiling on a [4096, 7168] activation-sized matrix, GB/s of f32 input
//   gemm          fp8_gemm (and fp8_gemm_by_runs, the training path) GFLOP/s (2·M·N·K per call) for the Fprop/Dgrad/Wgrad layouts at 1024³ and at
//                 DeepSeek-V3 projection shapes, and its fraction of the oneDNN f32 peak
//   gemm_emulated the scalar narrow-accumulator emulation (14 bits, no promotion), GFLOP/s
// Every GEMM is validated first: sampled rows against reference::fp8_gemm_rows (bit-exact for the
// k-ordered kernels, else fp8_gemm_error_bound), conversions and quantizers against their references.
// Usage: bench_fp8 [--quick] [--threads N]
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "core/dtype.h"
#include "core/parallel.h"
#include "ops/fp8.h"
#include "ops/gemm.h"

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

void bench_convert(int64_t n, int runs) {
  const std::vector<float> x = make_matrix(1, n, 1, 30.0f);
  std::vector<uint8_t> q(static_cast<size_t>(n)), q_ref(static_cast<size_t>(n));
  std::vector<float> y(static_cast<size_t>(n));
  for (Fp8Format f : {Fp8Format::e4m3, Fp8Format::e5m2}) {
    // Single-threaded element conversions: per-core throughput.
    f32_to_fp8(x.data(), n, f, q.data());
    reference::f32_to_fp8(x.data(), n, f, q_ref.data());
    DSV3_CHECK(q == q_ref, "[bench_fp8] f32_to_fp8 differs from the reference");
    const double enc = median(time_runs([&] { f32_to_fp8(x.data(), n, f, q.data()); }, runs));
    const double dec = median(time_runs([&] { fp8_to_f32(q.data(), n, f, y.data()); }, runs));
    const double enc_ref = median(time_runs([&] { reference::f32_to_fp8(x.data(), n, f, q_ref.data()); }, 3));
    std::printf(
        "{\"case\":\"convert\",\"format\":\"%s\",\"elements\":%lld,\"threads\":1,\"encode_gbs\":%.2f,"
        "\"decode_gbs\":%.2f,\"scalar_encode_gbs\":%.2f,\"validated\":true}\n",
        fp8_format_name(f), (long long)n, 4.0 * double(n) / enc / 1e9, 4.0 * double(n) / dec / 1e9,
        4.0 * double(n) / enc_ref / 1e9);
    std::fflush(stdout);
  }
}

void bench_quantize(int64_t rows, int64_t cols, int runs) {
  const std::vector<float> x = make_matrix(rows, cols, 2, 1.0f);
  for (Fp8Tiling t : {Fp8Tiling::tile_1x128, Fp8Tiling::tile_128x1, Fp8Tiling::block_128x128}) {
    const size_t ns = size_t(fp8_scale_rows(t, rows) * fp8_scale_cols(t, cols));
    std::vector<uint8_t> q(x.size()), q_ref(x.size());
    std::vector<float> s(ns), s_ref(ns);
    quantize_fp8(x.data(), rows, cols, Fp8Format::e4m3, t, false, q.data(), s.data());
    reference::quantize_fp8(x.data(), rows, cols, Fp8Format::e4m3, t, false, q_ref.data(), s_ref.data());
    DSV3_CHECK(q == q_ref && s == s_ref, "[bench_fp8] quantize_fp8 ", fp8_tiling_name(t),
               " differs from the reference");
    const double sec = median(
        time_runs([&] { quantize_fp8(x.data(), rows, cols, Fp8Format::e4m3, t, false, q.data(), s.data()); }, runs));
    std::printf(
        "{\"case\":\"quantize\",\"tiling\":\"%s\",\"rows\":%lld,\"cols\":%lld,\"threads\":%d,\"gbs\":%.2f,"
        "\"validated\":true}\n",
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

// Sampled rows of C against the reference; returns the worst |error| / bound (bit mismatches of a
// k-ordered kernel count as failures).
double validate(const Fp8Operand& a, const Fp8Operand& b, const std::vector<float>& c, const Fp8GemmOptions& o) {
  const int64_t m_len = a.outer(), n_len = b.outer(), k_len = a.inner();
  const bool k_ordered = std::string(fp8_gemm_kernel()) != "avx512_bf16";
  double worst = 0;
  for (int64_t m : {int64_t(0), m_len / 2 + 1, m_len - 1}) {
    if (m < 0 || m >= m_len) continue;
    std::vector<float> row(static_cast<size_t>(n_len));
    reference::fp8_gemm_rows(a, b, row.data(), o, m, m + 1);
    for (int64_t n = 0; n < n_len; ++n) {
      const float got = c[size_t(m * n_len + n)];
      if (k_ordered)
        DSV3_CHECK(f32_to_bits(got) == f32_to_bits(row[size_t(n)]), "[bench_fp8] fp8_gemm row ", m, " column ", n,
                   " differs from the reference: ", got, " vs ", row[size_t(n)]);
      double abs_dot = 0;
      for (int64_t k = 0; k < k_len; ++k)
        abs_dot += std::fabs(double(a.value(m, k)) * a.scale(m, k) * double(b.value(n, k)) * b.scale(n, k));
      worst = std::max(
          worst, std::fabs(double(got) - double(row[size_t(n)])) / (2 * fp8_gemm_error_bound(k_len, abs_dot) + 1e-30));
    }
  }
  return worst;
}

void bench_gemm(const Layout& l, int64_t m_len, int64_t n_len, int64_t k_len, double peak, int runs,
                const Fp8Accumulation& acc = {}, bool by_runs = false) {
  // Operand storage: direct [outer, k] or transposed [k, outer].
  const int64_t ar = l.a_transposed ? k_len : m_len, ac = l.a_transposed ? m_len : k_len;
  const int64_t br = l.b_transposed ? k_len : n_len, bc = l.b_transposed ? n_len : k_len;
  const Quantized qa = quantize(make_matrix(ar, ac, 3, 1.0f), ar, ac, l.a_tiling);
  const Quantized qb = quantize(make_matrix(br, bc, 4, 0.02f), br, bc, l.b_tiling);
  const Fp8Operand a{qa.m, l.a_transposed}, b{qb.m, l.b_transposed};
  Fp8GemmOptions o;
  o.accumulation = acc;
  std::vector<float> c(size_t(m_len * n_len));
  const auto multiply = [&] {
    if (by_runs)
      fp8_gemm_by_runs(a, b, c.data(), o);
    else
      fp8_gemm(a, b, c.data(), o);
  };
  multiply();
  const bool emulated = acc.accumulator_bits != 0;
  if (!emulated) {
    const double err = validate(a, b, c, o);
    DSV3_CHECK(err <= 1.0, "[bench_fp8] fp8_gemm ", l.name, " outside the error bound (", err, "x)");
  }
  const double sec = median(time_runs(multiply, runs));
  const double gflops = 2.0 * double(m_len) * double(n_len) * double(k_len) / sec / 1e9;
  if (emulated) {
    std::printf(
        "{\"case\":\"gemm_emulated\",\"layout\":\"%s\",\"m\":%lld,\"n\":%lld,\"k\":%lld,"
        "\"accumulator_bits\":%d,\"fused_terms\":%d,\"promote_interval\":%lld,\"threads\":%d,"
        "\"gflops\":%.3f}\n",
        l.name, (long long)m_len, (long long)n_len, (long long)k_len, acc.accumulator_bits, acc.fused_terms,
        (long long)acc.promote_interval, num_threads(), gflops);
  } else {
    std::printf(
        "{\"case\":\"gemm\",\"layout\":\"%s\",\"m\":%lld,\"n\":%lld,\"k\":%lld,\"kernel\":\"%s\","
        "\"threads\":%d,\"median_s\":%.4f,\"gflops\":%.1f,\"fraction_of_onednn_f32\":%.3f,"
        "\"validated\":%s}\n",
        l.name, (long long)m_len, (long long)n_len, (long long)k_len,
        by_runs ? (has_native_bf16_gemm() ? "by_runs_bf16_matmul" : "by_runs_fallback") : fp8_gemm_kernel(),
        num_threads(), sec, gflops,
        peak > 0 ? gflops / peak : 0.0, json_bool(true));
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
    const double peak = measure_onednn_matmul_gflops(1024, 1024, 1024, dnnl::memory::data_type::f32, runs);
    std::printf(
        "{\"case\":\"onednn_peak\",\"dtype\":\"f32\",\"m\":1024,\"n\":1024,\"k\":1024,\"threads\":%d,"
        "\"gflops\":%.1f}\n",
        num_threads(), peak);
    std::fflush(stdout);
    const int saved = num_threads();
    set_num_threads(1);
    bench_convert(quick ? (1 << 22) : (1 << 24), runs);
    set_num_threads(saved);
    bench_quantize(quick ? 1024 : 4096, 7168, runs);
    for (const Layout& l : {kFprop, kDgrad, kWgrad}) bench_gemm(l, 1024, 1024, 1024, peak, runs);
    // DeepSeek-V3 shapes: an expert's up/gate projection (7168 -> 2048) and its down projection for a
    // batch of tokens, and a decode-sized batch (16 tokens) through the same weight.
    bench_gemm(kFprop, quick ? 1024 : 4096, 2048, 7168, peak, quick ? 2 : 5);
    if (!quick) {
      bench_gemm(kFprop, 4096, 7168, 2048, peak, 5);
      bench_gemm(kDgrad, 4096, 7168, 2048, peak, 5);
      bench_gemm(kWgrad, 2048, 7168, 4096, peak, 5);
    }
    bench_gemm(kFprop, 16, 2048, 7168, peak, runs);
    // The training path (fp8_gemm_by_runs: one bf16 matmul per 128-run of k).
    for (const Layout& l : {kFprop, kDgrad, kWgrad}) bench_gemm(l, 1024, 1024, 1024, peak, runs, {}, true);
    bench_gemm(kFprop, quick ? 1024 : 4096, 2048, 7168, peak, quick ? 2 : 5, {}, true);
    Fp8Accumulation narrow;
    narrow.promote_interval = 0;
    narrow.accumulator_bits = 14;
    bench_gemm(kFprop, 64, 64, 4096, peak, 3, narrow);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
