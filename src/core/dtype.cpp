#include "core/dtype.h"

#include "core/error.h"

namespace dsv3 {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::BF16: return 2;
    case DType::F16: return 2;
    case DType::F8_E4M3: return 1;
    case DType::F64: return 8;
    case DType::I64: return 8;
    case DType::I32: return 4;
  }
  return 0;
}

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
    case DType::F8_E4M3: return "F8_E4M3";
    case DType::F64: return "F64";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
  }
  return "?";
}

bool parse_dtype(std::string_view name, DType* out) {
  static constexpr DType all[] = {DType::F32, DType::BF16, DType::F16, DType::F8_E4M3,
                                  DType::F64, DType::I64,  DType::I32};
  for (DType t : all) {
    if (dtype_name(t) == name) {
      *out = t;
      return true;
    }
  }
  return false;
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t man = h & 0x3ff;
  if (exp == 0) {
    const float v = std::ldexp(float(man), -24);
    return sign ? -v : v;
  }
  if (exp == 31) return bits_to_f32(sign | 0x7f800000u | (man << 13));
  return bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t f32_to_f16(float f) {
  const uint32_t bits = f32_to_bits(f);
  const uint16_t sign = uint16_t((bits >> 16) & 0x8000);
  const float a = std::fabs(f);
  if (std::isnan(f)) return sign | 0x7e00;
  if (a >= 65520.0f) return sign | 0x7c00;  // rounds past the largest finite half
  if (a < 0x1p-14f) {
    // Subnormal: value = m * 2^-24, m rounded to nearest even.
    const float m = std::nearbyint(a * 0x1p24f);
    return sign | uint16_t(m);
  }
  uint32_t abits = bits & 0x7fffffffu;
  abits += 0xfffu + ((abits >> 13) & 1u);  // round the 13 dropped mantissa bits to nearest even
  return sign | uint16_t(((abits >> 23) - 112) << 10 | ((abits >> 13) & 0x3ff));
}

float e4m3_to_f32(uint8_t v) {
  const bool negative = v & 0x80;
  const int exp = (v >> 3) & 0xf;
  const int man = v & 0x7;
  if (exp == 15 && man == 7) return std::nanf("");
  const float magnitude = exp == 0 ? std::ldexp(float(man), -9) : std::ldexp(float(8 + man), exp - 10);
  return negative ? -magnitude : magnitude;
}

// Shared rounding for the two FP8 formats: nearest representable value, ties to even mantissa.
static uint8_t round_to_fp8(float f, int man_bits, int bias, float max_finite, uint8_t nan_code) {
  if (std::isnan(f)) return nan_code;
  const uint8_t sign = std::signbit(f) ? 0x80 : 0x00;
  float a = std::fabs(f);
  if (a >= max_finite) return sign | uint8_t(round_to_fp8(max_finite, man_bits, bias, 2 * max_finite, 0));
  const int min_exp = 1 - bias;  // exponent of the smallest normal
  int e;
  std::frexp(a, &e);  // a = frac * 2^e, frac in [0.5, 1)
  int exp = e - 1;    // a in [2^exp, 2^(exp+1))
  if (exp < min_exp) exp = min_exp;
  const float quantum = std::ldexp(1.0f, exp - man_bits);
  float q = std::nearbyint(a / quantum);  // default rounding mode: ties to even
  // q in [2^man_bits, 2^(man_bits+1)] for normals, [0, 2^(man_bits+1)] at the subnormal exponent.
  if (q >= float(2 << man_bits)) {
    q /= 2;
    exp += 1;
  }
  if (q < float(1 << man_bits)) return sign | uint8_t(q);  // subnormal (or zero)
  const int exp_field = exp + bias;
  return sign | uint8_t((exp_field << man_bits) | (int(q) - (1 << man_bits)));
}

uint8_t f32_to_e4m3(float f) { return round_to_fp8(f, 3, 7, kE4M3Max, 0x7f); }

float e5m2_to_f32(uint8_t v) {
  return f16_to_f32(uint16_t(v) << 8);  // E5M2 is the top byte of an IEEE half
}

uint8_t f32_to_e5m2(float f) { return round_to_fp8(f, 2, 15, kE5M2Max, 0x7f); }

float load_as_f32(const void* data, DType t, size_t i) {
  switch (t) {
    case DType::F32: return static_cast<const float*>(data)[i];
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(data)[i]);
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(data)[i]);
    case DType::F8_E4M3: return e4m3_to_f32(static_cast<const uint8_t*>(data)[i]);
    case DType::F64: return float(static_cast<const double*>(data)[i]);
    default: DSV3_FAIL("[load_as_f32] dtype ", dtype_name(t), " is not a floating-point type");
  }
}

}  // namespace dsv3
