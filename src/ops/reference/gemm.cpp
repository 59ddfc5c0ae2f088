// Scalar GEMMs: the f64 gemm used by the double-precision gradient checks, and the f32 reference twin
// of the oneDNN gemm (src/ops/cpu/gemm.cpp). Both accumulate every dot product in double, one output
// element at a time, so results do not depend on the thread count.
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/parallel.h"
#include "ops/gemm.h"

namespace dsv3 {
namespace {

template <typename T>
void check_args(int64_t m, int64_t n, int64_t k, Trans ta, Trans tb, int64_t lda, int64_t ldb, int64_t ldc) {
  DSV3_CHECK(m >= 0 && n >= 0 && k >= 0, "[gemm] negative size m=", m, " n=", n, " k=", k);
  DSV3_CHECK(lda >= (ta == Trans::yes ? m : k) && ldb >= (tb == Trans::yes ? k : n) && ldc >= n,
             "[gemm] leading dimensions lda=", lda, " ldb=", ldb, " ldc=", ldc, " too small for m=", m, " n=", n,
             " k=", k);
}

template <typename T>
void scalar_gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
                 int64_t ldb, T beta, T* c, int64_t ldc) {
  check_args<T>(m, n, k, ta, tb, lda, ldb, ldc);
  if (m == 0 || n == 0) return;
  parallel_for(m, 4, [&](int64_t begin, int64_t end) {
    std::vector<double> row(static_cast<size_t>(k));
    for (int64_t i = begin; i < end; ++i) {
      for (int64_t p = 0; p < k; ++p) row[size_t(p)] = double(ta == Trans::yes ? a[p * lda + i] : a[i * lda + p]);
      for (int64_t j = 0; j < n; ++j) {
        double sum = 0;
        if (tb == Trans::yes) {
          const T* bj = b + j * ldb;
          for (int64_t p = 0; p < k; ++p) sum += row[size_t(p)] * double(bj[p]);
        } else {
          for (int64_t p = 0; p < k; ++p) sum += row[size_t(p)] * double(b[p * ldb + j]);
        }
        T& out = c[i * ldc + j];
        out = beta == T(0) ? T(double(alpha) * sum) : T(double(alpha) * sum + double(beta) * double(out));
      }
    }
  });
}

}  // namespace

void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
          const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  scalar_gemm<double>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

namespace reference {
void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  scalar_gemm<float>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void gemm_bf16(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
               const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  check_args<float>(m, n, k, ta, tb, lda, ldb, ldc);
  // Round the stored operands (packed, same orientation) and multiply them exactly as the f32 twin does.
  const auto rounded = [](const float* x, int64_t rows, int64_t cols, int64_t ld) {
    std::vector<float> r(size_t(rows * cols));
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) r[size_t(i * cols + j)] = bf16_to_f32(f32_to_bf16(x[i * ld + j]));
    return r;
  };
  const int64_t a_rows = ta == Trans::yes ? k : m, a_cols = ta == Trans::yes ? m : k;
  const int64_t b_rows = tb == Trans::yes ? n : k, b_cols = tb == Trans::yes ? k : n;
  const std::vector<float> ra = rounded(a, a_rows, a_cols, lda), rb = rounded(b, b_rows, b_cols, ldb);
  scalar_gemm<float>(ta, tb, m, n, k, alpha, ra.data(), a_cols, rb.data(), b_cols, beta, c, ldc);
}
}  // namespace reference

}  // namespace dsv3
