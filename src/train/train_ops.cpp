#include "train/train_ops.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "core/error.h"
#include "core/parallel.h"
#include "core/profiler.h"
#include "model/rope.h"
#include "ops/gemm.h"
#include "train/fp8_linear.h"
#include "ops/ops.h"

namespace dsv3 {

RopeTable make_rope_table(const ModelConfig& config, int64_t positions) {
  const RopeFrequencies f = rope_frequencies(config);
  RopeTable t;
  t.half = f.dim / 2;
  t.positions = positions;
  t.cos.resize(size_t(positions * t.half));
  t.sin.resize(size_t(positions * t.half));
  if (positions > 0) rope_tables(f, 0, positions, t.cos.data(), t.sin.data());
  return t;
}

// ---- Workspace ----

template <typename T>
T* Workspace<T>::take(int64_t n) {
  n = std::max<int64_t>((n + 15) / 16 * 16, 16);
  if (!blocks_.empty() && used_ + n <= blocks_[block_].size) {
    T* p = blocks_[block_].data.get() + used_;
    used_ += n;
    return p;
  }
  // The next block (unused: everything after the current block was released) or a new one.
  const size_t next = blocks_.empty() ? 0 : block_ + 1;
  if (next >= blocks_.size() || blocks_[next].size < n) {
    const int64_t size = std::max<int64_t>(n, int64_t(1) << 20);
    T* p = static_cast<T*>(std::aligned_alloc(64, size_t(size) * sizeof(T)));
    DSV3_CHECK(p != nullptr, "[train] out of memory growing the workspace by ", size_t(size) * sizeof(T), " bytes");
    Block b;
    b.data = std::unique_ptr<T[], void (*)(void*)>(p, std::free);
    b.size = size;
    if (next >= blocks_.size())
      blocks_.push_back(std::move(b));
    else
      blocks_[next] = std::move(b);
  }
  block_ = next;
  used_ = n;
  return blocks_[block_].data.get();
}

template <typename T>
int64_t Workspace<T>::capacity() const {
  int64_t total = 0;
  for (const Block& b : blocks_) total += b.size;
  return total;
}

const char* compute_precision_name(ComputePrecision p) {
  switch (p) {
    case ComputePrecision::f32: return "f32";
    case ComputePrecision::bf16: return "bf16";
    case ComputePrecision::fp8: return "fp8";
  }
  return "?";
}

ComputePrecision parse_compute_precision(const std::string& name) {
  for (ComputePrecision p : {ComputePrecision::f32, ComputePrecision::bf16, ComputePrecision::fp8})
    if (name == compute_precision_name(p)) return p;
  DSV3_FAIL("[train] unknown precision '", name, "'; use f32, bf16 or fp8");
}

template <typename T>
void Workspace<T>::set_precision(ComputePrecision p) {
  constexpr bool is_float = std::is_same_v<T, float>;
  DSV3_CHECK(p == ComputePrecision::f32 || is_float, "[train] ", compute_precision_name(p),
             " GEMMs need float training (double is for the gradient checks)");
  precision_ = p;
}

// ---- linear ----

namespace {

// The arithmetic a GEMM of `kind` runs in.
ComputePrecision gemm_precision(ComputePrecision step, GemmKind kind) {
  if (step == ComputePrecision::fp8 && kind == GemmKind::kept) return ComputePrecision::bf16;
  return step;
}

// A stored GEMM operand of `rows` × `cols` values with row stride ld, in bf16: the weight shadow when it is
// a parameter, else rounded into ws (the caller holds a Scope).
struct Bf16Operand {
  const uint16_t* data;
  int64_t ld;
};
Bf16Operand bf16_operand(Workspace<float>& ws, const float* x, int64_t rows, int64_t cols, int64_t ld) {
  if (const uint16_t* shadow = ws.bf16_weight(x)) return {shadow, ld};
  uint16_t* out = ws.take_bf16(rows * cols);
  f32_to_bf16_2d(x, rows, cols, ld, out);
  return {out, cols};
}


// dx (+)= dy · W when dx, dW += dyᵀ · x when dw; dy is rounded once for both in bf16 steps.
template <typename T>
void linear_backward_impl(Workspace<T>& ws, const T* x, const T* w, const T* dy, int64_t n, int64_t in, int64_t out,
                          T* dx, bool accumulate, T* dw, GemmKind kind) {
  if (dw && ws.deferred_weight_grads()) {  // a zero-bubble backward: the weight gradient waits for its W
    typename DeferredWeightGrads<T>::Wgrad& g = ws.deferred_weight_grads()->queue.emplace_back();
    g.x.assign(x, x + n * in);
    g.dy.assign(dy, dy + n * out);
    g.n = n;
    g.in = in;
    g.out = out;
    g.dw = dw;
    g.kind = kind;
    g.precision = ws.precision();
    dw = nullptr;
    if (!dx) return;
  }
  const ComputePrecision p = gemm_precision(ws.precision(), kind);
  if constexpr (std::is_same_v<T, float>) {
    if (p != ComputePrecision::f32) {
      if (p == ComputePrecision::fp8) {
        if (dx) {
          DSV3_ZONE("linear.dgrad");
          fp8_linear_dgrad(ws, dy, w, n, in, out, dx, accumulate);
        }
        if (dw) {
          DSV3_ZONE("linear.wgrad");
          fp8_linear_wgrad(ws, x, dy, n, in, out, dw);
        }
        return;
      }
      typename Workspace<T>::Scope scope(ws);
      const Bf16Operand g = bf16_operand(ws, dy, n, out, out);
      if (dx) {
        DSV3_ZONE("linear.dgrad");
        const Bf16Operand b = bf16_operand(ws, w, out, in, in);
        gemm_bf16(Trans::no, Trans::no, n, in, out, 1.0f, g.data, g.ld, b.data, b.ld, accumulate ? 1.0f : 0.0f, dx, in);
      }
      if (dw) {
        DSV3_ZONE("linear.wgrad");
        const Bf16Operand b = bf16_operand(ws, x, n, in, in);
        gemm_bf16(Trans::yes, Trans::no, out, in, n, 1.0f, g.data, g.ld, b.data, b.ld, 1.0f, dw, in);
      }
      return;
    }
  }
  if (dx) {
    DSV3_ZONE("linear.dgrad");
    gemm(Trans::no, Trans::no, n, in, out, T(1), dy, out, w, in, T(accumulate ? 1 : 0), dx, in);
  }
  if (dw) {
    DSV3_ZONE("linear.wgrad");
    gemm(Trans::yes, Trans::no, out, in, n, T(1), dy, out, x, in, T(1), dw, in);
  }
}

}  // namespace

template <typename T>
void linear_forward(Workspace<T>& ws, const T* x, const T* w, int64_t n, int64_t in, int64_t out, T* y,
                    GemmKind kind) {
  DSV3_ZONE("linear.fprop");
  const ComputePrecision p = gemm_precision(ws.precision(), kind);
  if constexpr (std::is_same_v<T, float>) {
    if (p != ComputePrecision::f32) {
      if (p == ComputePrecision::fp8) {
        fp8_linear_forward(ws, x, w, n, in, out, y);
        return;
      }
      typename Workspace<T>::Scope scope(ws);
      const Bf16Operand a = bf16_operand(ws, x, n, in, in), b = bf16_operand(ws, w, out, in, in);
      gemm_bf16(Trans::no, Trans::yes, n, out, in, 1.0f, a.data, a.ld, b.data, b.ld, 0.0f, y, out);
      return;
    }
  }
  gemm(Trans::no, Trans::yes, n, out, in, T(1), x, in, w, in, T(0), y, out);
}

template <typename T>
void run_deferred_weight_grads(DeferredWeightGrads<T>& deferred, Workspace<T>& ws) {
  DSV3_ZONE("linear.deferred_wgrad");
  DSV3_CHECK(ws.deferred_weight_grads() == nullptr, "[train] deferred weight gradients run while deferring");
  const ComputePrecision saved = ws.precision();
  for (typename DeferredWeightGrads<T>::Wgrad& g : deferred.queue) {
    ws.set_precision(g.precision);
    linear_backward_impl<T>(ws, g.x.data(), nullptr, g.dy.data(), g.n, g.in, g.out, nullptr, true, g.dw, g.kind);
  }
  ws.set_precision(saved);
  deferred.queue.clear();
}

template <typename T>
void linear_dgrad(Workspace<T>& ws, const T* dy, const T* w, int64_t n, int64_t in, int64_t out, T* dx,
                  bool accumulate, GemmKind kind) {
  linear_backward_impl<T>(ws, nullptr, w, dy, n, in, out, dx, accumulate, nullptr, kind);
}

template <typename T>
void linear_wgrad(Workspace<T>& ws, const T* x, const T* dy, int64_t n, int64_t in, int64_t out, T* dw,
                  GemmKind kind) {
  linear_backward_impl<T>(ws, x, nullptr, dy, n, in, out, nullptr, true, dw, kind);
}

template <typename T>
void linear_backward(Workspace<T>& ws, const T* x, const T* w, const T* dy, int64_t n, int64_t in, int64_t out, T* dx,
                     T* dw, GemmKind kind) {
  linear_backward_impl<T>(ws, x, w, dy, n, in, out, dx, true, dw, kind);
}

template <typename T>
void kept_gemm(ComputePrecision precision, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, T alpha,
               const KeptOperand<T>& a, const KeptOperand<T>& b, T beta, T* c, int64_t ldc) {
  if constexpr (std::is_same_v<T, float>) {
    if (gemm_precision(precision, GemmKind::kept) != ComputePrecision::f32) {
      if (a.bf16 && b.bf16) {
        gemm_bf16(ta, tb, m, n, k, alpha, a.bf16, a.ld, b.bf16, b.ld, beta, c, ldc);
      } else if (!a.bf16 && !b.bf16) {
        gemm_bf16(ta, tb, m, n, k, alpha, a.values, a.ld, b.values, b.ld, beta, c, ldc);
      } else {  // round the other operand into a per-thread buffer
        thread_local std::vector<uint16_t> rounded;
        const KeptOperand<T>& plain = a.bf16 ? b : a;
        const bool transposed = a.bf16 ? tb == Trans::yes : ta == Trans::yes;
        const int64_t rows = a.bf16 ? (transposed ? n : k) : (transposed ? k : m);
        const int64_t cols = a.bf16 ? (transposed ? k : n) : (transposed ? m : k);
        rounded.resize(size_t(rows * cols));
        f32_to_bf16_2d(plain.values, rows, cols, plain.ld, rounded.data());
        if (a.bf16)
          gemm_bf16(ta, tb, m, n, k, alpha, a.bf16, a.ld, rounded.data(), cols, beta, c, ldc);
        else
          gemm_bf16(ta, tb, m, n, k, alpha, rounded.data(), cols, b.bf16, b.ld, beta, c, ldc);
      }
      return;
    }
  }
  gemm(ta, tb, m, n, k, alpha, a.values, a.ld, b.values, b.ld, beta, c, ldc);
}

template <typename T>
const uint16_t* round_for_kept_gemms(Workspace<T>& ws, const T* x, int64_t rows, int64_t cols) {
  if constexpr (std::is_same_v<T, float>) {
    if (gemm_precision(ws.precision(), GemmKind::kept) == ComputePrecision::f32) return nullptr;
    uint16_t* out = ws.take_bf16(rows * cols);
    f32_to_bf16_2d(x, rows, cols, cols, out);
    return out;
  }
  return nullptr;
}

// ---- RMSNorm ----

namespace {

template <typename T>
double inverse_rms(const T* x, int64_t dim, double eps) {
  double sum = 0;
  for (int64_t i = 0; i < dim; ++i) sum += double(x[i]) * double(x[i]);
  return 1.0 / std::sqrt(sum / double(dim) + eps);
}

// Columns per task when a reduction over rows is split by columns.
constexpr int64_t kColumnBlock = 64;

}  // namespace

template <typename T>
void rmsnorm_forward(const T* x, int64_t ldx, const T* w, int64_t rows, int64_t dim, double eps, T* y, int64_t ldy) {
  DSV3_ZONE("rmsnorm.forward");
  parallel_for(rows, 16, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const T* xr = x + r * ldx;
      T* yr = y + r * ldy;
      if constexpr (std::is_same_v<T, float>) {
        rmsnorm(xr, w, float(eps), yr, 1, dim);  // the inference kernel (vectorized)
      } else {
        const T inv = T(inverse_rms(xr, dim, eps));
        for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * inv * w[i];
      }
    }
  });
}

