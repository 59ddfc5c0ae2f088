// Vectorized element-wise and normalisation ops (twins of src/ops/reference/ops.cpp).
// Highway with static dispatch: these are plain lane-wise loops, so one portable source compiles to
// the build machine's widest vectors (AVX2 or AVX-512 under -march=native), and its Exp (max 1 ulp)
// serves silu and softmax. Partial tails go through a zero-padded vector-sized buffer so every element
// sees the same arithmetic.
#include "ops/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/parallel.h"
#include "core/error.h"
#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "hwy/contrib/math/math-inl.h"

namespace dsv3 {
namespace {

namespace hn = hwy::HWY_NAMESPACE;
using D = hn::ScalableTag<float>;
using V = hn::Vec<D>;

// Size of the padded tail buffers: at least one vector of any target.
constexpr int64_t kMaxLanes = 64;

// silu(g)·u with sigmoid(g) = 1/(1+e^-g) for g >= 0 and e^g/(1+e^g) below: e^-|g| never overflows,
// and very negative g keeps its tiny (possibly subnormal) value instead of flushing to a clamp.
V silu_times(D d, V g, V u) {
  const V e = hn::Exp(d, hn::Neg(hn::Abs(g)));
  const V one = hn::Set(d, 1.0f);
  const V sigmoid = hn::Div(hn::IfThenElse(hn::Lt(g, hn::Zero(d)), e, one), hn::Add(one, e));
  return hn::Mul(hn::Mul(g, sigmoid), u);
}

float sum_lanes(D d, V v) { return hn::GetLane(hn::SumOfLanes(d, v)); }

}  // namespace

void rmsnorm(const float* x, const float* weight, float eps, float* out, int64_t n_rows, int64_t dim) {
  const D d;
  const int64_t N = int64_t(hn::Lanes(d));
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = out + r * dim;
    V s0 = hn::Zero(d), s1 = hn::Zero(d);
    int64_t i = 0;
    for (; i + 2 * N <= dim; i += 2 * N) {
      const V a = hn::LoadU(d, xr + i), b = hn::LoadU(d, xr + i + N);
      s0 = hn::MulAdd(a, a, s0);
      s1 = hn::MulAdd(b, b, s1);
    }
    float sum_sq = sum_lanes(d, hn::Add(s0, s1));
    for (; i < dim; ++i) sum_sq += xr[i] * xr[i];
    const float inv = 1.0f / std::sqrt(sum_sq / float(dim) + eps);
    const V vinv = hn::Set(d, inv);
    i = 0;
    for (; i + N <= dim; i += N)
      hn::StoreU(hn::Mul(hn::Mul(hn::LoadU(d, xr + i), vinv), hn::LoadU(d, weight + i)), d, yr + i);
    for (; i < dim; ++i) yr[i] = xr[i] * inv * weight[i];
  }
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  const D d;
  const int64_t N = int64_t(hn::Lanes(d));
  int64_t i = 0;
  for (; i + N <= n; i += N)
    hn::StoreU(silu_times(d, hn::LoadU(d, gate + i), hn::LoadU(d, up + i)), d, out + i);
  if (i < n) {
    alignas(64) float g[kMaxLanes] = {}, u[kMaxLanes] = {};
    const size_t bytes = size_t(n - i) * sizeof(float);
    std::memcpy(g, gate + i, bytes);
    std::memcpy(u, up + i, bytes);
    hn::Store(silu_times(d, hn::Load(d, g), hn::Load(d, u)), d, g);
    std::memcpy(out + i, g, bytes);
  }
}

namespace {
// dgate and dup of one vector of lanes.
void silu_mul_backward_lanes(D d, V g, V u, V dh, V* dg, V* du) {
  const V e = hn::Exp(d, hn::Neg(hn::Abs(g)));
  const V one = hn::Set(d, 1.0f);
  const V s = hn::Div(hn::IfThenElse(hn::Lt(g, hn::Zero(d)), e, one), hn::Add(one, e));
  *du = hn::Mul(dh, hn::Mul(g, s));
  *dg = hn::Mul(hn::Mul(dh, u), hn::Mul(s, hn::MulAdd(g, hn::Sub(one, s), one)));
}
}  // namespace

void silu_mul_backward(const float* gate, const float* up, const float* dh, float* dgate, float* dup, int64_t n) {
  const D d;
  const int64_t N = int64_t(hn::Lanes(d));
  int64_t i = 0;
  V dg, du;
  for (; i + N <= n; i += N) {
    silu_mul_backward_lanes(d, hn::LoadU(d, gate + i), hn::LoadU(d, up + i), hn::LoadU(d, dh + i), &dg, &du);
    hn::StoreU(dg, d, dgate + i);
    hn::StoreU(du, d, dup + i);
  }
  if (i < n) {
    alignas(64) float g[kMaxLanes] = {}, u[kMaxLanes] = {}, h[kMaxLanes] = {};
    const size_t bytes = size_t(n - i) * sizeof(float);
    std::memcpy(g, gate + i, bytes);
    std::memcpy(u, up + i, bytes);
    std::memcpy(h, dh + i, bytes);
    silu_mul_backward_lanes(d, hn::Load(d, g), hn::Load(d, u), hn::Load(d, h), &dg, &du);
    hn::Store(dg, d, g);
    hn::Store(du, d, u);
    std::memcpy(dgate + i, g, bytes);
    std::memcpy(dup + i, u, bytes);
  }
}

