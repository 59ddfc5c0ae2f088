// Vectorized FP8 conversions and fine-grained quantizers (src/ops/fp8.h), bit-exact with the scalar
// definitions in dtype.h and src/ops/reference/fp8_gemm.cpp.
//
// f32 -> FP8 (round to nearest even, saturating; E4M3 shown, E5M2 in brackets):
//   normal results  |x| >= 2^-6 [2^-14]: the f32 bit pattern rounded to 3 [2] mantissa bits by the
//                   integer trick bits + (2^19 - 1) + lsb [2^20 - 1 + lsb], then shifted and re-biased
//                   (f32 bias 127 vs 7 [15]); a carry into the exponent is the correct rounding.
//   subnormals      |x| < 2^-6 [2^-14]: |x| + 2^14 [2^7] in f32, whose ulp is exactly the FP8
//                   quantum 2^-9 [2^-16], so the FPU's own round-to-nearest-even picks the code,
//                   read back as the bit difference from 2^14 [2^7]. (Reaching 8 [4] is the smallest
//                   normal, whose code is also 8 [4].)
//   then saturation (|x| >= 448 [57344], infinities too), the sign, and NaN -> 0x7F.
// FP8 -> f32 is exact: normals by shifting the code into an f32 pattern and re-biasing, subnormals
// as integer × 2^-9 [2^-16]; E4M3 NaN becomes 0x7FC00000, E5M2 infinities/NaNs keep their payload.
//
// AVX-512 (F+BW+VL) and AVX2 versions, both compiled where the build targets AVX-512, and the scalar
// twins; the fp8_convert family's active implementation (ops/kernels.h) picks one per call. Machines
// without AVX-512 can still run the AVX-512 code for testing by compiling with -DDSV3_FP8_SIMDE_AVX512
// and SIMDe's portable intrinsics (libsimde-dev); it is not a dependency of the normal build.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>

#include "core/dtype.h"
#include "core/error.h"
#include "core/parallel.h"
#include "ops/cpu/kernel_lists.h"
#include "ops/fp8.h"
#include "ops/kernels.h"

#if defined(DSV3_FP8_SIMDE_AVX512)
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

#include <cstring>
#define DSV3_FP8_AVX512 1
// SIMDe 0.7 lacks these five; lane-by-lane stand-ins with the instructions' semantics (test builds only).
namespace dsv3::simde_shim {
inline __m512i cvtepu8_epi32(__m128i v) {
  uint8_t in[16];
  int32_t out[16];
  std::memcpy(in, &v, 16);
  for (int i = 0; i < 16; ++i) out[i] = in[i];
  return _mm512_loadu_si512(out);
}
inline __m128i cvtepi32_epi8(__m512i v) {
  int32_t in[16];
  uint8_t out[16];
  std::memcpy(in, &v, 64);
  for (int i = 0; i < 16; ++i) out[i] = uint8_t(in[i]);
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(out));
}
inline __m512 cvtepi32_ps(__m512i v) {
  int32_t in[16];
  float out[16];
  std::memcpy(in, &v, 64);
  for (int i = 0; i < 16; ++i) out[i] = float(in[i]);
  return _mm512_loadu_ps(out);
}
inline float reduce_max_ps(__m512 v) {
  float f[16];
  std::memcpy(f, &v, 64);
  float m = f[0];
  for (int i = 1; i < 16; ++i) m = f[i] > m ? f[i] : m;
  return m;
}
inline __mmask16 cmplt_epi32_mask(__m512i a, __m512i b) { return _mm512_cmpgt_epi32_mask(b, a); }
}  // namespace dsv3::simde_shim
#define _mm512_cvtepu8_epi32 dsv3::simde_shim::cvtepu8_epi32
#define _mm512_cvtepi32_epi8 dsv3::simde_shim::cvtepi32_epi8
#define _mm512_cvtepi32_ps dsv3::simde_shim::cvtepi32_ps
#define _mm512_reduce_max_ps dsv3::simde_shim::reduce_max_ps
#define _mm512_cmplt_epi32_mask dsv3::simde_shim::cmplt_epi32_mask
#define DSV3_FP8_AVX2 1
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define DSV3_FP8_AVX2 1
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define DSV3_FP8_AVX512 1
#endif
#endif

