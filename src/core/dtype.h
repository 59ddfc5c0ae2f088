// Element types found in DeepSeek checkpoints and the scalar conversions between them.
// The vectorized conversions live in src/ops/cpu; these are the reference definitions.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace dsv3 {

enum class DType : uint8_t { F32, BF16, F16, F8_E4M3, F64, I64, I32 };

size_t dtype_size(DType t);
// safetensors spelling: "F32", "BF16", "F16", "F8_E4M3", "F64", "I64", "I32".
std::string_view dtype_name(DType t);
// Returns false for a name dsv3 does not read.
bool parse_dtype(std::string_view name, DType* out);

inline float bits_to_f32(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
inline uint32_t f32_to_bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return bits;
}

// bfloat16: the top half of an IEEE float32.
inline float bf16_to_f32(uint16_t h) { return bits_to_f32(uint32_t(h) << 16); }
// Round to nearest even; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits = f32_to_bits(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);  // round to nearest even, overflow to infinity

// FP8 E4M3 as OCP "fn" defines it (SPEC.md §3): bias 7, no infinities, max finite 448,
// 0x7F and 0xFF are NaN, subnormals 2^-6 * m/8.
inline constexpr float kE4M3Max = 448.0f;
float e4m3_to_f32(uint8_t v);
// Round to nearest even with saturation to ±448 (DeepSeek's quantizer clamps before casting); NaN -> 0x7F.
uint8_t f32_to_e4m3(float f);

// FP8 E5M2: bias 15, IEEE-like with infinities, max finite 57344.
inline constexpr float kE5M2Max = 57344.0f;
float e5m2_to_f32(uint8_t v);
uint8_t f32_to_e5m2(float f);  // round to nearest even, saturating to ±57344

// Reads element i of a buffer of dtype t as float (F32/BF16/F16/F8_E4M3/F64). FP8 values are unscaled.
float load_as_f32(const void* data, DType t, size_t i);

}  // namespace dsv3