void rmsnorm_backward(const float* x, int64_t ldx, const float* weight, const float* dy, int64_t ldy, int64_t rows,
                      int64_t dim, float eps, float* dx, int64_t lddx, float* dweight) {
  const D d;
  const int64_t N = int64_t(hn::Lanes(d));
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    const float* dyr = dy + r * ldy;
    V ss = hn::Zero(d), gx = hn::Zero(d);
    int64_t i = 0;
    for (; i + N <= dim; i += N) {
      const V xv = hn::LoadU(d, xr + i);
      ss = hn::MulAdd(xv, xv, ss);
      gx = hn::MulAdd(hn::Mul(hn::LoadU(d, dyr + i), hn::LoadU(d, weight + i)), xv, gx);
    }
    float sum_sq = sum_lanes(d, ss), g_dot_x = sum_lanes(d, gx);
    for (; i < dim; ++i) {
      sum_sq += xr[i] * xr[i];
      g_dot_x += dyr[i] * weight[i] * xr[i];
    }
    const float inv = 1.0f / std::sqrt(sum_sq / float(dim) + eps);
    const float c = inv * inv * inv * g_dot_x / float(dim);
    const V vinv = hn::Set(d, inv), vc = hn::Set(d, c);
    float* dxr = dx ? dx + r * lddx : nullptr;
    i = 0;
    for (; i + N <= dim; i += N) {
      const V xv = hn::LoadU(d, xr + i), dyv = hn::LoadU(d, dyr + i);
      if (dxr) {
        const V g = hn::Mul(dyv, hn::LoadU(d, weight + i));
        hn::StoreU(hn::Add(hn::LoadU(d, dxr + i), hn::NegMulAdd(vc, xv, hn::Mul(vinv, g))), d, dxr + i);
      }
      hn::StoreU(hn::MulAdd(hn::Mul(dyv, xv), vinv, hn::LoadU(d, dweight + i)), d, dweight + i);
    }
    for (; i < dim; ++i) {
      if (dxr) dxr[i] += inv * dyr[i] * weight[i] - c * xr[i];
      dweight[i] += dyr[i] * xr[i] * inv;
    }
  }
}

void softmax_inplace(float* x, int64_t n) {
  const D d;
  const int64_t N = int64_t(hn::Lanes(d));
  float max_value = -INFINITY;
  int64_t i = 0;
  if (n >= N) {
    V m = hn::LoadU(d, x);
    for (i = N; i + N <= n; i += N) m = hn::Max(m, hn::LoadU(d, x + i));
    max_value = hn::GetLane(hn::MaxOfLanes(d, m));
  }
  for (; i < n; ++i) max_value = std::max(max_value, x[i]);

  const V vmax = hn::Set(d, max_value);
  V sum = hn::Zero(d);
  i = 0;
  for (; i + N <= n; i += N) {
    const V e = hn::Exp(d, hn::Sub(hn::LoadU(d, x + i), vmax));
    hn::StoreU(e, d, x + i);
    sum = hn::Add(sum, e);
  }
  float total = sum_lanes(d, sum);
  if (i < n) {
    // Padding lanes hold -inf so they contribute e^-inf = 0.
    alignas(64) float t[kMaxLanes];
    std::fill(t, t + kMaxLanes, -INFINITY);
    const size_t bytes = size_t(n - i) * sizeof(float);
    std::memcpy(t, x + i, bytes);
    const V e = hn::Exp(d, hn::Sub(hn::Load(d, t), vmax));
    hn::Store(e, d, t);
    total += sum_lanes(d, e);
    std::memcpy(x + i, t, bytes);
  }
  scale_inplace(x, 1.0f / total, n);
}

void add_inplace(float* y, const float* x, int64_t n) {
  const D d;
  const int64_t N = int64_t(hn::Lanes(d));
  int64_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::Add(hn::LoadU(d, y + i), hn::LoadU(d, x + i)), d, y + i);
  for (; i < n; ++i) y[i] += x[i];
}

void scale_inplace(float* x, float a, int64_t n) {
  const D d;
  const int64_t N = int64_t(hn::Lanes(d));
  const V va = hn::Set(d, a);
  int64_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::Mul(hn::LoadU(d, x + i), va), d, x + i);
  for (; i < n; ++i) x[i] *= a;
}