#if defined(DSV3_FP8_AVX512) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
// GCC 12's avx512fintrin.h trips -Wmaybe-uninitialized on its own _mm512_undefined_ps (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace dsv3 {
namespace {

// Per-format constants of the conversion (see the file comment).
template <Fp8Format F>
struct Fp8Traits;
template <>
struct Fp8Traits<Fp8Format::e4m3> {
  static constexpr int kDrop = 20;                       // f32 mantissa bits dropped
  static constexpr int32_t kRebias = 120 << 3;           // (127 - 7) in the code's exponent position
  static constexpr int32_t kMinNormalBits = 0x3C800000;  // 2^-6
  static constexpr int32_t kMagicBits = 0x46800000;      // 2^14: ulp 2^-9
  static constexpr int32_t kMaxBits = 0x43E00000;        // 448
  static constexpr int32_t kMaxCode = 0x7E;
  static constexpr int32_t kSubnormalCodes = 8;  // codes below this are subnormal
  static constexpr float kSubnormalQuantum = 0x1p-9f;
  static uint8_t encode(float x) { return f32_to_e4m3(x); }
  static float decode(uint8_t v) { return e4m3_to_f32(v); }
};
template <>
struct Fp8Traits<Fp8Format::e5m2> {
  static constexpr int kDrop = 21;
  static constexpr int32_t kRebias = 112 << 2;
  static constexpr int32_t kMinNormalBits = 0x38800000;  // 2^-14
  static constexpr int32_t kMagicBits = 0x43000000;      // 2^7: ulp 2^-16
  static constexpr int32_t kMaxBits = 0x47600000;        // 57344
  static constexpr int32_t kMaxCode = 0x7B;
  static constexpr int32_t kSubnormalCodes = 4;
  static constexpr float kSubnormalQuantum = 0x1p-16f;
  static uint8_t encode(float x) { return f32_to_e5m2(x); }
  static float decode(uint8_t v) { return e5m2_to_f32(v); }
};

// How a span is scaled: not at all, by one scale, or by one scale per element (128×1 tiles, where a
// row's consecutive elements belong to different columns).
enum class ScaleMode { none, scalar, vector };

#if defined(DSV3_FP8_AVX512)
struct Avx512Lanes {
  static constexpr int64_t kLanes = 16;

  template <Fp8Format F>
  static __m512i encode_lanes(__m512 x) {
    using T = Fp8Traits<F>;
    const __m512i bits = _mm512_castps_si512(x);
    const __m512i abs = _mm512_and_si512(bits, _mm512_set1_epi32(0x7fffffff));
    const __m512i sign = _mm512_and_si512(_mm512_srli_epi32(bits, 24), _mm512_set1_epi32(0x80));
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(abs, T::kDrop), _mm512_set1_epi32(1));
    const __m512i rounded = _mm512_add_epi32(abs, _mm512_add_epi32(_mm512_set1_epi32((1 << (T::kDrop - 1)) - 1), lsb));
    const __m512i normal = _mm512_sub_epi32(_mm512_srli_epi32(rounded, T::kDrop), _mm512_set1_epi32(T::kRebias));
    const __m512 magic = _mm512_castsi512_ps(_mm512_set1_epi32(T::kMagicBits));
    const __m512i subnormal = _mm512_sub_epi32(_mm512_castps_si512(_mm512_add_ps(_mm512_castsi512_ps(abs), magic)),
                                               _mm512_set1_epi32(T::kMagicBits));
    __m512i code =
        _mm512_mask_blend_epi32(_mm512_cmplt_epi32_mask(abs, _mm512_set1_epi32(T::kMinNormalBits)), normal, subnormal);
    code = _mm512_mask_blend_epi32(_mm512_cmpge_epi32_mask(abs, _mm512_set1_epi32(T::kMaxBits)), code,
                                   _mm512_set1_epi32(T::kMaxCode));
    code = _mm512_or_si512(code, sign);
    return _mm512_mask_blend_epi32(_mm512_cmpgt_epi32_mask(abs, _mm512_set1_epi32(0x7f800000)), code,
                                   _mm512_set1_epi32(0x7f));
  }

