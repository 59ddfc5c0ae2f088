#include "train/fp8_linear.h"

#include <algorithm>

#include "core/error.h"
#include "core/parallel.h"
#include "core/profiler.h"

namespace dsv3 {

void Fp8Weights::refresh(const TrainParams<float>& params, bool pow2_scales) {
  DSV3_ZONE("fp8.quantize_weights");
  const ParamLayout& layout = params.layout();
  if (base_ != params.data() || weights_.empty()) {  // (re)build the index for this arena
    base_ = params.data();
    offsets_.clear();
    weights_.clear();
    int64_t codes = 0, scales = 0;
    std::vector<const ParamInfo*> infos;
    for (const ParamInfo& p : layout.tensors)
      if (p.role == TensorRole::linear && !p.alias && p.shape.size() == 2) infos.push_back(&p);
    std::sort(infos.begin(), infos.end(), [](const ParamInfo* a, const ParamInfo* b) { return a->offset < b->offset; });
    for (const ParamInfo* p : infos) {
      codes += p->numel;
      scales += fp8_scale_rows(Fp8Tiling::block_128x128, p->shape[0]) * fp8_scale_cols(Fp8Tiling::block_128x128, p->shape[1]);
    }
    codes_.assign(size_t(codes), 0);
    decoded_.assign(size_t(codes), 0);
    scales_.assign(size_t(scales), 0.0f);
    int64_t c = 0, s = 0;
    for (const ParamInfo* p : infos) {
      Weight w;
      w.matrix.data = codes_.data() + c;
      w.matrix.scales = scales_.data() + s;
      w.matrix.rows = p->shape[0];
      w.matrix.cols = p->shape[1];
      w.matrix.format = Fp8Format::e4m3;
      w.matrix.tiling = Fp8Tiling::block_128x128;
      w.bf16 = decoded_.data() + c;
      offsets_.push_back(p->offset);
      weights_.push_back(w);
      c += p->numel;
      s += fp8_scale_rows(Fp8Tiling::block_128x128, p->shape[0]) * fp8_scale_cols(Fp8Tiling::block_128x128, p->shape[1]);
    }
  }
  for (size_t i = 0; i < weights_.size(); ++i) {
    const Weight& w = weights_[i];
    quantize_fp8(base_ + offsets_[i], w.matrix.rows, w.matrix.cols, Fp8Format::e4m3, Fp8Tiling::block_128x128,
                 pow2_scales, const_cast<uint8_t*>(w.matrix.data), const_cast<float*>(w.matrix.scales));
  }
  fp8_to_bf16(codes_.data(), int64_t(codes_.size()), Fp8Format::e4m3, decoded_.data());
}

const Fp8Weights::Weight* Fp8Weights::find(const float* w) const {
  if (!base_ || w < base_) return nullptr;
  const int64_t offset = w - base_;
  auto it = std::lower_bound(offsets_.begin(), offsets_.end(), offset);
  if (it == offsets_.end() || *it != offset) return nullptr;
  return &weights_[size_t(it - offsets_.begin())];
}

namespace {

uint8_t* take_codes(Workspace<float>& ws, int64_t n) { return reinterpret_cast<uint8_t*>(ws.take((n + 3) / 4)); }

// x [rows, cols] quantized with `tiling` into ws.
Fp8Matrix quantize_into(Workspace<float>& ws, const float* x, int64_t rows, int64_t cols, Fp8Tiling tiling) {
  Fp8Matrix m;
  m.rows = rows;
  m.cols = cols;
  m.format = Fp8Format::e4m3;
  m.tiling = tiling;
  uint8_t* q = take_codes(ws, rows * cols);
  float* s = ws.take(fp8_scale_rows(tiling, rows) * fp8_scale_cols(tiling, cols));
  quantize_fp8(x, rows, cols, Fp8Format::e4m3, tiling, false, q, s);
  m.data = q;
  m.scales = s;
  return m;
}

// The step's FP8 copy of W [out, in], or one made now (weights outside the parameter arena).
Fp8Weights::Weight weight_of(Workspace<float>& ws, const float* w, int64_t out, int64_t in) {
  if (const Fp8Weights* weights = ws.fp8_weights())
    if (const Fp8Weights::Weight* found = weights->find(w)) {
      DSV3_CHECK(found->matrix.rows == out && found->matrix.cols == in, "[train] FP8 weight is [",
                 found->matrix.rows, ", ", found->matrix.cols, "], the layer expects [", out, ", ", in, "]");
      return *found;
    }
  Fp8Weights::Weight made;
  made.matrix = quantize_into(ws, w, out, in, Fp8Tiling::block_128x128);
  return made;
}

}  // namespace

void fp8_linear_forward(Workspace<float>& ws, const float* x, const float* w, int64_t n, int64_t in, int64_t out,
                        float* y) {
  typename Workspace<float>::Scope scope(ws);
  const Fp8Matrix xq = quantize_into(ws, x, n, in, Fp8Tiling::tile_1x128);
  const Fp8Weights::Weight wq = weight_of(ws, w, out, in);
  fp8_gemm_by_runs(Fp8Operand{xq, false}, Fp8Operand{wq.matrix, false}, y, {}, nullptr, wq.bf16);
}

void fp8_linear_dgrad(Workspace<float>& ws, const float* dy, const float* w, int64_t n, int64_t in, int64_t out,
                      float* dx, bool accumulate) {
  typename Workspace<float>::Scope scope(ws);
  const Fp8Matrix gq = quantize_into(ws, dy, n, out, Fp8Tiling::tile_1x128);
  const Fp8Weights::Weight wq = weight_of(ws, w, out, in);
  Fp8GemmOptions options;
  options.accumulate = accumulate;
  fp8_gemm_by_runs(Fp8Operand{gq, false}, Fp8Operand{wq.matrix, true}, dx, options, nullptr, wq.bf16);
}

void fp8_linear_wgrad(Workspace<float>& ws, const float* x, const float* dy, int64_t n, int64_t in, int64_t out,
                      float* dw) {
  typename Workspace<float>::Scope scope(ws);
  const Fp8Matrix gq = quantize_into(ws, dy, n, out, Fp8Tiling::tile_128x1);
  // x as the backward pass sees it: the forward's 1×128 FP8 values, re-tiled 128×1.
  const Fp8Matrix x_forward = quantize_into(ws, x, n, in, Fp8Tiling::tile_1x128);
  float* x_cached = ws.take(n * in);
  dequantize_fp8(x_forward, x_cached);
  const Fp8Matrix xq = quantize_into(ws, x_cached, n, in, Fp8Tiling::tile_128x1);
  Fp8GemmOptions options;
  options.accumulate = true;
  fp8_gemm_by_runs(Fp8Operand{gq, true}, Fp8Operand{xq, true}, dw, options);
}

}  // namespace dsv3
