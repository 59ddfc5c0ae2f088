// Scalar definitions of src/ops/fp8.h: formats, scaling, the Fp8Matrix view, the quantizers for all
// three tilings (the 128×1 tiling exists only here and in the fast version), and the FP8 GEMM with
// every accumulation mode, including the emulated narrow tensor-core accumulator.
#include <algorithm>
#include <climits>
#include <cmath>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "ops/fp8.h"
#include "ops/quantize.h"

namespace dsv3 {

float fp8_max(Fp8Format format) { return format == Fp8Format::e4m3 ? kE4M3Max : kE5M2Max; }

const char* fp8_format_name(Fp8Format format) { return format == Fp8Format::e4m3 ? "e4m3" : "e5m2"; }

const char* fp8_tiling_name(Fp8Tiling tiling) {
  switch (tiling) {
    case Fp8Tiling::tile_1x128: return "1x128";
    case Fp8Tiling::tile_128x1: return "128x1";
    case Fp8Tiling::block_128x128: return "128x128";
  }
  return "?";
}

float fp8_scale(float amax, Fp8Format format, bool pow2_scales) {
  if (format == Fp8Format::e4m3) return fp8_scale_for_amax(amax, pow2_scales);
  const float s = std::max(amax, kFp8AmaxFloor) / kE5M2Max;
  if (!pow2_scales) return s;
  int e;
  const float frac = std::frexp(s, &e);
  return frac == 0.5f ? s : std::ldexp(1.0f, e);
}

int64_t fp8_scale_rows(Fp8Tiling tiling, int64_t rows) {
  return tiling == Fp8Tiling::tile_1x128 ? rows : (rows + kFp8Tile - 1) / kFp8Tile;
}

int64_t fp8_scale_cols(Fp8Tiling tiling, int64_t cols) {
  return tiling == Fp8Tiling::tile_128x1 ? cols : (cols + kFp8Tile - 1) / kFp8Tile;
}

float Fp8Matrix::scale_at(int64_t r, int64_t c) const {
  const int64_t sr = tiling == Fp8Tiling::tile_1x128 ? r : r / kFp8Tile;
  const int64_t sc = tiling == Fp8Tiling::tile_128x1 ? c : c / kFp8Tile;
  return scales[sr * fp8_scale_cols(tiling, cols) + sc];
}

float Fp8Matrix::value_at(int64_t r, int64_t c) const {
  const uint8_t v = data[r * cols + c];
  return format == Fp8Format::e4m3 ? e4m3_to_f32(v) : e5m2_to_f32(v);
}

double fp8_gemm_error_bound(int64_t k, double abs_dot) {
  const int64_t chunks = (k + kFp8Tile - 1) / kFp8Tile;
  const double roundings = double(std::min<int64_t>(k, kFp8Tile) + 3 + chunks);
  // The 1.01 covers the second-order terms of (1 + u)^n - 1 for n far below 2^24.
  return 1.01 * roundings * 0x1p-24 * abs_dot;
}

void validate_fp8_gemm(const Fp8Operand& a, const Fp8Operand& b, const float* c, const Fp8GemmOptions& options) {
  auto check_operand = [](const Fp8Operand& op, const char* name) {
    const Fp8Matrix& m = op.matrix;
    DSV3_CHECK(m.rows >= 0 && m.cols >= 0, "[fp8_gemm] operand ", name, " has invalid shape [", m.rows, ", ", m.cols,
               "]");
    if (m.rows * m.cols == 0) return;
    DSV3_CHECK(m.data != nullptr && m.scales != nullptr, "[fp8_gemm] operand ", name, " [", m.rows, ", ", m.cols,
               "] has no ", m.data == nullptr ? "data" : "scales");
    const bool ok = op.transposed ? m.tiling != Fp8Tiling::tile_1x128 : m.tiling != Fp8Tiling::tile_128x1;
    DSV3_CHECK(ok, "[fp8_gemm] operand ", name, " is read ", op.transposed ? "transposed" : "directly", " but its ",
               fp8_tiling_name(m.tiling), " scales change along k within 128 elements; quantize it with ",
               op.transposed ? "128x1 or 128x128" : "1x128 or 128x128", " tiling (see fp8.h)");
  };
  check_operand(a, "A");
  check_operand(b, "B");
  DSV3_CHECK(a.inner() == b.inner(), "[fp8_gemm] inner dimensions differ: A has k = ", a.inner(),
             ", B has k = ", b.inner());
  DSV3_CHECK(c != nullptr || a.outer() * b.outer() == 0, "[fp8_gemm] output C is null");
  const Fp8Accumulation& acc = options.accumulation;
  DSV3_CHECK(acc.promote_interval >= 0, "[fp8_gemm] promote_interval must be >= 0 (0 = never), got ",
             acc.promote_interval);
  DSV3_CHECK(acc.accumulator_bits == 0 || (acc.accumulator_bits >= 2 && acc.accumulator_bits <= 24),
             "[fp8_gemm] accumulator_bits must be 0 (FP32) or 2..24, got ", acc.accumulator_bits);
  DSV3_CHECK(acc.fused_terms >= 1 && acc.fused_terms <= 4096, "[fp8_gemm] fused_terms must be in 1..4096, got ",
             acc.fused_terms);
}

namespace reference {

static uint8_t to_fp8(float x, Fp8Format format) { return format == Fp8Format::e4m3 ? f32_to_e4m3(x) : f32_to_e5m2(x); }

void f32_to_fp8(const float* x, int64_t n, Fp8Format format, uint8_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = to_fp8(x[i], format);
}

void fp8_to_f32(const uint8_t* q, int64_t n, Fp8Format format, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = format == Fp8Format::e4m3 ? e4m3_to_f32(q[i]) : e5m2_to_f32(q[i]);
}

void quantize_fp8(const float* x, int64_t rows, int64_t cols, Fp8Format format, Fp8Tiling tiling, bool pow2_scales,
                  uint8_t* q, float* scales) {
  DSV3_CHECK(rows >= 0 && cols >= 0, "[quantize_fp8] invalid shape [", rows, ", ", cols, "]");
  // Tile extent in rows and columns; every tiling is a grid of th×tw rectangles (edge ones partial).
  const int64_t th = tiling == Fp8Tiling::tile_1x128 ? 1 : kFp8Tile;
  const int64_t tw = tiling == Fp8Tiling::tile_128x1 ? 1 : kFp8Tile;
  const int64_t scale_cols = fp8_scale_cols(tiling, cols);
  for (int64_t r0 = 0; r0 < rows; r0 += th)
    for (int64_t c0 = 0; c0 < cols; c0 += tw) {
      const int64_t r1 = std::min(rows, r0 + th), c1 = std::min(cols, c0 + tw);
      float amax = 0.0f;
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(x[r * cols + c]));
      const float s = fp8_scale(amax, format, pow2_scales);
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) q[r * cols + c] = to_fp8(x[r * cols + c] / s, format);
      scales[(r0 / th) * scale_cols + c0 / tw] = s;
    }
}

