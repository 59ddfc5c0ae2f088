// The gemv family's AVX-512 implementation (ops/kernels.h): the AVX2 kernels' design (gemv_avx2.cpp,
// which explains the decoders, the FP8 power-of-two scaling and the prefetch) on 16-lane registers, so
// a step decodes and multiplies twice the weights for the same instruction count. Decode at one token
// is bound by the weight stream once the instructions per byte are few enough to keep enough loads in
// flight; FP8 (9 integer ops per 32 weights on AVX2) and the multi-token tiles of batched decode and
// speculative verification are where the wider registers pay.
//
// Compiled with AVX-512 F/BW/VL/DQ flags whatever the build targets (CMakeLists.txt) and only called on
// CPUs that have them (gemv.cpp asks the CPU at run time). Like gemv_avx2.cpp it defines no inline or
// template function with external linkage, so no AVX-512 copy of shared code can be kept by the linker.
//
// Layouts (linear_kernels.h):
//   F32, F16  natural, 32 columns per step (two 16-lane halves)
//   BF16      even_odd32: 32 columns from one 64-byte load; a 32-bit lane holds elements (2i, 2i+1),
//             lane << 16 is the even one and lane & 0xffff0000 the odd one, exactly
//   FP8       quad64: 64 columns from one 64-byte load; byte k of 32-bit lane i is column 4i + k,
//             decoded into part k as E4M3 × 2^-120 (decode64_fp8, 9 ops per 64 weights)
// GCC 12's AVX-512 intrinsics pass deliberately uninitialized "undefined" vectors as the unused merge
// operand, which its own uninitialized-use warnings then report from inside the header.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "ops/cpu/linear_kernels.h"
#include "ops/cpu/simd_avx512.h"

// Register tiles are arrays indexed by small constant loops; they must be fully unrolled to stay in
// registers.
#define DSV3_UNROLL _Pragma("GCC unroll 16")

namespace dsv3::cpu {
namespace {

template <DType D>
constexpr int64_t kElemBytes = D == DType::F32 ? 4 : D == DType::F8_E4M3 ? 1 : 2;
template <DType D>
constexpr int64_t kStep = D == DType::F8_E4M3 ? 64 : 32;  // columns per step

// 32 weights of F32, F16 or BF16 -> two 16-lane halves in the dtype's layout.
template <DType D>
inline __attribute__((always_inline)) void decode32(const uint8_t* p, __m512* part) {
  if constexpr (D == DType::F32) {
    part[0] = _mm512_loadu_ps(p);
    part[1] = _mm512_loadu_ps(p + 64);
  } else if constexpr (D == DType::F16) {
    part[0] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    part[1] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p) + 1));
  } else {
    const __m512i v = _mm512_loadu_si512(p);
    part[0] = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    part[1] = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(int32_t(0xffff0000u))));
  }
}

// 64 FP8 weights -> four parts, part k lane i = weight 4i + k as E4M3 × 2^-120 (the AVX2 decoder's
// shifts, gemv_avx2.cpp decode32_fp8, on 512 bits).
inline __attribute__((always_inline)) void decode64_fp8(const uint8_t* p, __m512* part) {
  const __m512i mask = _mm512_set1_epi32(int32_t(0x87f00000u));
  const __m512i v = _mm512_loadu_si512(p);
  const __m512i odd_bytes = _mm512_srai_epi16(v, 4);                          // bytes 3 and 1
  const __m512i even_bytes = _mm512_srai_epi16(_mm512_slli_epi16(v, 8), 4);  // bytes 2 and 0
  part[0] = _mm512_castsi512_ps(_mm512_and_si512(_mm512_slli_epi32(even_bytes, 16), mask));
  part[1] = _mm512_castsi512_ps(_mm512_and_si512(_mm512_slli_epi32(odd_bytes, 16), mask));
  part[2] = _mm512_castsi512_ps(_mm512_and_si512(even_bytes, mask));
  part[3] = _mm512_castsi512_ps(_mm512_and_si512(odd_bytes, mask));
}

template <DType D>
inline __attribute__((always_inline)) void decode_step(const uint8_t* p, __m512* part) {
  if constexpr (D == DType::F8_E4M3) decode64_fp8(p, part);
  else decode32<D>(p, part);
}

constexpr float kFp8BlockScale = 0x1p56f;  // as gemv_avx2.cpp: block scales applied × 2^56
// Software prefetch distance per row stream: the same row of the next tile (rows of a tile are adjacent,
// so this runs ahead of every stream by one tile) while a tile spans at most kPrefetchTileBytes;
// otherwise kPrefetchBytes along the row.
constexpr int64_t kPrefetchTileBytes = 16384;
constexpr int64_t kPrefetchBytes = 2048;