  template <Fp8Format F>
  static __m512 decode_lanes(const uint8_t* p) {
    using T = Fp8Traits<F>;
    const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m512i mag = _mm512_and_si512(v, _mm512_set1_epi32(0x7f));
    const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(v, _mm512_set1_epi32(0x80)), 24);
    constexpr int shift = T::kDrop;  // code mantissa lands at f32 bit 23 - mantissa bits = kDrop
    const __m512i normal =
        _mm512_add_epi32(_mm512_slli_epi32(mag, shift), _mm512_set1_epi32((T::kRebias >> (23 - shift)) << 23));
    const __m512 subnormal = _mm512_mul_ps(_mm512_cvtepi32_ps(mag), _mm512_set1_ps(T::kSubnormalQuantum));
    __m512i bits = _mm512_mask_blend_epi32(_mm512_cmplt_epi32_mask(mag, _mm512_set1_epi32(T::kSubnormalCodes)), normal,
                                           _mm512_castps_si512(subnormal));
    if constexpr (F == Fp8Format::e4m3) {
      bits = _mm512_or_si512(bits, sign);
      bits = _mm512_mask_blend_epi32(_mm512_cmpeq_epi32_mask(mag, _mm512_set1_epi32(0x7f)), bits,
                                     _mm512_set1_epi32(0x7fc00000));
    } else {
      const __m512i special = _mm512_or_si512(_mm512_set1_epi32(0x7f800000),
                                              _mm512_slli_epi32(_mm512_and_si512(mag, _mm512_set1_epi32(3)), 21));
      bits = _mm512_mask_blend_epi32(_mm512_cmpge_epi32_mask(mag, _mm512_set1_epi32(0x7c)), bits, special);
      bits = _mm512_or_si512(bits, sign);
    }
    return _mm512_castsi512_ps(bits);
  }

  static void store_codes(__m512i codes, uint8_t* out) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm512_cvtepi32_epi8(codes));
  }
  static __m512 load_lanes(const float* p) { return _mm512_loadu_ps(p); }
  static __m512 div_lanes(__m512 a, __m512 b) { return _mm512_div_ps(a, b); }
  static __m512 mul_lanes(__m512 a, __m512 b) { return _mm512_mul_ps(a, b); }
  static __m512 set1_lanes(float v) { return _mm512_set1_ps(v); }
  static void store_lanes(float* p, __m512 v) { _mm512_storeu_ps(p, v); }
  static __m512 abs_max_lanes(__m512 v, __m512 acc) {
    // max(|v|, acc) with acc returned when v is NaN, as std::max(acc, |v|) does in the reference.
    return _mm512_max_ps(_mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7fffffff))),
                         acc);
  }
  static float reduce_max(__m512 v) { return _mm512_reduce_max_ps(v); }
};
#endif

#if defined(DSV3_FP8_AVX2)
struct Avx2Lanes {
  static constexpr int64_t kLanes = 8;

