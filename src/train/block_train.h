// One decoder block for training (model/transformer.h): the main layers and the MTP modules' blocks.
//   x_mid = x_in + MLA(input_layernorm(x_in));  x_out = x_mid + FFN(post_attention_layernorm(x_mid))
// with FFN the dense SwiGLU MLP or DeepSeekMoE.
//
// Stored for backward: x_mid (x_in is the previous block's output, stored by the caller), the
// attention's MlaSaved and the FFN's MlpSaved / MoeSaved. Both RMSNorm outputs are recomputed.
#pragma once

#include <cstdint>

#include "model/config.h"
#include "train/mla_train.h"
#include "train/mlp_train.h"
#include "train/moe_train.h"
#include "train/train_model.h"

namespace dsv3 {

template <typename T>
struct BlockSaved {
  T* x_mid = nullptr;  // [rows, H]
  MlaSaved<T> attn;
  MlpSaved<T> mlp;  // dense blocks
  MoeSaved<T> moe;  // MoE blocks
};

// x_in -> x_out ([rows, H] each, x_out written). Returns the MoE balance loss (0 for dense blocks).
template <typename T>
double block_forward(const ModelConfig& config, const BlockParams<T>& w, const AttentionContext& ctx,
                     const MoeOptions& moe, const T* x_in, BlockSaved<T> saved, Workspace<T>& ws, T* x_out);

// dx: [rows, H], on entry dL/dx_out, on return dL/dx_in (updated in place). dw += parameter gradients.
template <typename T>
void block_backward(const ModelConfig& config, const BlockParams<T>& w, const BlockParams<T>& dw,
                    const AttentionContext& ctx, const MoeOptions& moe, const T* x_in, const BlockSaved<T>& saved,
                    Workspace<T>& ws, T* dx);

}  // namespace dsv3