// RB rows × TB tokens, as gemv_avx2.cpp's gemv_tile: one accumulator per output, so each output's
// arithmetic is the same whatever the number of tokens in the call.
template <DType D, int RB, int TB>
void gemv_tile(const LinearWeight& w, const float* xp, int64_t pc, const float* y_scales, float* y, int64_t r0,
               int64_t t0) {
  constexpr int64_t es = kElemBytes<D>;
  constexpr bool kFp8 = D == DType::F8_E4M3;
  constexpr int64_t kCh = kStep<D>;
  constexpr int kParts = int(kCh / 16);
  constexpr int64_t kStepBytes = kCh * es;
  const int64_t cols = w.cols;
  const int64_t full = cols / kCh;
  const int64_t n_chunks = (cols + kCh - 1) / kCh;
  const int64_t per_block = kFp8 ? w.block / kCh : n_chunks;
  const int64_t scale_cols = kFp8 ? (cols + w.block - 1) / w.block : 0;
  const int64_t tile_bytes = RB * cols * es;
  const int64_t ahead = tile_bytes <= kPrefetchTileBytes ? tile_bytes : kPrefetchBytes;

  const uint8_t* row[RB];
  const float* scale_row[RB];
  DSV3_UNROLL
  for (int r = 0; r < RB; ++r) {
    row[r] = static_cast<const uint8_t*>(w.data) + (r0 + r) * cols * es;
    scale_row[r] = kFp8 ? w.scale_inv + ((r0 + r) / w.block) * scale_cols : nullptr;
  }
  // The last partial step reads zero-padded copies (reading past the row could leave the mapping).
  alignas(64) uint8_t tail[RB][kStepBytes];
  if (full < n_chunks) {
    const size_t n_bytes = size_t(cols - full * kCh) * es;
    DSV3_UNROLL
    for (int r = 0; r < RB; ++r) {
      std::memset(tail[r], 0, sizeof(tail[r]));
      std::memcpy(tail[r], row[r] + full * kStepBytes, n_bytes);
    }
  }
  const float* xt[TB];
  DSV3_UNROLL
  for (int t = 0; t < TB; ++t) xt[t] = xp + (t0 + t) * pc;

  __m512 acc[RB][TB];
  __m512 total[RB][TB];
  DSV3_UNROLL
  for (int r = 0; r < RB; ++r)
    DSV3_UNROLL
    for (int t = 0; t < TB; ++t) acc[r][t] = total[r][t] = _mm512_setzero_ps();

  auto chunk = [&](int64_t c, const uint8_t* const* src) __attribute__((always_inline)) {
    if constexpr (TB <= 2) {
      // x first, then each row decoded and consumed at once: fewer live registers than decoding all
      // rows first, which leaves room for four rows of two tokens (MTP verification).
      __m512 xv[TB][kParts];
      DSV3_UNROLL
      for (int t = 0; t < TB; ++t)
        DSV3_UNROLL
        for (int k = 0; k < kParts; ++k) xv[t][k] = _mm512_loadu_ps(xt[t] + c * kCh + 16 * k);
      DSV3_UNROLL
      for (int r = 0; r < RB; ++r) {
        __m512 wr[kParts];
        decode_step<D>(src[r], wr);
        DSV3_UNROLL
        for (int t = 0; t < TB; ++t)
          DSV3_UNROLL
          for (int k = 0; k < kParts; ++k) acc[r][t] = _mm512_fmadd_ps(wr[k], xv[t][k], acc[r][t]);
      }
      return;
    }
    __m512 wv[RB][kParts];
    DSV3_UNROLL
    for (int r = 0; r < RB; ++r) decode_step<D>(src[r], wv[r]);
    DSV3_UNROLL
    for (int t = 0; t < TB; ++t) {
      DSV3_UNROLL
      for (int k = 0; k < kParts; ++k) {
        const __m512 xv = _mm512_loadu_ps(xt[t] + c * kCh + 16 * k);
        DSV3_UNROLL
        for (int r = 0; r < RB; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r][k], xv, acc[r][t]);
      }
    }
  };
  for (int64_t b0 = 0; b0 < n_chunks; b0 += per_block) {
    const int64_t b1 = std::min(n_chunks, b0 + per_block);
    const int64_t main_end = std::min(b1, full);
    for (int64_t c = b0; c < main_end; ++c) {
      const uint8_t* src[RB];
      DSV3_UNROLL
      for (int r = 0; r < RB; ++r) src[r] = row[r] + c * kStepBytes;
      DSV3_UNROLL
      for (int r = 0; r < RB; ++r)
        DSV3_UNROLL
        for (int64_t line = 0; line < kStepBytes; line += 64)
          _mm_prefetch(reinterpret_cast<const char*>(src[r] + ahead + line), _MM_HINT_T0);
      chunk(c, src);
    }
    if (b1 > full) {
      const uint8_t* src[RB];
      DSV3_UNROLL
      for (int r = 0; r < RB; ++r) src[r] = tail[r];
      chunk(full, src);
    }
    if constexpr (kFp8) {
      const int64_t block_index = b0 / per_block;
      DSV3_UNROLL
      for (int r = 0; r < RB; ++r) {
        const __m512 s = _mm512_set1_ps(scale_row[r][block_index] * kFp8BlockScale);
        DSV3_UNROLL
        for (int t = 0; t < TB; ++t) {
          total[r][t] = _mm512_fmadd_ps(acc[r][t], s, total[r][t]);
          acc[r][t] = _mm512_setzero_ps();
        }
      }
    }
  }
  DSV3_UNROLL
  for (int r = 0; r < RB; ++r)
    DSV3_UNROLL
    for (int t = 0; t < TB; ++t)
      y[(t0 + t) * w.rows + r0 + r] = kFp8 ? _mm512_reduce_add_ps(total[r][t]) * y_scales[t0 + t]
                                            : _mm512_reduce_add_ps(acc[r][t]);
}

