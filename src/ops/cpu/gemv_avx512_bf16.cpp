// The gemv family's avx512_bf16 implementation (ops/kernels.h) for its one case: BF16 weights with
// bf16-rounded activations (Precision::bf16, what generation runs). Weights and activations are both
// bf16, so no decoding is needed: vdpbf16ps multiplies 32 weight/activation pairs and adds each
// adjacent pair's products into 16 f32 lanes, one instruction per 64 bytes of weights where the f32
// kernels (gemv_avx512.cpp) need a shift, a mask and two FMAs. Decode at one token is bound by the
// weight stream either way; the multi-token tiles of batched decode and MTP verification are bound by
// arithmetic, and halve the activation bytes each weight is multiplied by (x stays in L1 for
// 16 tokens of up to 1536 columns).
//
// Arithmetic: each product of two bf16 values is exact in f32; the instruction rounds to nearest even
// and treats denormal inputs and outputs as zero (bf16 values below 2^-126, never met in practice). As
// in the other kernels each output has one accumulator, so its arithmetic does not depend on how many
// tokens the call has.
//
// Compiled with AVX512-BF16 flags (CMakeLists.txt) and called only on CPUs that have them (gemv.cpp);
// no function with external linkage besides the two entry points.
#pragma GCC diagnostic ignored "-Wuninitialized"  // GCC 12's intrinsics: see gemv_avx512.cpp
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "ops/cpu/linear_kernels.h"
#include "ops/cpu/simd_avx512.h"

#define DSV3_UNROLL _Pragma("GCC unroll 16")

namespace dsv3::cpu {
namespace {

constexpr int64_t kStep = 32;  // columns (bf16 pairs × 16 lanes) per step
constexpr int64_t kPrefetchTileBytes = 16384;  // as gemv_avx512.cpp
constexpr int64_t kPrefetchBytes = 2048;

// 16 f32 lanes rounded to bf16 values (f32_to_bf16), as 16-bit lanes.
__m256i to_bf16(__m512 v) {
  return _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(avx512::round_to_bf16(v)), 16));
}

template <int RB, int TB>
void tile(const LinearWeight& w, const uint16_t* xp, int64_t x_stride, float* y, int64_t r0, int64_t t0) {
  const int64_t cols = w.cols;
  const int64_t full = cols / kStep;
  const int64_t n_chunks = (cols + kStep - 1) / kStep;
  const int64_t row_bytes = cols * 2;
  const int64_t tile_bytes = RB * row_bytes;
  const int64_t ahead = tile_bytes <= kPrefetchTileBytes ? tile_bytes : kPrefetchBytes;

  const uint8_t* row[RB];
  DSV3_UNROLL
  for (int r = 0; r < RB; ++r) row[r] = static_cast<const uint8_t*>(w.data) + (r0 + r) * row_bytes;
  alignas(64) uint16_t tail[RB][kStep];  // the partial last step, zero-padded
  if (full < n_chunks) {
    DSV3_UNROLL
    for (int r = 0; r < RB; ++r) {
      std::memset(tail[r], 0, sizeof(tail[r]));
      std::memcpy(tail[r], row[r] + full * kStep * 2, size_t(cols - full * kStep) * 2);
    }
  }
  const uint16_t* xt[TB];
  DSV3_UNROLL
  for (int t = 0; t < TB; ++t) xt[t] = xp + (t0 + t) * x_stride;

  __m512 acc[RB][TB];
  DSV3_UNROLL
  for (int r = 0; r < RB; ++r)
    DSV3_UNROLL
    for (int t = 0; t < TB; ++t) acc[r][t] = _mm512_setzero_ps();

  for (int64_t c = 0; c < n_chunks; ++c) {
    __m512i wv[RB];
    if (c < full) {
      DSV3_UNROLL
      for (int r = 0; r < RB; ++r) {
        const uint8_t* p = row[r] + c * kStep * 2;
        _mm_prefetch(reinterpret_cast<const char*>(p + ahead), _MM_HINT_T0);
        wv[r] = _mm512_loadu_si512(p);
      }
    } else {
      DSV3_UNROLL
      for (int r = 0; r < RB; ++r) wv[r] = _mm512_load_si512(tail[r]);
    }
    DSV3_UNROLL
    for (int t = 0; t < TB; ++t) {
      const __m512bh xv = (__m512bh)_mm512_loadu_si512(xt[t] + c * kStep);
      DSV3_UNROLL
      for (int r = 0; r < RB; ++r) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], (__m512bh)wv[r], xv);
    }
  }
  DSV3_UNROLL
  for (int r = 0; r < RB; ++r)
    DSV3_UNROLL
    for (int t = 0; t < TB; ++t) y[(t0 + t) * w.rows + r0 + r] = _mm512_reduce_add_ps(acc[r][t]);
}

constexpr int kTokenBlock = 4;

template <int RB>
void row_block(const LinearWeight& w, const uint16_t* xp, int64_t x_stride, int64_t n_tokens, float* y, int64_t r) {
  int64_t t = 0;
  for (; t + kTokenBlock <= n_tokens; t += kTokenBlock) tile<RB, kTokenBlock>(w, xp, x_stride, y, r, t);
  switch (n_tokens - t) {
    case 3: tile<RB, 3>(w, xp, x_stride, y, r, t); break;
    case 2: tile<RB, 2>(w, xp, x_stride, y, r, t); break;
    case 1: tile<RB, 1>(w, xp, x_stride, y, r, t); break;
    default: break;
  }
}

}  // namespace

// One token's activations as bf16 in natural order, zero-padded to padded_cols(cols) values, written
// over the first half of dst (a row of padded_cols floats).
void pack_token_bf16_pairs(const float* src, int64_t cols, float* dst) {
  uint16_t* out = reinterpret_cast<uint16_t*>(dst);
  const int64_t pc = padded_cols(cols);
  int64_t c = 0;
  for (; c + 16 <= cols; c += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + c), to_bf16(_mm512_loadu_ps(src + c)));
  if (c < cols) {
    const __mmask16 valid = __mmask16((1u << (cols - c)) - 1);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + c), to_bf16(_mm512_maskz_loadu_ps(valid, src + c)));
    c += 16;
  }
  for (; c < pc; c += 16) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + c), _mm256_setzero_si256());
}

void gemv_rows_avx512_bf16(const LinearWeight& w, const float* x_packed, int64_t n_tokens, float* y,
                           int64_t row_begin, int64_t row_end) {
  const uint16_t* xp = reinterpret_cast<const uint16_t*>(x_packed);
  const int64_t x_stride = 2 * padded_cols(w.cols);  // bf16 values per packed token row
  int64_t r = row_begin;
  if (n_tokens == 1) {
    for (; r + 8 <= row_end; r += 8) tile<8, 1>(w, xp, x_stride, y, r, 0);
    for (; r + 4 <= row_end; r += 4) tile<4, 1>(w, xp, x_stride, y, r, 0);
  } else if (n_tokens == 2) {
    // MTP verification: eight row streams, as for one token (four measured ~10% slower).
    for (; r + 8 <= row_end; r += 8) tile<8, 2>(w, xp, x_stride, y, r, 0);
    for (; r + 4 <= row_end; r += 4) tile<4, 2>(w, xp, x_stride, y, r, 0);
  } else {
    for (; r + 4 <= row_end; r += 4) row_block<4>(w, xp, x_stride, n_tokens, y, r);
  }
  for (; r < row_end; ++r) row_block<1>(w, xp, x_stride, n_tokens, y, r);
}

}  // namespace dsv3::cpu
