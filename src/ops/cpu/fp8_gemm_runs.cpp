// FP8 GEMM on the bf16 matmul, one 128-run of k at a time (ops/fp8.h fp8_gemm_by_runs).
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/parallel.h"
#include "ops/fp8.h"
#include "ops/gemm.h"
#include "hwy/highway.h"

namespace dsv3 {

namespace {

// bf16 bits of every code: exact, FP8 values have at most 4 significant bits and bf16's exponent range.
struct Bf16Table {
  uint16_t e4m3[256], e5m2[256];
  Bf16Table() {
    for (int code = 0; code < 256; ++code) {
      e4m3[code] = uint16_t(f32_to_bits(e4m3_to_f32(uint8_t(code))) >> 16);
      e5m2[code] = uint16_t(f32_to_bits(e5m2_to_f32(uint8_t(code))) >> 16);
    }
  }
};

const Bf16Table& bf16_table() {
  static const Bf16Table table;
  return table;
}

// Per-thread growable buffer.
template <typename T>
T* buffer(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// c[j] = fma(p[j], sa·sb[j], c[j]): a run's partial sums promoted into the FP32 accumulator (one
// rounding for the product sa·sb[j], one for the fused multiply-add, as the reference does).
void promote_row(const float* p, float sa, const float* sb, int64_t n, float* c) {
  namespace hn = hwy::HWY_NAMESPACE;
  const hn::ScalableTag<float> d;
  const int64_t N = int64_t(hn::Lanes(d));
  const auto vsa = hn::Set(d, sa);
  int64_t j = 0;
  for (; j + N <= n; j += N)
    hn::StoreU(hn::MulAdd(hn::LoadU(d, p + j), hn::Mul(vsa, hn::LoadU(d, sb + j)), hn::LoadU(d, c + j)), d, c + j);
  for (; j < n; ++j) c[j] = std::fma(p[j], sa * sb[j], c[j]);
}

}  // namespace

void fp8_to_bf16(const uint8_t* q, int64_t n, Fp8Format format, uint16_t* out) {
  const uint16_t* table = format == Fp8Format::e4m3 ? bf16_table().e4m3 : bf16_table().e5m2;
  parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) out[i] = table[q[i]];
  });
}

void fp8_gemm_by_runs(const Fp8Operand& a, const Fp8Operand& b, float* c, const Fp8GemmOptions& options,
                      const uint16_t* a_bf16, const uint16_t* b_bf16) {
  validate_fp8_gemm(a, b, c, options);
  const Fp8Accumulation& acc = options.accumulation;
  DSV3_CHECK(acc.promote_interval == kFp8Tile && acc.accumulator_bits == 0,
             "[fp8_gemm] fp8_gemm_by_runs computes the default accumulation only (FP32, promotion every 128)");
  const int64_t m = a.outer(), n = b.outer(), k = a.inner();
  if (m == 0 || n == 0) return;
  if (!has_native_bf16_gemm()) {
    fp8_gemm(a, b, c, options);
    return;
  }
  if (!options.accumulate)
    parallel_for(m, 64, [&](int64_t r0, int64_t r1) { std::fill(c + r0 * n, c + r1 * n, 0.0f); });
  if (k == 0) return;

  thread_local std::vector<uint16_t> a_decoded, b_decoded;
  thread_local std::vector<float> partial_buffer, sb_buffer;
  if (!a_bf16) {
    uint16_t* d = buffer(a_decoded, size_t(m * k));
    fp8_to_bf16(a.matrix.data, m * k, a.matrix.format, d);
    a_bf16 = d;
  }
  if (!b_bf16) {
    uint16_t* d = buffer(b_decoded, size_t(n * k));
    fp8_to_bf16(b.matrix.data, n * k, b.matrix.format, d);
    b_bf16 = d;
  }
  // Rows are cut into panels small enough that a panel's partial sums stay in cache between the matmul
  // of a run and its promotion; each panel is one thread's (oneDNN runs single-threaded inside a
  // parallel_for worker), its runs in k order, so every element of C is summed in a fixed order.
  const int64_t runs = (k + kFp8Tile - 1) / kFp8Tile;
  const int64_t panel = std::clamp<int64_t>((int64_t(1) << 18) / std::max<int64_t>(n, 1) / 16 * 16, 32, 256);
  const int64_t panels = (m + panel - 1) / panel;
  float* sb = buffer(sb_buffer, size_t(runs * n));  // [run, n]
  for (int64_t r = 0; r < runs; ++r)
    for (int64_t j = 0; j < n; ++j) sb[r * n + j] = b.scale(j, r * kFp8Tile);
  const Trans ta = a.transposed ? Trans::yes : Trans::no, tb = b.transposed ? Trans::no : Trans::yes;
  const int64_t lda = a.transposed ? m : k, ldb = b.transposed ? n : k;
  const auto run_panel = [&](int64_t i0, int64_t rows, float* partial) {
    for (int64_t r = 0; r < runs; ++r) {
      const int64_t k0 = r * kFp8Tile, kc = std::min(kFp8Tile, k - k0);
      // op(A) rows [i0, i0 + rows) of run r: A stored [m, k] (direct) or [k, m] (transposed); op(B) [kc, n]
      // from B stored [n, k] or [k, n].
      const uint16_t* ap = a.transposed ? a_bf16 + k0 * m + i0 : a_bf16 + i0 * k + k0;
      const uint16_t* bp = b.transposed ? b_bf16 + k0 * n : b_bf16 + k0;
      gemm_bf16(ta, tb, rows, n, kc, 1.0f, ap, lda, bp, ldb, 0.0f, partial, n);
      for (int64_t i = 0; i < rows; ++i)
        promote_row(partial + i * n, a.scale(i0 + i, k0), sb + r * n, n, c + (i0 + i) * n);
    }
  };
  if (panels >= num_threads()) {
    parallel_for(panels, 1, [&](int64_t p0, int64_t p1) {
      thread_local std::vector<float> partial;
      float* pb = buffer(partial, size_t(panel * n));
      for (int64_t q = p0; q < p1; ++q) run_panel(q * panel, std::min(panel, m - q * panel), pb);
    });
  } else {  // too few rows to share by panels: one panel of all rows, oneDNN threading each matmul
    run_panel(0, m, buffer(partial_buffer, size_t(m * n)));
  }
}

}  // namespace dsv3
