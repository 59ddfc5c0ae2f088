#include "ops/quantize.h"

#include <algorithm>
#include <cmath>

#include "core/dtype.h"
#include "core/error.h"

namespace dsv3 {

float fp8_scale_for_amax(float amax, bool pow2_scales) {
  // NaN amax propagates (a NaN weight is a caller bug the dequantized result will show).
  const float s = std::max(amax, kFp8AmaxFloor) / kE4M3Max;
  if (!pow2_scales) return s;
  int e;
  const float frac = std::frexp(s, &e);  // s = frac * 2^e, frac in [0.5, 1)
  // 2^ceil(log2 s): s itself when s is a power of two (frac == 0.5), else the next one up.
  return frac == 0.5f ? s : std::ldexp(1.0f, e);
}

namespace {

// Quantizes the tile [r0, r1) × [c0, c1) of a row-major matrix with `ld` columns; returns its scale.
float quantize_tile(const float* w, int64_t ld, int64_t r0, int64_t r1, int64_t c0, int64_t c1, bool pow2_scales,
                    uint8_t* q) {
  float amax = 0.0f;
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(w[r * ld + c]));
  const float s = fp8_scale_for_amax(amax, pow2_scales);
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t c = c0; c < c1; ++c) q[r * ld + c] = f32_to_e4m3(w[r * ld + c] / s);
  return s;
}

void check_dims(const char* op, int64_t rows, int64_t cols, int64_t block) {
  DSV3_CHECK(rows >= 0 && cols >= 0 && block > 0, "[", op, "] invalid shape [", rows, ", ", cols, "] or block ", block);
}

}  // namespace

void quantize_fp8_blocks(const float* w, int64_t rows, int64_t cols, int64_t block, bool pow2_scales, uint8_t* q,
                         float* scale_inv) {
  check_dims("quantize_fp8_blocks", rows, cols, block);
  const int64_t scale_cols = (cols + block - 1) / block;
  for (int64_t br = 0; br * block < rows; ++br)
    for (int64_t bc = 0; bc < scale_cols; ++bc)
      scale_inv[br * scale_cols + bc] = quantize_tile(w, cols, br * block, std::min(rows, (br + 1) * block), bc * block,
                                                      std::min(cols, (bc + 1) * block), pow2_scales, q);
}

void dequantize_fp8_blocks(const uint8_t* q, const float* scale_inv, int64_t rows, int64_t cols, int64_t block,
                           float* w) {
  check_dims("dequantize_fp8_blocks", rows, cols, block);
  const int64_t scale_cols = (cols + block - 1) / block;
  for (int64_t r = 0; r < rows; ++r) {
    const float* srow = scale_inv + (r / block) * scale_cols;
    for (int64_t c = 0; c < cols; ++c) w[r * cols + c] = e4m3_to_f32(q[r * cols + c]) * srow[c / block];
  }
}

void quantize_fp8_tiles_1x128(const float* x, int64_t rows, int64_t cols, bool pow2_scales, uint8_t* q, float* scales) {
  check_dims("quantize_fp8_tiles_1x128", rows, cols, kActivationTile);
  const int64_t tiles = (cols + kActivationTile - 1) / kActivationTile;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t t = 0; t < tiles; ++t)
      scales[r * tiles + t] = quantize_tile(x, cols, r, r + 1, t * kActivationTile,
                                            std::min(cols, (t + 1) * kActivationTile), pow2_scales, q);
}

void dequantize_fp8_tiles_1x128(const uint8_t* q, const float* scales, int64_t rows, int64_t cols, float* x) {
  check_dims("dequantize_fp8_tiles_1x128", rows, cols, kActivationTile);
  const int64_t tiles = (cols + kActivationTile - 1) / kActivationTile;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      x[r * cols + c] = e4m3_to_f32(q[r * cols + c]) * scales[r * tiles + c / kActivationTile];
}

}  // namespace dsv3