template <typename T>
void rmsnorm_backward(const T* x, int64_t ldx, const T* w, const T* dy, int64_t ldy, int64_t rows, int64_t dim,
                      double eps, T* dx, int64_t lddx, T* dw) {
  DSV3_ZONE("rmsnorm.backward");
  if constexpr (std::is_same_v<T, float>) {
    // Rows split by thread; each thread sums its dw partial, partials added in thread order (deterministic
    // for a given thread count).
    thread_local std::vector<float> partial_buffer;  // the calling thread's (workers only get a pointer)
    const int threads = num_threads();
    partial_buffer.assign(size_t(threads) * size_t(dim), 0.0f);
    float* partials = partial_buffer.data();
    parallel_run([&](int t, int team) {
      const int64_t b = rows * t / team, e = rows * (t + 1) / team;
      if (b < e)
        rmsnorm_backward(x + b * ldx, ldx, w, dy + b * ldy, ldy, e - b, dim, float(eps), dx ? dx + b * lddx : nullptr,
                         lddx, partials + int64_t(t) * dim);
    });
    if (dw)
      for (int t = 0; t < threads; ++t) add_inplace(dw, partials + int64_t(t) * dim, dim);
    return;
  }
  // Double (the gradient checks): y_i = x_i·r·w_i, r = (mean(x²)+eps)^-1/2:
  //   dx_i = r·g_i − x_i·r³·(Σ_j g_j x_j)/dim,  g = dy ⊙ w.
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * ldx;
    const T* dyr = dy + r * ldy;
    const double rr = inverse_rms(xr, dim, eps);
    double gx = 0;
    for (int64_t i = 0; i < dim; ++i) gx += double(dyr[i]) * double(w[i]) * double(xr[i]);
    const T a = T(rr), c = T(rr * rr * rr * gx / double(dim));
    for (int64_t i = 0; i < dim; ++i) {
      if (dx) dx[r * lddx + i] += a * dyr[i] * w[i] - c * xr[i];
      if (dw) dw[i] += dyr[i] * xr[i] * a;
    }
  }
}

