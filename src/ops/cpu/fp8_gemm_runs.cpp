// FP8 GEMM on the bf16 matmul, one 128-run of k at a time (ops/fp8.h fp8_gemm_by_runs).
#include <cmath>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/parallel.h"
#include "ops/fp8.h"
#include "ops/gemm.h"

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
  thread_local std::vector<float> partial_buffer, sa_buffer, sb_buffer;
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
  float* partial = buffer(partial_buffer, size_t(m * n));
  float* sa = buffer(sa_buffer, size_t(m));
  float* sb = buffer(sb_buffer, size_t(n));
  for (int64_t k0 = 0; k0 < k; k0 += kFp8Tile) {
    const int64_t kc = std::min(kFp8Tile, k - k0);
    // op(A) [m, kc]: A stored [m, k] (direct) or [k, m] (transposed); op(B) [kc, n] from B [n, k] or [k, n].
    const uint16_t* ap = a.transposed ? a_bf16 + k0 * m : a_bf16 + k0;
    const uint16_t* bp = b.transposed ? b_bf16 + k0 * n : b_bf16 + k0;
    gemm_bf16(a.transposed ? Trans::yes : Trans::no, b.transposed ? Trans::no : Trans::yes, m, n, kc, 1.0f, ap,
              a.transposed ? m : k, bp, b.transposed ? n : k, 0.0f, partial, n);
    for (int64_t i = 0; i < m; ++i) sa[i] = a.scale(i, k0);
    for (int64_t j = 0; j < n; ++j) sb[j] = b.scale(j, k0);
    parallel_for(m, std::max<int64_t>(1, 16384 / n), [&](int64_t r0, int64_t r1) {
      for (int64_t i = r0; i < r1; ++i) {
        const float si = sa[i];
        const float* p = partial + i * n;
        float* ci = c + i * n;
        for (int64_t j = 0; j < n; ++j) ci[j] = std::fma(p[j], si * sb[j], ci[j]);
      }
    });
  }
}

}  // namespace dsv3