  template <Fp8Format F>
  static __m256i encode_lanes(__m256 x) {
    using T = Fp8Traits<F>;
    const __m256i bits = _mm256_castps_si256(x);
    const __m256i abs = _mm256_and_si256(bits, _mm256_set1_epi32(0x7fffffff));
    const __m256i sign = _mm256_and_si256(_mm256_srli_epi32(bits, 24), _mm256_set1_epi32(0x80));
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(abs, T::kDrop), _mm256_set1_epi32(1));
    const __m256i rounded = _mm256_add_epi32(abs, _mm256_add_epi32(_mm256_set1_epi32((1 << (T::kDrop - 1)) - 1), lsb));
    const __m256i normal = _mm256_sub_epi32(_mm256_srli_epi32(rounded, T::kDrop), _mm256_set1_epi32(T::kRebias));
    const __m256 magic = _mm256_castsi256_ps(_mm256_set1_epi32(T::kMagicBits));
    const __m256i subnormal = _mm256_sub_epi32(_mm256_castps_si256(_mm256_add_ps(_mm256_castsi256_ps(abs), magic)),
                                               _mm256_set1_epi32(T::kMagicBits));
    // Signed compares are fine: abs <= 0x7fffffff.
    __m256i code = _mm256_blendv_epi8(normal, subnormal, _mm256_cmpgt_epi32(_mm256_set1_epi32(T::kMinNormalBits), abs));
    code = _mm256_blendv_epi8(code, _mm256_set1_epi32(T::kMaxCode),
                              _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(T::kMaxBits - 1)));
    code = _mm256_or_si256(code, sign);
    return _mm256_blendv_epi8(code, _mm256_set1_epi32(0x7f), _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f800000)));
  }

  template <Fp8Format F>
  static __m256 decode_lanes(const uint8_t* p) {
    using T = Fp8Traits<F>;
    const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    const __m256i mag = _mm256_and_si256(v, _mm256_set1_epi32(0x7f));
    const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(v, _mm256_set1_epi32(0x80)), 24);
    constexpr int shift = T::kDrop;  // code mantissa lands at f32 bit 23 - mantissa bits = kDrop
    const __m256i normal =
        _mm256_add_epi32(_mm256_slli_epi32(mag, shift), _mm256_set1_epi32((T::kRebias >> (23 - shift)) << 23));
    const __m256 subnormal = _mm256_mul_ps(_mm256_cvtepi32_ps(mag), _mm256_set1_ps(T::kSubnormalQuantum));
    __m256i bits = _mm256_blendv_epi8(normal, _mm256_castps_si256(subnormal),
                                      _mm256_cmpgt_epi32(_mm256_set1_epi32(T::kSubnormalCodes), mag));
    if constexpr (F == Fp8Format::e4m3) {
      bits = _mm256_or_si256(bits, sign);
      bits = _mm256_blendv_epi8(bits, _mm256_set1_epi32(0x7fc00000), _mm256_cmpeq_epi32(mag, _mm256_set1_epi32(0x7f)));
    } else {
      const __m256i special = _mm256_or_si256(_mm256_set1_epi32(0x7f800000),
                                              _mm256_slli_epi32(_mm256_and_si256(mag, _mm256_set1_epi32(3)), 21));
      bits = _mm256_blendv_epi8(bits, special, _mm256_cmpgt_epi32(mag, _mm256_set1_epi32(0x7b)));
      bits = _mm256_or_si256(bits, sign);
    }
    return _mm256_castsi256_ps(bits);
  }

  static void store_codes(__m256i codes, uint8_t* out) {
    // 8 codes in 32-bit lanes -> 8 bytes: pack to 16 then 8 bits (per 128-bit half), gather the halves.
    const __m256i w = _mm256_packus_epi32(codes, codes);
    const __m256i b = _mm256_packus_epi16(w, w);
    const __m256i joined = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out), _mm256_castsi256_si128(joined));
  }
  static __m256 load_lanes(const float* p) { return _mm256_loadu_ps(p); }
  static __m256 div_lanes(__m256 a, __m256 b) { return _mm256_div_ps(a, b); }
  static __m256 mul_lanes(__m256 a, __m256 b) { return _mm256_mul_ps(a, b); }
  static __m256 set1_lanes(float v) { return _mm256_set1_ps(v); }
  static void store_lanes(float* p, __m256 v) { _mm256_storeu_ps(p, v); }
  static __m256 abs_max_lanes(__m256 v, __m256 acc) {
    // max(|v|, acc) with acc returned when v is NaN, as std::max(acc, |v|) does in the reference.
    return _mm256_max_ps(_mm256_castsi256_ps(_mm256_and_si256(_mm256_castps_si256(v), _mm256_set1_epi32(0x7fffffff))),
                         acc);
  }
  static float reduce_max(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
  }
};
#endif

// No vector loop: the spans below run their scalar tails over everything.
struct ScalarLanes {
  static constexpr int64_t kLanes = 0;
};