constexpr int kTokenBlock = 4;

template <DType D, int RB>
void gemv_row_block(const LinearWeight& w, const float* xp, int64_t pc, int64_t n_tokens, const float* y_scales,
                    float* y, int64_t r) {
  int64_t t = 0;
  for (; t + kTokenBlock <= n_tokens; t += kTokenBlock) gemv_tile<D, RB, kTokenBlock>(w, xp, pc, y_scales, y, r, t);
  switch (n_tokens - t) {
    case 3: gemv_tile<D, RB, 3>(w, xp, pc, y_scales, y, r, t); break;
    case 2: gemv_tile<D, RB, 2>(w, xp, pc, y_scales, y, r, t); break;
    case 1: gemv_tile<D, RB, 1>(w, xp, pc, y_scales, y, r, t); break;
    default: break;
  }
}

template <DType D>
void gemv_rows_typed(const LinearWeight& w, const float* xp, int64_t n_tokens, const float* y_scales, float* y,
                     int64_t row_begin, int64_t row_end) {
  const int64_t pc = padded_cols(w.cols);
  int64_t r = row_begin;
  if (n_tokens == 1) {
    for (; r + 8 <= row_end; r += 8) gemv_tile<D, 8, 1>(w, xp, pc, y_scales, y, r, 0);
    for (; r + 4 <= row_end; r += 4) gemv_tile<D, 4, 1>(w, xp, pc, y_scales, y, r, 0);
  } else if (n_tokens == 2) {
    for (; r + 4 <= row_end; r += 4) gemv_tile<D, 4, 2>(w, xp, pc, y_scales, y, r, 0);
  } else {
    for (; r + 2 <= row_end; r += 2) gemv_row_block<D, 2>(w, xp, pc, n_tokens, y_scales, y, r);
  }
  for (; r < row_end; ++r) gemv_row_block<D, 1>(w, xp, pc, n_tokens, y_scales, y, r);
}

}  // namespace

int64_t pack_token_avx512(const float* src, int64_t cols, Precision precision, XLayout layout, float x_scale,
                          float* dst) {
  const int64_t width = layout == XLayout::quad64 ? 64 : 32;
  const int64_t full = cols / width;
  const __m512 scale = _mm512_set1_ps(x_scale);
  auto load = [&](const float* p) {
    __m512 v = _mm512_loadu_ps(p);
    if (precision == Precision::bf16) v = avx512::round_to_bf16(v);
    return _mm512_mul_ps(v, scale);
  };
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  // Lane i (< 8) of quad[k] picks column 4i + k of a pair of registers holding 32 columns.
  const __m512i quad0 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
  for (int64_t c = 0; c < full; ++c) {
    const float* s = src + c * width;
    float* d = dst + c * width;
    if (layout == XLayout::quad64) {
      const __m512 r0 = load(s), r1 = load(s + 16), r2 = load(s + 32), r3 = load(s + 48);
      for (int k = 0; k < 4; ++k) {
        const __m512i idx = _mm512_add_epi32(quad0, _mm512_set1_epi32(k));
        const __m512 low = _mm512_permutex2var_ps(r0, idx, r1);   // columns 4i + k, i < 8
        const __m512 high = _mm512_permutex2var_ps(r2, idx, r3);  // columns 32 + 4i + k
        _mm512_storeu_ps(d + 16 * k, _mm512_shuffle_f32x4(low, high, 0x44));
      }
      continue;
    }
    const __m512 a = load(s), b = load(s + 16);
    if (layout == XLayout::even_odd32) {
      _mm512_storeu_ps(d, _mm512_permutex2var_ps(a, even, b));
      _mm512_storeu_ps(d + 16, _mm512_permutex2var_ps(a, odd, b));
    } else {
      _mm512_storeu_ps(d, a);
      _mm512_storeu_ps(d + 16, b);
    }
  }
  return full * width;
}

void gemv_rows_avx512(const LinearWeight& w, const float* x_packed, int64_t n_tokens, const float* y_scales, float* y,
                      int64_t row_begin, int64_t row_end) {
  switch (w.dtype) {
    case DType::F32: return gemv_rows_typed<DType::F32>(w, x_packed, n_tokens, y_scales, y, row_begin, row_end);
    case DType::F16: return gemv_rows_typed<DType::F16>(w, x_packed, n_tokens, y_scales, y, row_begin, row_end);
    case DType::BF16: return gemv_rows_typed<DType::BF16>(w, x_packed, n_tokens, y_scales, y, row_begin, row_end);
    case DType::F8_E4M3: return gemv_rows_typed<DType::F8_E4M3>(w, x_packed, n_tokens, y_scales, y, row_begin, row_end);
    default: break;
  }
}

}  // namespace dsv3::cpu
