#include "train/mlp_train.h"

#include "core/profiler.h"
#include "core/parallel.h"

namespace dsv3 {

namespace {
template <typename T>
void scale_rows(T* x, int64_t rows, int64_t cols, const T* scale) {
  parallel_for(rows, 16, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r)
      for (int64_t i = 0; i < cols; ++i) x[r * cols + i] *= scale[r];
  });
}
}  // namespace

template <typename T>
void mlp_forward(const MlpParams<T>& w, const T* x, int64_t n, int64_t hidden, const T* row_scale, MlpSaved<T> saved,
                 Workspace<T>& ws, T* out) {
  DSV3_ZONE("mlp.forward");
  if (n == 0) return;
  typename Workspace<T>::Scope scope(ws);
  const int64_t inter = w.inter;
  linear_forward(ws, x, w.gate_proj, n, hidden, inter, saved.gate);
  linear_forward(ws, x, w.up_proj, n, hidden, inter, saved.up);
  T* h = ws.take(n * inter);
  swiglu_forward(saved.gate, saved.up, n * inter, h);
  if (row_scale) scale_rows(h, n, inter, row_scale);  // s·down(h) = down(s·h)
  linear_forward(ws, h, w.down_proj, n, inter, hidden, out);
}

template <typename T>
void mlp_backward(const MlpParams<T>& w, const MlpParams<T>& dw, const T* x, int64_t n, int64_t hidden,
                  const T* row_scale, const MlpSaved<T>& saved, const T* dout, Workspace<T>& ws, T* dx,
                  T* d_row_scale) {
  DSV3_ZONE("mlp.backward");
  if (n == 0) return;
  typename Workspace<T>::Scope scope(ws);
  const int64_t inter = w.inter;
  T* h = ws.take(n * inter);   // recomputed SwiGLU output
  T* dh = ws.take(n * inter);  // dout · W_down (before the row scale)
  swiglu_forward(saved.gate, saved.up, n * inter, h);
  linear_dgrad(ws, dout, w.down_proj, n, inter, hidden, dh, /*accumulate=*/false);
  if (row_scale) {
    if (d_row_scale) {
      parallel_for(n, 16, [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) d_row_scale[r] = dot(dh + r * inter, h + r * inter, inter);
      });
    }
    scale_rows(h, n, inter, row_scale);   // dW_down += doutᵀ·(s ⊙ h)
    scale_rows(dh, n, inter, row_scale);  // dh = s ⊙ (dout · W_down)
  }
  linear_wgrad(ws, h, dout, n, inter, hidden, dw.down_proj);
  T* dgate = h;  // h is no longer needed
  swiglu_backward(saved.gate, saved.up, dh, n * inter, dgate, dh);  // dh becomes d(up)
  linear_backward(ws, x, w.gate_proj, dgate, n, hidden, inter, dx, dw.gate_proj);
  linear_backward(ws, x, w.up_proj, dh, n, hidden, inter, dx, dw.up_proj);
}

#define DSV3_INSTANTIATE(T)                                                                                     \
  template void mlp_forward(const MlpParams<T>&, const T*, int64_t, int64_t, const T*, MlpSaved<T>,             \
                            Workspace<T>&, T*);                                                                 \
  template void mlp_backward(const MlpParams<T>&, const MlpParams<T>&, const T*, int64_t, int64_t, const T*,    \
                             const MlpSaved<T>&, const T*, Workspace<T>&, T*, T*);
DSV3_INSTANTIATE(float)
DSV3_INSTANTIATE(double)
#undef DSV3_INSTANTIATE

}  // namespace dsv3