// out[i] = fp8(x[i] / scale_i) with scale_i per ScaleMode (`scales` points at element 0's scale).
template <typename L, Fp8Format F, ScaleMode S>
void encode_span(const float* x, int64_t n, const float* scales, uint8_t* out) {
  int64_t i = 0;
  if constexpr (L::kLanes > 0) {
    const auto s1 = L::set1_lanes(S == ScaleMode::scalar ? scales[0] : 1.0f);
    for (; i + L::kLanes <= n; i += L::kLanes) {
      auto v = L::load_lanes(x + i);
      if constexpr (S == ScaleMode::scalar) v = L::div_lanes(v, s1);
      if constexpr (S == ScaleMode::vector) v = L::div_lanes(v, L::load_lanes(scales + i));
      L::store_codes(L::template encode_lanes<F>(v), out + i);
    }
  }
  for (; i < n; ++i) {
    const float s = S == ScaleMode::none ? 1.0f : S == ScaleMode::scalar ? scales[0] : scales[i];
    out[i] = Fp8Traits<F>::encode(S == ScaleMode::none ? x[i] : x[i] / s);
  }
}

// out[i] = value(q[i]) × scale_i.
template <typename L, Fp8Format F, ScaleMode S>
void decode_span(const uint8_t* q, int64_t n, const float* scales, float* out) {
  int64_t i = 0;
  if constexpr (L::kLanes > 0) {
    const auto s1 = L::set1_lanes(S == ScaleMode::scalar ? scales[0] : 1.0f);
    for (; i + L::kLanes <= n; i += L::kLanes) {
      auto v = L::template decode_lanes<F>(q + i);
      if constexpr (S == ScaleMode::scalar) v = L::mul_lanes(v, s1);
      if constexpr (S == ScaleMode::vector) v = L::mul_lanes(v, L::load_lanes(scales + i));
      L::store_lanes(out + i, v);
    }
  }
  for (; i < n; ++i) {
    const float v = Fp8Traits<F>::decode(q[i]);
    out[i] = S == ScaleMode::none ? v : S == ScaleMode::scalar ? v * scales[0] : v * scales[i];
  }
}

