#include "ops/linear.h"

#include <vector>

#include "core/error.h"
#include "ops/quantize.h"

namespace dsv3 {

float LinearWeight::at(int64_t r, int64_t c) const {
  const size_t i = size_t(r * cols + c);
  const float v = load_as_f32(data, dtype, i);
  if (dtype != DType::F8_E4M3) return v;
  return v * scale_inv[(r / block) * scale_cols() + c / block];
}

size_t LinearWeight::weight_bytes() const {
  size_t bytes = size_t(rows * cols) * dtype_size(dtype);
  if (dtype == DType::F8_E4M3) bytes += size_t((rows + block - 1) / block * scale_cols()) * sizeof(float);
  return bytes;
}

namespace reference {

void linear(const LinearWeight& w, const float* x, float* y, int64_t n_tokens, Precision precision) {
  DSV3_CHECK(w.dtype != DType::F8_E4M3 || w.scale_inv != nullptr,
             "[linear] FP8 weight [", w.rows, ", ", w.cols, "] has no scale_inv");
  std::vector<float> dynamic;  // x through its FP8 1×128 tiles (Precision::fp8 with FP8 weights)
  if (precision == Precision::fp8) {
    if (w.dtype == DType::F8_E4M3) {
      dynamic.resize(size_t(n_tokens * w.cols));
      std::vector<uint8_t> q(dynamic.size());
      std::vector<float> scales(size_t(n_tokens * ((w.cols + 127) / 128)));
      quantize_fp8_tiles_1x128(x, n_tokens, w.cols, false, q.data(), scales.data());
      dequantize_fp8_tiles_1x128(q.data(), scales.data(), n_tokens, w.cols, dynamic.data());
      x = dynamic.data();
      precision = Precision::f32;
    } else {
      precision = Precision::bf16;
    }
  }
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = x + t * w.cols;
    for (int64_t r = 0; r < w.rows; ++r) {
      double sum = 0;
      for (int64_t c = 0; c < w.cols; ++c) {
        const float a = precision == Precision::bf16 ? bf16_to_f32(f32_to_bf16(xt[c])) : xt[c];
        sum += double(a) * double(w.at(r, c));
      }
      y[t * w.rows + r] = float(sum);
    }
  }
}

}  // namespace reference
}  // namespace dsv3
