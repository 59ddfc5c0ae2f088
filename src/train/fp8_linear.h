// FP8 linear layers for training, as DeepSeek-V3 trains them (SPEC.md §3; TR §3.3): the three GEMMs
// of every projection in MLA, the MLPs, the experts and MTP's eh_proj take E4M3 operands with
// fine-grained scales and accumulate in FP32 with promotion every 128 products (ops/fp8.h):
//   Fprop  y  = x · Wᵀ    x per 1×128 tile (token, 128 channels), W per 128×128 block
//   Dgrad  dx = dy · W    dy per 1×128 tile, the same W blocks read transposed
//   Wgrad  dW = dyᵀ · x   dy and x per 128×1 tile (128 tokens of one channel)
// Wgrad's x is what DeepSeek caches for the backward pass: the forward's 1×128 FP8 tiles, turned into
// 128×1 tiles, so it is quantized twice (1×128, then 128×1 of those values) as there. This engine keeps
// the f32 activation and re-derives the FP8 one: the numerics of the FP8 cache, not its memory saving.
// The weights are quantized once per step from the FP32 master weights (Fp8Weights).
#pragma once

#include <cstdint>
#include <vector>

#include "ops/fp8.h"
#include "train/train_model.h"
#include "train/train_ops.h"

namespace dsv3 {

// The step's FP8 copies of the projection weights (TensorRole::linear): 128×128 E4M3 blocks, and their
// codes decoded to bf16 for the bf16-matmul GEMM.
class Fp8Weights {
 public:
  struct Weight {
    Fp8Matrix matrix;             // [out, in], block_128x128
    const uint16_t* bf16 = nullptr;  // the codes' exact bf16 values, same layout
  };
  // Quantizes every projection weight of params (threaded). pow2: ue8m0 scales.
  void refresh(const TrainParams<float>& params, bool pow2_scales = false);
  // The quantized weight whose FP32 master starts at w; null when w is not one.
  const Weight* find(const float* w) const;

 private:
  const float* base_ = nullptr;
  std::vector<int64_t> offsets_;  // arena offsets of the weights, ascending
  std::vector<Weight> weights_;
  std::vector<uint8_t> codes_;
  std::vector<float> scales_;
  std::vector<uint16_t> decoded_;
};

// The FP8 GEMMs of a linear layer (train_ops.h semantics: y written, dx added when accumulate else
// written, dW added). A weight without an entry in ws's Fp8Weights is quantized on the spot.
void fp8_linear_forward(Workspace<float>& ws, const float* x, const float* w, int64_t n, int64_t in, int64_t out,
                        float* y);
void fp8_linear_dgrad(Workspace<float>& ws, const float* dy, const float* w, int64_t n, int64_t in, int64_t out,
                      float* dx, bool accumulate);
void fp8_linear_wgrad(Workspace<float>& ws, const float* x, const float* dy, int64_t n, int64_t in, int64_t out,
                      float* dw);

}  // namespace dsv3
