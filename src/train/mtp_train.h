// The input of multi-token-prediction module k for training (model/mtp.h documents the semantics and
// the engines it follows): h' = eh_proj([enorm(emb); hnorm(h)]), emb = Emb(t_{i+1+k}) and h the
// previous depth's hidden state (the main model's final-norm output for k = 0). The block, the
// shared_head.norm and the shared head that follow are the ordinary training modules.
// Stored: nothing (emb is re-gathered, h is the caller's, the normed concatenation is recomputed).
#pragma once

#include <cstdint>

#include "model/config.h"
#include "train/train_model.h"
#include "train/train_ops.h"

namespace dsv3 {

// emb, h: [rows, H] -> out [rows, H] (written).
template <typename T>
void mtp_input_forward(const ModelConfig& config, const MtpParams<T>& w, const T* emb, const T* h, int64_t rows,
                       Workspace<T>& ws, T* out);

// demb, dh [rows, H] += ∂/∂emb, ∂/∂h; dw.enorm, dw.hnorm, dw.eh_proj += parameter gradients.
template <typename T>
void mtp_input_backward(const ModelConfig& config, const MtpParams<T>& w, const MtpParams<T>& dw, const T* emb,
                        const T* h, int64_t rows, const T* dout, Workspace<T>& ws, T* demb, T* dh);

}  // namespace dsv3
