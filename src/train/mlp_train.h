// SwiGLU MLP forward/backward for training (SPEC.md §1): out_r = s_r · down(silu(gate x_r) ⊙ up x_r),
// with an optional per-row scale s_r — the routing weight when the MLP is a routed expert (1 for dense
// MLPs and shared experts). Its gradient ds_r = dout_r · down(h_r) is what reaches the router.
//
// Stored for backward: the SwiGLU inputs gate·x and up·x ([n, inter] each). The SwiGLU output h is
// recomputed in backward (as DeepSeek does, TR §3.3), and the input x is the caller's (recomputed
// RMSNorm output or gathered expert rows).
#pragma once

#include <cstdint>

#include "train/train_model.h"
#include "train/train_ops.h"

namespace dsv3 {

template <typename T>
struct MlpSaved {
  T* gate = nullptr;  // [n, inter] gate_proj · x
  T* up = nullptr;    // [n, inter] up_proj · x
};

// x: [n, H] -> out: [n, H] (written). row_scale: [n] or null.
template <typename T>
void mlp_forward(const MlpParams<T>& w, const T* x, int64_t n, int64_t hidden, const T* row_scale, MlpSaved<T> saved,
                 Workspace<T>& ws, T* out);

// dx [n, H] += ∂/∂x (dx may be null), dw += parameter gradients, d_row_scale [n] written (when row_scale is
// given and d_row_scale is not null).
template <typename T>
void mlp_backward(const MlpParams<T>& w, const MlpParams<T>& dw, const T* x, int64_t n, int64_t hidden,
                  const T* row_scale, const MlpSaved<T>& saved, const T* dout, Workspace<T>& ws, T* dx,
                  T* d_row_scale);

}  // namespace dsv3