// ---- embedding ----

template <typename T>
void embedding_forward(const T* table, int64_t vocab, int64_t dim, const int32_t* tokens, int64_t rows, T* y) {
  for (int64_t r = 0; r < rows; ++r)
    DSV3_CHECK(tokens[r] >= 0 && tokens[r] < vocab, "[train] token id ", tokens[r], " at index ", r,
               " is outside the vocabulary [0, ", vocab, ")");
  parallel_for(rows, 64, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) std::memcpy(y + r * dim, table + int64_t(tokens[r]) * dim, size_t(dim) * sizeof(T));
  });
}

template <typename T>
void embedding_backward(int64_t vocab, int64_t dim, const int32_t* tokens, int64_t rows, const T* dy, T* dtable) {
  DSV3_ZONE("embedding.backward");
  const int64_t blocks = (dim + kColumnBlock - 1) / kColumnBlock;
  parallel_for(blocks, 1, [&](int64_t bb, int64_t be) {
    for (int64_t blk = bb; blk < be; ++blk) {
      const int64_t c0 = blk * kColumnBlock, c1 = std::min(dim, c0 + kColumnBlock);
      for (int64_t r = 0; r < rows; ++r) {
        T* dst = dtable + int64_t(tokens[r]) * dim;
        const T* src = dy + r * dim;
        for (int64_t i = c0; i < c1; ++i) dst[i] += src[i];
      }
    }
  });
  (void)vocab;
}

