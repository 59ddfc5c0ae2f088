// Internal to the AVX-512 kernel files (gemv_avx512.cpp, gemv_avx512_bf16.cpp), which are compiled with
// AVX-512 flags: helpers with internal linkage (static), so each such file has its own copy and no
// AVX-512 code can be shared with files built for older CPUs.
#pragma once

#include <immintrin.h>

namespace dsv3::cpu::avx512 {

// f32_to_bf16 on 16 lanes, kept as f32: round to nearest even on the top 16 bits; NaN stays a quiet NaN.
static inline __m512 round_to_bf16(__m512 v) {
  const __m512i high = _mm512_set1_epi32(int32_t(0xffff0000u));
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_and_si512(_mm512_add_epi32(bits, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb)), high);
  const __m512i quiet_nan = _mm512_or_si512(_mm512_and_si512(bits, high), _mm512_set1_epi32(0x00400000));
  const __mmask16 is_nan =
      _mm512_cmpgt_epi32_mask(_mm512_and_si512(bits, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  return _mm512_castsi512_ps(_mm512_mask_blend_epi32(is_nan, rounded, quiet_nan));
}

}  // namespace dsv3::cpu::avx512