float dot_f32(const float* a, const float* b, int64_t n) {
  const D d;
  const int64_t N = int64_t(hn::Lanes(d));
  // Four independent accumulators hide the FMA latency (and keep a streaming read at full speed).
  V s0 = hn::Zero(d), s1 = hn::Zero(d), s2 = hn::Zero(d), s3 = hn::Zero(d);
  int64_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    s0 = hn::MulAdd(hn::LoadU(d, a + i), hn::LoadU(d, b + i), s0);
    s1 = hn::MulAdd(hn::LoadU(d, a + i + N), hn::LoadU(d, b + i + N), s1);
    s2 = hn::MulAdd(hn::LoadU(d, a + i + 2 * N), hn::LoadU(d, b + i + 2 * N), s2);
    s3 = hn::MulAdd(hn::LoadU(d, a + i + 3 * N), hn::LoadU(d, b + i + 3 * N), s3);
  }
  for (; i + N <= n; i += N) s0 = hn::MulAdd(hn::LoadU(d, a + i), hn::LoadU(d, b + i), s0);
  float sum = sum_lanes(d, hn::Add(hn::Add(s0, s1), hn::Add(s2, s3)));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

float stream_sum(const float* x, int64_t n, int streams, bool prefetch) {
  DSV3_CHECK(streams >= 1 && streams <= 16, "[stream_sum] streams must be in [1, 16], got ", streams);
  const D d;
  const int64_t N = int64_t(hn::Lanes(d));
  constexpr int64_t kPrefetchFloats = 8192 / sizeof(float);
  const int64_t part = n / streams / N * N;  // each part a whole number of vectors; the rest goes below
  V acc[16];
  for (int s = 0; s < streams; ++s) acc[s] = hn::Zero(d);
  for (int64_t i = 0; i < part; i += N) {
    for (int s = 0; s < streams; ++s) {
      const float* p = x + s * part + i;
      if (prefetch && (i & 15) == 0) hwy::Prefetch(p + kPrefetchFloats);
      acc[s] = hn::Add(acc[s], hn::LoadU(d, p));
    }
  }
  V total = hn::Zero(d);
  for (int s = 0; s < streams; ++s) total = hn::Add(total, acc[s]);
  float sum = sum_lanes(d, total);
  for (int64_t i = part * streams; i < n; ++i) sum += x[i];
  return sum;
}

void axpy(float a, const float* x, float* y, int64_t n) {
  const D d;
  const int64_t N = int64_t(hn::Lanes(d));
  const V va = hn::Set(d, a);
  int64_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::MulAdd(va, hn::LoadU(d, x + i), hn::LoadU(d, y + i)), d, y + i);
  for (; i < n; ++i) y[i] += a * x[i];
}

// ---- bfloat16 conversions ----

namespace {

void f32_to_bf16_row(const float* x, int64_t n, uint16_t* out) {
  const hn::ScalableTag<uint32_t> du;
  const hn::Rebind<int32_t, decltype(du)> di;
  const hn::Rebind<uint16_t, decltype(du)> d16;
  const int64_t N = int64_t(hn::Lanes(du));
  const auto abs_mask = hn::Set(du, 0x7fffffffu), inf = hn::Set(du, 0x7f800000u);
  const auto bias = hn::Set(du, 0x7fffu), one = hn::Set(du, 1u), quiet = hn::Set(du, 0x40u);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const auto bits = hn::LoadU(du, reinterpret_cast<const uint32_t*>(x + i));
    const auto high = hn::ShiftRight<16>(bits);
    const auto rounded = hn::ShiftRight<16>(hn::Add(bits, hn::Add(bias, hn::And(high, one))));
    const auto nan = hn::Gt(hn::And(bits, abs_mask), inf);
    const auto result = hn::IfThenElse(nan, hn::Or(high, quiet), rounded);  // <= 0xffff: demotes exactly
    hn::StoreU(hn::DemoteTo(d16, hn::BitCast(di, result)), d16, out + i);
  }
  for (; i < n; ++i) out[i] = f32_to_bf16(x[i]);
}

void bf16_to_f32_row(const uint16_t* x, int64_t n, float* out) {
  const hn::ScalableTag<uint32_t> du;
  const hn::Rebind<uint16_t, decltype(du)> d16;
  const int64_t N = int64_t(hn::Lanes(du));
  int64_t i = 0;
  for (; i + N <= n; i += N)
    hn::StoreU(hn::ShiftLeft<16>(hn::PromoteTo(du, hn::LoadU(d16, x + i))), du, reinterpret_cast<uint32_t*>(out + i));
  for (; i < n; ++i) out[i] = bf16_to_f32(x[i]);
}

// Rows per task: about 64K elements.
int64_t row_grain(int64_t cols) { return std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(cols, 1)); }

}  // namespace

void f32_to_bf16_2d(const float* x, int64_t rows, int64_t cols, int64_t ld, uint16_t* out) {
  parallel_for(rows, row_grain(cols), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) f32_to_bf16_row(x + r * ld, cols, out + r * cols);
  });
}

void bf16_to_f32_2d(const uint16_t* x, int64_t rows, int64_t cols, int64_t ld, float* out) {
  parallel_for(rows, row_grain(cols), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) bf16_to_f32_row(x + r * ld, cols, out + r * cols);
  });
}

}  // namespace dsv3