// ---- RoPE ----

namespace {

template <typename T>
void rope_apply(T* x, int64_t rows, int64_t seq, int64_t vectors, int64_t row_stride, int64_t vector_stride,
                const RopeTable& rope, const int32_t* segment_start, bool transpose) {
  DSV3_CHECK(seq <= rope.positions, "[train] RoPE table covers ", rope.positions, " positions, sequence has ", seq);
  const int64_t half = rope.half;
  parallel_for(rows, 16, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t position = r % seq - (segment_start ? segment_start[r] : 0);
      const float* cs = rope.cos.data() + position * half;
      const float* sn = rope.sin.data() + position * half;
      for (int64_t j = 0; j < vectors; ++j) {
        T* v = x + r * row_stride + j * vector_stride;
        for (int64_t i = 0; i < half; ++i) {
          const T c = T(cs[i]), s = transpose ? -T(sn[i]) : T(sn[i]);
          const T a = v[2 * i], bb = v[2 * i + 1];
          v[2 * i] = a * c - bb * s;
          v[2 * i + 1] = a * s + bb * c;
        }
      }
    }
  });
}

}  // namespace

template <typename T>
void rope_forward(T* x, int64_t rows, int64_t seq, int64_t vectors, int64_t row_stride, int64_t vector_stride,
                  const RopeTable& rope, const int32_t* segment_start) {
  rope_apply(x, rows, seq, vectors, row_stride, vector_stride, rope, segment_start, false);
}

template <typename T>
void rope_backward(T* dx, int64_t rows, int64_t seq, int64_t vectors, int64_t row_stride, int64_t vector_stride,
                   const RopeTable& rope, const int32_t* segment_start) {
  rope_apply(dx, rows, seq, vectors, row_stride, vector_stride, rope, segment_start, true);
}