// x truncated (toward zero) to `bits` significant bits.
static double truncate_significant(double x, int bits) {
  if (x == 0 || !std::isfinite(x)) return x;
  const double quantum = std::ldexp(1.0, std::ilogb(x) - (bits - 1));
  return std::trunc(x / quantum) * quantum;
}

double truncated_fused_add(double acc, const double* terms, int n, int bits) {
  int emax = INT_MIN;
  bool finite = std::isfinite(acc);
  if (acc != 0) emax = std::ilogb(acc);
  for (int i = 0; i < n; ++i) {
    finite = finite && std::isfinite(terms[i]);
    if (terms[i] != 0) emax = std::max(emax, std::ilogb(terms[i]));
  }
  if (!finite) {  // NaN and infinities propagate as in IEEE arithmetic
    for (int i = 0; i < n; ++i) acc += terms[i];
    return acc;
  }
  if (emax == INT_MIN) return 0.0;
  // Fixed-point window of `bits` bits whose top bit is the largest exponent: every addend is shifted
  // into it and what falls below its last bit is dropped. The addends are then integer multiples of
  // `quantum` below 2^bits·quantum, so the double sum is exact (n + 1 < 2^(53 - bits)).
  const double quantum = std::ldexp(1.0, emax - (bits - 1));
  double sum = std::trunc(acc / quantum) * quantum;
  for (int i = 0; i < n; ++i) sum += std::trunc(terms[i] / quantum) * quantum;
  // A carry out of the window (or cancellation) moves the leading bit; renormalise and truncate.
  return truncate_significant(sum, bits);
}