// max(amax, |x[i]|) over the span, NaNs ignored (as the reference's std::max(amax, |x|) does).
template <typename L>
float abs_max(const float* x, int64_t n, float amax) {
  int64_t i = 0;
  if constexpr (L::kLanes > 0) {
    if (n >= L::kLanes) {
      auto acc = L::set1_lanes(amax);
      for (; i + L::kLanes <= n; i += L::kLanes) acc = L::abs_max_lanes(L::load_lanes(x + i), acc);
      amax = L::reduce_max(acc);
    }
  }
  for (; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  return amax;
}

// Column-wise running max for 128×1 tiles: colmax[c] = max(colmax[c], |x[c]|).
template <typename L>
void abs_max_columns(const float* x, int64_t n, float* colmax) {
  int64_t i = 0;
  if constexpr (L::kLanes > 0) {
    for (; i + L::kLanes <= n; i += L::kLanes)
      L::store_lanes(colmax + i, L::abs_max_lanes(L::load_lanes(x + i), L::load_lanes(colmax + i)));
  }
  for (; i < n; ++i) colmax[i] = std::max(colmax[i], std::fabs(x[i]));
}

template <typename L, Fp8Format F>
void quantize_impl(const float* x, int64_t rows, int64_t cols, Fp8Tiling tiling, bool pow2, uint8_t* q, float* scales) {
  const int64_t scale_cols = fp8_scale_cols(tiling, cols);
  const int64_t col_tiles = (cols + kFp8Tile - 1) / kFp8Tile;
  const int64_t row_groups = (rows + kFp8Tile - 1) / kFp8Tile;
  switch (tiling) {
    case Fp8Tiling::tile_1x128:
      parallel_for(rows, std::max<int64_t>(1, 32768 / std::max<int64_t>(cols, 1)), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t t = 0; t < col_tiles; ++t) {
            const int64_t c0 = t * kFp8Tile, len = std::min(kFp8Tile, cols - c0);
            const float* src = x + r * cols + c0;
            const float s = fp8_scale(abs_max<L>(src, len, 0.0f), F, pow2);
            scales[r * scale_cols + t] = s;
            encode_span<L, F, ScaleMode::scalar>(src, len, &s, q + r * cols + c0);
          }
      });
      break;
    case Fp8Tiling::block_128x128:
      // One task per block: its amax over up to 128 row segments, then the same segments quantized.
      parallel_for(row_groups * col_tiles, 1, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t g = b / col_tiles, t = b % col_tiles;
          const int64_t r0 = g * kFp8Tile, r1 = std::min(rows, r0 + kFp8Tile);
          const int64_t c0 = t * kFp8Tile, len = std::min(kFp8Tile, cols - c0);
          float amax = 0.0f;
          for (int64_t r = r0; r < r1; ++r) amax = abs_max<L>(x + r * cols + c0, len, amax);
          const float s = fp8_scale(amax, F, pow2);
          scales[g * scale_cols + t] = s;
          for (int64_t r = r0; r < r1; ++r)
            encode_span<L, F, ScaleMode::scalar>(x + r * cols + c0, len, &s, q + r * cols + c0);
        }
      });
      break;
    case Fp8Tiling::tile_128x1:
      // One task per 128 rows × 128 columns: column maxima row by row, then rows with per-column scales.
      parallel_for(row_groups * col_tiles, 1, [&](int64_t b0, int64_t b1) {
        float colmax[kFp8Tile];
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t g = b / col_tiles, t = b % col_tiles;
          const int64_t r0 = g * kFp8Tile, r1 = std::min(rows, r0 + kFp8Tile);
          const int64_t c0 = t * kFp8Tile, len = std::min(kFp8Tile, cols - c0);
          std::fill(colmax, colmax + len, 0.0f);
          for (int64_t r = r0; r < r1; ++r) abs_max_columns<L>(x + r * cols + c0, len, colmax);
          float* s = scales + g * scale_cols + c0;
          for (int64_t c = 0; c < len; ++c) s[c] = fp8_scale(colmax[c], F, pow2);
          for (int64_t r = r0; r < r1; ++r)
            encode_span<L, F, ScaleMode::vector>(x + r * cols + c0, len, s, q + r * cols + c0);
        }
      });
      break;
  }
}

template <typename L, Fp8Format F>
void dequantize_impl(const Fp8Matrix& m, float* x) {
  const int64_t cols = m.cols, scale_cols = fp8_scale_cols(m.tiling, cols);
  parallel_for(m.rows, std::max<int64_t>(1, 32768 / std::max<int64_t>(cols, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* src = m.data + r * cols;
      float* dst = x + r * cols;
      if (m.tiling == Fp8Tiling::tile_128x1) {
        decode_span<L, F, ScaleMode::vector>(src, cols, m.scales + (r / kFp8Tile) * scale_cols, dst);
        continue;
      }
      const float* srow = m.scales + (m.tiling == Fp8Tiling::tile_1x128 ? r : r / kFp8Tile) * scale_cols;
      for (int64_t c0 = 0; c0 < cols; c0 += kFp8Tile)
        decode_span<L, F, ScaleMode::scalar>(src + c0, std::min(kFp8Tile, cols - c0), srow + c0 / kFp8Tile, dst + c0);
    }
  });
}

void check_shape(const char* op, int64_t rows, int64_t cols) {
  DSV3_CHECK(rows >= 0 && cols >= 0, "[", op, "] invalid shape [", rows, ", ", cols, "]");
}

}  // namespace

namespace cpu {
std::vector<std::string> fp8_convert_kernel_list() {
  std::vector<std::string> list;
#if defined(DSV3_FP8_AVX512)
  list.push_back("avx512");
#endif
#if defined(DSV3_FP8_AVX2)
  list.push_back("avx2");
#endif
  list.push_back("scalar");
  return list;
}
}  // namespace cpu

