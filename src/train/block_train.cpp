#include "train/block_train.h"

#include <algorithm>

#include "core/profiler.h"
#include "core/parallel.h"

namespace dsv3 {

namespace {
template <typename T>
void add(const T* a, const T* b, int64_t n, T* out) {
  parallel_for(n, 1 << 14, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) out[i] = a[i] + b[i];
  });
}
}  // namespace

template <typename T>
double block_forward(const ModelConfig& c, const BlockParams<T>& w, const AttentionContext& ctx, const MoeOptions& moe,
                     const T* x_in, BlockSaved<T> saved, Workspace<T>& ws, T* x_out) {
  DSV3_ZONE("block.forward");
  const int64_t n = ctx.shape.rows(), H = c.hidden_size;
  typename Workspace<T>::Scope scope(ws);
  T* normed = ws.take(n * H);
  T* branch = ws.take(n * H);
  rmsnorm_forward(x_in, H, w.input_layernorm, n, H, c.rms_norm_eps, normed, H);
  mla_forward(c, w.attn, ctx, normed, saved.attn, ws, branch);
  add(x_in, branch, n * H, saved.x_mid);

  rmsnorm_forward(saved.x_mid, H, w.post_attention_layernorm, n, H, c.rms_norm_eps, normed, H);
  double balance = 0;
  if (w.is_moe)
    balance = moe_forward(c, w.moe, ctx.shape, moe, normed, saved.moe, ws, branch);
  else
    mlp_forward(w.mlp, normed, n, H, static_cast<const T*>(nullptr), saved.mlp, ws, branch);
  add(saved.x_mid, branch, n * H, x_out);
  return balance;
}

template <typename T>
void block_backward(const ModelConfig& c, const BlockParams<T>& w, const BlockParams<T>& dw,
                    const AttentionContext& ctx, const MoeOptions& moe, const T* x_in, const BlockSaved<T>& saved,
                    Workspace<T>& ws, T* dx) {
  DSV3_ZONE("block.backward");
  const int64_t n = ctx.shape.rows(), H = c.hidden_size;
  typename Workspace<T>::Scope scope(ws);
  T* normed = ws.take(n * H);
  T* dnormed = ws.take(n * H);

  // FFN branch: dx (= dL/dx_out) flows to the branch and, through the norm, back into dx.
  rmsnorm_forward(saved.x_mid, H, w.post_attention_layernorm, n, H, c.rms_norm_eps, normed, H);
  std::fill(dnormed, dnormed + n * H, T(0));
  if (w.is_moe)
    moe_backward(c, w.moe, dw.moe, ctx.shape, moe, normed, saved.moe, dx, ws, dnormed);
  else
    mlp_backward(w.mlp, dw.mlp, normed, n, H, static_cast<const T*>(nullptr), saved.mlp, dx, ws, dnormed,
                 static_cast<T*>(nullptr));
  rmsnorm_backward(saved.x_mid, H, w.post_attention_layernorm, dnormed, H, n, H, c.rms_norm_eps, dx, H,
                   dw.post_attention_layernorm);

  // Attention branch: dx is now dL/dx_mid.
  rmsnorm_forward(x_in, H, w.input_layernorm, n, H, c.rms_norm_eps, normed, H);
  std::fill(dnormed, dnormed + n * H, T(0));
  mla_backward(c, w.attn, dw.attn, ctx, normed, saved.attn, dx, ws, dnormed);
  rmsnorm_backward(x_in, H, w.input_layernorm, dnormed, H, n, H, c.rms_norm_eps, dx, H, dw.input_layernorm);
}

#define DSV3_INSTANTIATE(T)                                                                                       \
  template double block_forward(const ModelConfig&, const BlockParams<T>&, const AttentionContext&,               \
                                const MoeOptions&, const T*, BlockSaved<T>, Workspace<T>&, T*);                   \
  template void block_backward(const ModelConfig&, const BlockParams<T>&, const BlockParams<T>&,                  \
                               const AttentionContext&, const MoeOptions&, const T*, const BlockSaved<T>&,        \
                               Workspace<T>&, T*);
DSV3_INSTANTIATE(float)
DSV3_INSTANTIATE(double)
#undef DSV3_INSTANTIATE

}  // namespace dsv3
