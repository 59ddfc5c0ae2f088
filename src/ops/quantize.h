// DeepSeek's FP8 (E4M3) quantization with fine-grained scales (SPEC.md §3) and its inverse.
// Scalar reference definitions; fast versions elsewhere are tested against these.
//
// Weights: one scale per block×block tile (128×128 in DeepSeek's checkpoints; edge tiles partial),
// stored row-major as scale_inv[ceil(rows/block), ceil(cols/block)]. Activations: one scale per
// 1×128 tile (per row, per 128 columns). In both, dequantized value = e4m3 value × scale, which is
// why the checkpoints call the scale "weight_scale_inv" (it inverts the quantization's 1/scale).
#pragma once

#include <cstdint>

namespace dsv3 {

// Scale of a tile with absolute maximum `amax`, following DeepSeek's convention (DeepGEMM's
// per_block_cast_to_fp8 / per_token_cast_to_fp8): s = max(amax, 1e-4) / 448. The 1e-4 floor keeps
// all-zero tiles finite (they quantize to zeros with a tiny scale, never NaN). With pow2 (the
// "ue8m0" scale format of DeepSeek-V3.1) s is rounded up to 2^ceil(log2 s), so |w/s| <= 448 still.
inline constexpr float kFp8AmaxFloor = 1e-4f;
float fp8_scale_for_amax(float amax, bool pow2_scales);

// w: [rows, cols] f32. q: [rows, cols] E4M3 codes. scale_inv: [ceil(rows/block), ceil(cols/block)].
// q = e4m3(w / s), rounded to nearest even (exactly representable products need no tie-breaking;
// division rather than multiplication by 1/s keeps the reference exact when s is a power of two).
void quantize_fp8_blocks(const float* w, int64_t rows, int64_t cols, int64_t block, bool pow2_scales, uint8_t* q,
                         float* scale_inv);
// w[r, c] = e4m3_to_f32(q[r, c]) * scale_inv[r / block, c / block].
void dequantize_fp8_blocks(const uint8_t* q, const float* scale_inv, int64_t rows, int64_t cols, int64_t block,
                           float* w);

// Activations: x [rows, cols] -> q [rows, cols], scales [rows, ceil(cols/128)] (1×128 tiles).
inline constexpr int64_t kActivationTile = 128;
void quantize_fp8_tiles_1x128(const float* x, int64_t rows, int64_t cols, bool pow2_scales, uint8_t* q, float* scales);
void dequantize_fp8_tiles_1x128(const uint8_t* q, const float* scales, int64_t rows, int64_t cols, float* x);

}  // namespace dsv3