void fp8_gemm_rows(const Fp8Operand& a, const Fp8Operand& b, float* c_rows, const Fp8GemmOptions& options,
                   int64_t m_begin, int64_t m_end) {
  const int64_t n_cols = b.outer(), k_len = a.inner();
  const Fp8Accumulation& acc_mode = options.accumulation;
  const int64_t interval = acc_mode.promote_interval == 0 ? std::max<int64_t>(k_len, 1) : acc_mode.promote_interval;
  // Unscaled products with one sA·sB per interval when every interval lies inside one 128-run of k
  // (the scales are constant there); otherwise each product carries its own scales.
  const bool raw_products = kFp8Tile % interval == 0;
  const int bits = acc_mode.accumulator_bits;
  std::vector<double> terms(size_t(acc_mode.fused_terms));
  for (int64_t m = m_begin; m < m_end; ++m)
    for (int64_t n = 0; n < n_cols; ++n) {
      float& out = c_rows[(m - m_begin) * n_cols + n];
      float acc = options.accumulate ? out : 0.0f;
      for (int64_t k0 = 0; k0 < k_len; k0 += interval) {
        const int64_t k1 = std::min(k_len, k0 + interval);
        const float s_interval = raw_products ? a.scale(m, k0) * b.scale(n, k0) : 1.0f;
        auto product_scale = [&](int64_t k) { return raw_products ? 1.0f : a.scale(m, k) * b.scale(n, k); };
        float partial;
        if (bits == 0) {
          // Products of two FP8 values are exact in f32 (at most 4×4 significant bits).
          float p = 0.0f;
          for (int64_t k = k0; k < k1; ++k) p = std::fma(a.value(m, k) * b.value(n, k), product_scale(k), p);
          partial = p;
        } else {
          double p = 0.0;
          for (int64_t k = k0; k < k1; k += acc_mode.fused_terms) {
            const int64_t kn = std::min(k1, k + acc_mode.fused_terms);
            for (int64_t j = k; j < kn; ++j)
              terms[size_t(j - k)] = double(a.value(m, j)) * double(b.value(n, j)) * double(product_scale(j));
            p = truncated_fused_add(p, terms.data(), int(kn - k), bits);
          }
          partial = float(p);  // exact: at most 24 significant bits
        }
        // Promotion: scale the interval's partial sum and add it to the FP32 accumulator.
        acc = std::fma(partial, s_interval, acc);
      }
      out = acc;
    }
}

void fp8_gemm(const Fp8Operand& a, const Fp8Operand& b, float* c, const Fp8GemmOptions& options) {
  validate_fp8_gemm(a, b, c, options);
  fp8_gemm_rows(a, b, c, options, 0, a.outer());
}

void fp8_gemm_by_runs(const Fp8Operand& a, const Fp8Operand& b, float* c, const Fp8GemmOptions& options) {
  validate_fp8_gemm(a, b, c, options);
  DSV3_CHECK(options.accumulation.promote_interval == kFp8Tile && options.accumulation.accumulator_bits == 0,
             "[fp8_gemm] fp8_gemm_by_runs computes the default accumulation only (FP32, promotion every 128)");
  const int64_t m_len = a.outer(), n_len = b.outer(), k_len = a.inner();
  for (int64_t m = 0; m < m_len; ++m)
    for (int64_t n = 0; n < n_len; ++n) {
      float& out = c[m * n_len + n];
      float acc = options.accumulate ? out : 0.0f;
      for (int64_t k0 = 0; k0 < k_len; k0 += kFp8Tile) {
        double run = 0.0;
        for (int64_t k = k0; k < std::min(k_len, k0 + kFp8Tile); ++k)
          run += double(a.value(m, k)) * double(b.value(n, k));
        acc = std::fma(float(run), a.scale(m, k0) * b.scale(n, k0), acc);
      }
      out = acc;
    }
}

}  // namespace reference
}  // namespace dsv3