namespace {

// Calls fn(lanes) with the lane type of the fp8_convert family's active implementation.
template <typename Fn>
void with_active_lanes(Fn&& fn) {
  [[maybe_unused]] const std::string& kernel = active_kernel(KernelFamily::fp8_convert);
#if defined(DSV3_FP8_AVX512)
  if (kernel == "avx512") return fn(Avx512Lanes{});
#endif
#if defined(DSV3_FP8_AVX2)
  if (kernel == "avx2") return fn(Avx2Lanes{});
#endif
  fn(ScalarLanes{});
}

// Calls fn(lanes, format_tag) for the active lanes and `format`.
template <typename Fn>
void dispatch(Fp8Format format, Fn&& fn) {
  with_active_lanes([&](auto lanes) {
    if (format == Fp8Format::e4m3)
      fn(lanes, std::integral_constant<Fp8Format, Fp8Format::e4m3>{});
    else
      fn(lanes, std::integral_constant<Fp8Format, Fp8Format::e5m2>{});
  });
}

}  // namespace

void f32_to_fp8(const float* x, int64_t n, Fp8Format format, uint8_t* out) {
  dispatch(format, [&](auto lanes, auto f) { encode_span<decltype(lanes), f(), ScaleMode::none>(x, n, nullptr, out); });
}

void fp8_to_f32(const uint8_t* q, int64_t n, Fp8Format format, float* out) {
  dispatch(format, [&](auto lanes, auto f) { decode_span<decltype(lanes), f(), ScaleMode::none>(q, n, nullptr, out); });
}

void f32_to_fp8_scaled(const float* x, int64_t n, float scale, Fp8Format format, uint8_t* out) {
  dispatch(format,
           [&](auto lanes, auto f) { encode_span<decltype(lanes), f(), ScaleMode::scalar>(x, n, &scale, out); });
}

void fp8_to_f32_scaled(const uint8_t* q, int64_t n, float scale, Fp8Format format, float* out) {
  dispatch(format,
           [&](auto lanes, auto f) { decode_span<decltype(lanes), f(), ScaleMode::scalar>(q, n, &scale, out); });
}

void quantize_fp8(const float* x, int64_t rows, int64_t cols, Fp8Format format, Fp8Tiling tiling, bool pow2_scales,
                  uint8_t* q, float* scales) {
  check_shape("quantize_fp8", rows, cols);
  dispatch(format, [&](auto lanes, auto f) {
    quantize_impl<decltype(lanes), f()>(x, rows, cols, tiling, pow2_scales, q, scales);
  });
}

void dequantize_fp8(const Fp8Matrix& m, float* x) {
  check_shape("dequantize_fp8", m.rows, m.cols);
  dispatch(m.format, [&](auto lanes, auto f) { dequantize_impl<decltype(lanes), f()>(m, x); });
}

Fp8Matrix transpose_fp8(const Fp8Matrix& m, uint8_t* q_t, float* scales_t) {
  check_shape("transpose_fp8", m.rows, m.cols);
  // Codes in 64×64 blocks (cache-friendly both ways), then the scale grid.
  constexpr int64_t kBlock = 64;
  for (int64_t r0 = 0; r0 < m.rows; r0 += kBlock)
    for (int64_t c0 = 0; c0 < m.cols; c0 += kBlock)
      for (int64_t r = r0; r < std::min(m.rows, r0 + kBlock); ++r)
        for (int64_t c = c0; c < std::min(m.cols, c0 + kBlock); ++c) q_t[c * m.rows + r] = m.data[r * m.cols + c];
  const int64_t sr = fp8_scale_rows(m.tiling, m.rows), sc = fp8_scale_cols(m.tiling, m.cols);
  for (int64_t i = 0; i < sr; ++i)
    for (int64_t j = 0; j < sc; ++j) scales_t[j * sr + i] = m.scales[i * sc + j];
  Fp8Matrix t;
  t.data = q_t;
  t.scales = scales_t;
  t.rows = m.cols;
  t.cols = m.rows;
  t.format = m.format;
  t.tiling = m.tiling == Fp8Tiling::tile_1x128   ? Fp8Tiling::tile_128x1
             : m.tiling == Fp8Tiling::tile_128x1 ? Fp8Tiling::tile_1x128
                                                 : Fp8Tiling::block_128x128;
  return t;
}

}  // namespace dsv3