// ---- SwiGLU ----

namespace {
template <typename T>
T sigmoid(T g) {
  // e^-|g| never overflows.
  const T e = std::exp(-std::fabs(g));
  return g >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
}
}  // namespace

template <typename T>
void swiglu_forward(const T* g, const T* u, int64_t n, T* h) {
  if constexpr (std::is_same_v<T, float>) {
    parallel_for(n, 1 << 14, [&](int64_t b, int64_t e) { silu_mul(g + b, u + b, h + b, e - b); });
  } else {
    for (int64_t i = 0; i < n; ++i) h[i] = g[i] * sigmoid(g[i]) * u[i];
  }
}

template <typename T>
void swiglu_backward(const T* g, const T* u, const T* dh, int64_t n, T* dg, T* du) {
  if constexpr (std::is_same_v<T, float>) {
    parallel_for(n, 1 << 14, [&](int64_t b, int64_t e) {
      silu_mul_backward(g + b, u + b, dh + b, dg + b, du + b, e - b);
    });
  } else {
    for (int64_t i = 0; i < n; ++i) {
      const T s = sigmoid(g[i]);
      const T silu = g[i] * s;
      const T d = dh[i], ui = u[i];
      // silu'(g) = s·(1 + g·(1 − s))
      dg[i] = d * ui * s * (T(1) + g[i] * (T(1) - s));
      du[i] = d * silu;
    }
  }
}

// ---- helpers ----

template <typename T>
void softmax_row(T* x, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    softmax_inplace(x, n);
  } else {
    T m = x[0];
    for (int64_t i = 1; i < n; ++i) m = std::max(m, x[i]);
    T sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += (x[i] = std::exp(x[i] - m));
    const T inv = T(1) / sum;
    for (int64_t i = 0; i < n; ++i) x[i] *= inv;
  }
}

template <typename T>
T dot(const T* a, const T* b, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    return dot_f32(a, b, n);
  } else {
    T s = 0;
    for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
  }
}

#define DSV3_INSTANTIATE(T)                                                                                        \
  template class Workspace<T>;                                                                                     \
  template void linear_forward(Workspace<T>&, const T*, const T*, int64_t, int64_t, int64_t, T*, GemmKind);       \
  template void linear_dgrad(Workspace<T>&, const T*, const T*, int64_t, int64_t, int64_t, T*, bool, GemmKind);    \
  template void run_deferred_weight_grads(DeferredWeightGrads<T>&, Workspace<T>&);                                 \
  template void linear_wgrad(Workspace<T>&, const T*, const T*, int64_t, int64_t, int64_t, T*, GemmKind);          \
  template void linear_backward(Workspace<T>&, const T*, const T*, const T*, int64_t, int64_t, int64_t, T*, T*,    \
                                GemmKind);                                                                         \
  template void kept_gemm(ComputePrecision, Trans, Trans, int64_t, int64_t, int64_t, T, const KeptOperand<T>&,    \
                          const KeptOperand<T>&, T, T*, int64_t);                                                  \
  template const uint16_t* round_for_kept_gemms(Workspace<T>&, const T*, int64_t, int64_t);                 \
  template void rmsnorm_forward(const T*, int64_t, const T*, int64_t, int64_t, double, T*, int64_t);               \
  template void rmsnorm_backward(const T*, int64_t, const T*, const T*, int64_t, int64_t, int64_t, double, T*,     \
                                 int64_t, T*);                                                                     \
  template void embedding_forward(const T*, int64_t, int64_t, const int32_t*, int64_t, T*);                        \
  template void embedding_backward(int64_t, int64_t, const int32_t*, int64_t, const T*, T*);                       \
  template void rope_forward(T*, int64_t, int64_t, int64_t, int64_t, int64_t, const RopeTable&, const int32_t*);  \
  template void rope_backward(T*, int64_t, int64_t, int64_t, int64_t, int64_t, const RopeTable&, const int32_t*); \
  template void swiglu_forward(const T*, const T*, int64_t, T*);                                                   \
  template void swiglu_backward(const T*, const T*, const T*, int64_t, T*, T*);                                    \
  template void softmax_row(T*, int64_t);                                                                          \
  template T dot(const T*, const T*, int64_t);
DSV3_INSTANTIATE(float)
DSV3_INSTANTIATE(double)
#undef DSV3_INSTANTIATE

}  // namespace dsv3
