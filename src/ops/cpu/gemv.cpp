// Weight-streaming linear kernels for few tokens: every weight byte is read once from memory per call
// and reused for all tokens, so decode runs at memory bandwidth (the weights do not fit in cache).
//
// Raw AVX2/FMA/F16C intrinsics rather than Highway: the FP8 decoder relies on 16-bit arithmetic shifts
// feeding vcvtph2ps on the same register, and on the exact pairing of even/odd elements with a
// pre-permuted activation vector; written directly it is a handful of instructions per 16 weights.
// Builds without AVX2 use a scalar loop with the same packing (natural layout).
//
// Decoders (16 weights -> two 8-lane f32 halves `lo`, `hi`, matching XLayout):
//   F32   lo = w[0..7], hi = w[8..15]
//   F16   vcvtph2ps on each half
//   BF16  a 32-bit lane holds elements (2i, 2i+1); lane << 16 is element 2i as f32, lane & 0xffff0000
//         is element 2i+1 — exact, no rounding; x is packed even/odd to match.
//   FP8   E4M3 placed directly into an f32: sign-extend the byte to 32 bits (vpmovsxbd), shift left by
//         20 — eeeemmm lands in bits 26..20 and copies of the sign in bits 31..27 — and clear bits
//         30..27. The f32's exponent bias is 127 against E4M3's 7 and E4M3 subnormals become f32
//         subnormals, so the float equals the E4M3 value × 2^-120 exactly. 2^-120 is undone in exact
//         power-of-two factors: each token's x is packed × 2^k, k chosen from its max|x| (up to
//         2^124, less where it would overflow), each 128×128 block scale (SPEC.md §1) is applied
//         × 2^56 and the sums × 2^(64-k), so products and partial sums stay far from f32's
//         subnormal range. (A token mixing |x| ~1e30 with ~1e-30 still loses the tiny terms' share
//         below 2^-150 of the largest — far under f32 accumulation error of any real row.)
//         Three integer ops per 8 weights; measured against an E4M3 -> f16 placement + vcvtph2ps
//         (5 ops + 2 conversions per 16) it is ~1.4× faster, which is what lets FP8 decode keep up
//         with memory on 2 cores. E4M3 NaN (0x7f/0xff) decodes as ±480 × 2^-120 here; DeepSeek's
//         quantizer never produces it. Subnormal weights rely on the CPU not running with DAZ set.
//
// Memory: each row pointer software-prefetches kPrefetchBytes ahead. Rows of a tile are adjacent in
// memory, so this runs ahead into the next tile; with the hardware prefetcher alone FP8 streamed at
// ~16 GB/s, with it ~22 GB/s (2 Zen 3 cores, bench_linear).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "ops/cpu/linear_kernels.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define DSV3_GEMV_AVX2 1
#endif

// The register tiles below are arrays indexed by small constant loops; they must be fully unrolled
// to stay in registers (GCC -O2 does not do it by itself).
#define DSV3_UNROLL _Pragma("GCC unroll 16")

namespace dsv3::cpu {

XLayout gemv_x_layout(DType dtype) {
#ifdef DSV3_GEMV_AVX2
  if (dtype == DType::BF16) return XLayout::even_odd;
#endif
  return XLayout::natural;
}

bool gemv_available() {
#ifdef DSV3_GEMV_AVX2
  return true;
#else
  return false;
#endif
}


// Scalar packing: the definition, used for the partial last chunk (and everything without AVX2).
static void pack_chunk_scalar(const float* src, int64_t n_valid, Precision precision, XLayout layout,
                              float x_scale, float* dst) {
  for (int64_t j = 0; j < kChunk; ++j) {
    const int64_t c = layout == XLayout::natural ? j : (j < 8 ? 2 * j : 2 * (j - 8) + 1);
    float v = c < n_valid ? src[c] : 0.0f;
    if (precision == Precision::bf16) v = bf16_to_f32(f32_to_bf16(v));
    dst[j] = v * x_scale;
  }
}

void pack_activations(const float* x, int64_t n_tokens, int64_t cols, Precision precision, DType weight_dtype,
                      float* out, float* y_scales) {
  const XLayout layout = gemv_x_layout(weight_dtype);
  const int64_t pc = padded_cols(cols);
  const int64_t full = cols / kChunk;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* src = x + t * cols;
    float* dst = out + t * pc;
    float x_scale = 1.0f;
    y_scales[t] = 1.0f;
#ifdef DSV3_GEMV_AVX2
    if (weight_dtype == DType::F8_E4M3) {
      // Per token, x × 2^k with k as large as max|x| · 2^k < 2^127 allows (bf16 rounding may carry
      // max|x| into the next binade), capped at 124; the kernel's sums come out × 2^(k-64).
      float amax = 0.0f;
      for (int64_t i = 0; i < cols; ++i) amax = std::max(amax, std::fabs(src[i]));
      int k = 124;
      if (!std::isfinite(amax)) k = 0;
      else if (amax > 0.0f) k = std::clamp(125 - std::ilogb(amax), 0, 124);
      x_scale = std::ldexp(1.0f, k);
      y_scales[t] = std::ldexp(1.0f, 64 - k);
    }
#endif
    int64_t c = 0;
#ifdef DSV3_GEMV_AVX2
    const __m256 scale = _mm256_set1_ps(x_scale);
    for (; c < full; ++c) {
      __m256 a = _mm256_loadu_ps(src + c * kChunk);
      __m256 b = _mm256_loadu_ps(src + c * kChunk + 8);
      if (precision == Precision::bf16) {
        // f32_to_bf16 on 8 lanes: round to nearest even on the top 16 bits; NaN keeps a quiet NaN.
        auto round = [](__m256 v) {
          const __m256i bits = _mm256_castps_si256(v);
          const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
          const __m256i rounded = _mm256_and_si256(
              _mm256_add_epi32(bits, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb)),
              _mm256_set1_epi32(int32_t(0xffff0000u)));
          const __m256i quiet_nan =
              _mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(int32_t(0xffff0000u))),
                              _mm256_set1_epi32(0x00400000));
          const __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(bits, _mm256_set1_epi32(0x7fffffff)),
                                                    _mm256_set1_epi32(0x7f800000));
          return _mm256_castsi256_ps(_mm256_blendv_epi8(rounded, quiet_nan, is_nan));
        };
        a = round(a);
        b = round(b);
      }
      a = _mm256_mul_ps(a, scale);
      b = _mm256_mul_ps(b, scale);
      if (layout == XLayout::even_odd) {
        // [x0 x2 x8 x10 | x4 x6 x12 x14] -> x0 x2 x4 .. x14 (and the odd elements likewise)
        const __m256 even = _mm256_shuffle_ps(a, b, 0x88);
        const __m256 odd = _mm256_shuffle_ps(a, b, 0xdd);
        a = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(even), 0xd8));
        b = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(odd), 0xd8));
      }
      _mm256_storeu_ps(dst + c * kChunk, a);
      _mm256_storeu_ps(dst + c * kChunk + 8, b);
    }
#endif
    for (; c * kChunk < pc; ++c)
      pack_chunk_scalar(src + c * kChunk, cols - c * kChunk, precision, layout, x_scale, dst + c * kChunk);
  }
}

#ifdef DSV3_GEMV_AVX2
namespace {

template <DType D>
constexpr int64_t kElemBytes = D == DType::F32 ? 4 : D == DType::F8_E4M3 ? 1 : 2;

template <DType D>
inline __attribute__((always_inline)) void decode16(const uint8_t* p, __m256& lo, __m256& hi) {
  if constexpr (D == DType::F32) {
    lo = _mm256_loadu_ps(reinterpret_cast<const float*>(p));
    hi = _mm256_loadu_ps(reinterpret_cast<const float*>(p) + 8);
  } else if constexpr (D == DType::F16) {
    lo = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    hi = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p) + 1));
  } else if constexpr (D == DType::BF16) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    lo = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    hi = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(int32_t(0xffff0000u))));
  } else {
    const __m256i mask = _mm256_set1_epi32(int32_t(0x87ffffffu));
    const __m256i a = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    const __m256i b = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8)));
    lo = _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(a, 20), mask));
    hi = _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(b, 20), mask));
  }
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// The FP8 decoder yields value × 2^-120; x is packed × 2^k (per token, pack_activations), block
// scales are applied × 2^56 and the row sums × 2^(64-k).
constexpr float kFp8BlockScale = 0x1p56f;
constexpr int64_t kPrefetchBytes = 8192;

// RB rows × TB tokens: y[t0+t, r0+r] = Σ_c W[r0+r, c] x[t0+t, c]. FP8 partial sums are kept per
// block of `w.block` columns and multiplied by the block's scale when the block ends.
template <DType D, int RB, int TB>
void gemv_tile(const LinearWeight& w, const float* xp, int64_t pc, const float* y_scales, float* y, int64_t r0,
               int64_t t0) {
  constexpr int64_t es = kElemBytes<D>;
  constexpr bool kFp8 = D == DType::F8_E4M3;
  const int64_t cols = w.cols;
  const int64_t full = cols / kChunk;  // chunks read straight from the weight
  const int64_t n_chunks = pc / kChunk;
  const int64_t per_block = kFp8 ? w.block / kChunk : n_chunks;

  const uint8_t* row[RB];
  const float* scale_row[RB];
  DSV3_UNROLL
  for (int r = 0; r < RB; ++r) {
    row[r] = static_cast<const uint8_t*>(w.data) + (r0 + r) * cols * es;
    scale_row[r] = kFp8 ? w.scale_inv + ((r0 + r) / w.block) * w.scale_cols() : nullptr;
  }
  // The last partial chunk is copied into zero-padded buffers: reading past the row could leave
  // the mapping, and garbage × 0 may be NaN.
  alignas(32) uint8_t tail[RB][kChunk * es];
  if (full < n_chunks) {
    const size_t n_bytes = size_t(cols - full * kChunk) * es;
    DSV3_UNROLL
    for (int r = 0; r < RB; ++r) {
      std::memset(tail[r], 0, sizeof(tail[r]));
      std::memcpy(tail[r], row[r] + full * kChunk * es, n_bytes);
    }
  }
  const float* xt[TB];
  DSV3_UNROLL
  for (int t = 0; t < TB; ++t) xt[t] = xp + (t0 + t) * pc;

  // Two accumulators per output (even/odd halves of each chunk) so the single-token tile has eight
  // independent FMA chains; multi-token tiles have RB·TB outputs and need no split.
  constexpr int kSplit = TB == 1 ? 2 : 1;
  __m256 acc[kSplit][RB][TB];
  __m256 total[RB][TB];
  DSV3_UNROLL
  for (int r = 0; r < RB; ++r)
    DSV3_UNROLL
    for (int t = 0; t < TB; ++t) {
      total[r][t] = _mm256_setzero_ps();
      for (int k = 0; k < kSplit; ++k) acc[k][r][t] = _mm256_setzero_ps();
    }

  auto chunk = [&](int64_t c, const uint8_t* const* src) __attribute__((always_inline)) {
    __m256 lo[RB], hi[RB];
    DSV3_UNROLL
    for (int r = 0; r < RB; ++r) decode16<D>(src[r], lo[r], hi[r]);
    DSV3_UNROLL
    for (int t = 0; t < TB; ++t) {
      const __m256 xl = _mm256_loadu_ps(xt[t] + c * kChunk);
      const __m256 xh = _mm256_loadu_ps(xt[t] + c * kChunk + 8);
      DSV3_UNROLL
      for (int r = 0; r < RB; ++r) {
        acc[0][r][t] = _mm256_fmadd_ps(lo[r], xl, acc[0][r][t]);
        acc[kSplit - 1][r][t] = _mm256_fmadd_ps(hi[r], xh, acc[kSplit - 1][r][t]);
      }
    }
  };
  // Folds the split accumulators of output (r, t) into one vector.
  auto sum_acc = [&](int r, int t) __attribute__((always_inline)) {
    return kSplit == 2 ? _mm256_add_ps(acc[0][r][t], acc[kSplit - 1][r][t]) : acc[0][r][t];
  };

  for (int64_t b0 = 0; b0 < n_chunks; b0 += per_block) {
    const int64_t b1 = std::min(n_chunks, b0 + per_block);
    const int64_t main_end = std::min(b1, full);
    for (int64_t c = b0; c < main_end; ++c) {
      const uint8_t* src[RB];
      DSV3_UNROLL
      for (int r = 0; r < RB; ++r) src[r] = row[r] + c * kChunk * es;
      if (((c * kChunk * es) & 63) == 0) {
        DSV3_UNROLL
        for (int r = 0; r < RB; ++r) _mm_prefetch(reinterpret_cast<const char*>(src[r] + kPrefetchBytes), _MM_HINT_T0);
      }
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
        const __m256 s = _mm256_set1_ps(scale_row[r][block_index] * kFp8BlockScale);
        DSV3_UNROLL
        for (int t = 0; t < TB; ++t) {
          total[r][t] = _mm256_fmadd_ps(sum_acc(r, t), s, total[r][t]);
          for (int k = 0; k < kSplit; ++k) acc[k][r][t] = _mm256_setzero_ps();
        }
      }
    }
  }
  DSV3_UNROLL
  for (int r = 0; r < RB; ++r)
    DSV3_UNROLL
    for (int t = 0; t < TB; ++t) y[(t0 + t) * w.rows + r0 + r] = kFp8 ? hsum(total[r][t]) * y_scales[t0 + t] : hsum(sum_acc(r, t));
}

template <DType D, int RB>
void gemv_row_block(const LinearWeight& w, const float* xp, int64_t pc, int64_t n_tokens, const float* y_scales, float* y,
                    int64_t r) {
  int64_t t = 0;
  for (; t + 4 <= n_tokens; t += 4) gemv_tile<D, RB, 4>(w, xp, pc, y_scales, y, r, t);
  switch (n_tokens - t) {
    case 3: gemv_tile<D, RB, 3>(w, xp, pc, y_scales, y, r, t); break;
    case 2: gemv_tile<D, RB, 2>(w, xp, pc, y_scales, y, r, t); break;
    case 1: gemv_tile<D, RB, 1>(w, xp, pc, y_scales, y, r, t); break;
    default: break;
  }
}

template <DType D>
void gemv_rows_typed(const LinearWeight& w, const float* xp, int64_t n_tokens, const float* y_scales, float* y,
                     int64_t row_begin,
                     int64_t row_end) {
  const int64_t pc = padded_cols(w.cols);
  int64_t r = row_begin;
  if (n_tokens == 1) {
    // Four rows at once: four independent streams in flight and each x chunk loaded once for four rows.
    for (; r + 4 <= row_end; r += 4) gemv_tile<D, 4, 1>(w, xp, pc, y_scales, y, r, 0);
  } else {
    for (; r + 2 <= row_end; r += 2) gemv_row_block<D, 2>(w, xp, pc, n_tokens, y_scales, y, r);
  }
  for (; r < row_end; ++r) gemv_row_block<D, 1>(w, xp, pc, n_tokens, y_scales, y, r);
}

template <DType D>
void dequantize_rows_typed(const LinearWeight& w, int64_t row_begin, int64_t row_end, float* out) {
  constexpr int64_t es = kElemBytes<D>;
  constexpr bool kFp8 = D == DType::F8_E4M3;
  const int64_t cols = w.cols;
  const int64_t full = cols / kChunk;
  const int64_t n_chunks = padded_cols(cols) / kChunk;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const uint8_t* row = static_cast<const uint8_t*>(w.data) + r * cols * es;
    const float* scale_row = kFp8 ? w.scale_inv + (r / w.block) * w.scale_cols() : nullptr;
    float* dst = out + (r - row_begin) * cols;
    for (int64_t c = 0; c < n_chunks; ++c) {
      alignas(32) uint8_t tail[kChunk * es];
      const uint8_t* src = row + c * kChunk * es;
      if (c >= full) {
        std::memset(tail, 0, sizeof(tail));
        std::memcpy(tail, src, size_t(cols - c * kChunk) * es);
        src = tail;
      }
      __m256 lo, hi;
      decode16<D>(src, lo, hi);
      if constexpr (D == DType::BF16) {
        // even/odd halves back to natural order
        const __m256 a = _mm256_unpacklo_ps(lo, hi);  // 0 1 2 3 | 8 9 10 11
        const __m256 b = _mm256_unpackhi_ps(lo, hi);  // 4 5 6 7 | 12 13 14 15
        lo = _mm256_permute2f128_ps(a, b, 0x20);
        hi = _mm256_permute2f128_ps(a, b, 0x31);
      }
      if constexpr (kFp8) {
        // value × 2^-120 -> × 2^60 (exact) -> × (scale × 2^60): one rounding, as value × scale.
        const __m256 up = _mm256_set1_ps(0x1p60f);
        const __m256 s = _mm256_set1_ps(scale_row[(c * kChunk) / w.block] * 0x1p60f);
        lo = _mm256_mul_ps(_mm256_mul_ps(lo, up), s);
        hi = _mm256_mul_ps(_mm256_mul_ps(hi, up), s);
      }
      if (c < full) {
        _mm256_storeu_ps(dst + c * kChunk, lo);
        _mm256_storeu_ps(dst + c * kChunk + 8, hi);
      } else {
        alignas(32) float tmp[kChunk];
        _mm256_store_ps(tmp, lo);
        _mm256_store_ps(tmp + 8, hi);
        std::memcpy(dst + c * kChunk, tmp, size_t(cols - c * kChunk) * sizeof(float));
      }
    }
  }
}

}  // namespace

void gemv_rows(const LinearWeight& w, const float* x_packed, int64_t n_tokens, const float* y_scales, float* y,
               int64_t row_begin,
               int64_t row_end) {
  switch (w.dtype) {
    case DType::F32: return gemv_rows_typed<DType::F32>(w, x_packed, n_tokens, y_scales, y, row_begin, row_end);
    case DType::F16: return gemv_rows_typed<DType::F16>(w, x_packed, n_tokens, y_scales, y, row_begin, row_end);
    case DType::BF16: return gemv_rows_typed<DType::BF16>(w, x_packed, n_tokens, y_scales, y, row_begin, row_end);
    case DType::F8_E4M3: return gemv_rows_typed<DType::F8_E4M3>(w, x_packed, n_tokens, y_scales, y, row_begin, row_end);
    default: break;
  }
}

void dequantize_rows_f32(const LinearWeight& w, int64_t row_begin, int64_t row_end, float* out) {
  switch (w.dtype) {
    case DType::F32:
      std::memcpy(out, static_cast<const float*>(w.data) + row_begin * w.cols,
                  size_t((row_end - row_begin) * w.cols) * sizeof(float));
      return;
    case DType::F16: return dequantize_rows_typed<DType::F16>(w, row_begin, row_end, out);
    case DType::BF16: return dequantize_rows_typed<DType::BF16>(w, row_begin, row_end, out);
    case DType::F8_E4M3: return dequantize_rows_typed<DType::F8_E4M3>(w, row_begin, row_end, out);
    default: break;
  }
}

#else  // no AVX2: scalar loops over the natural layout

void gemv_rows(const LinearWeight& w, const float* x_packed, int64_t n_tokens, const float* y_scales, float* y,
               int64_t row_begin,
               int64_t row_end) {
  const int64_t pc = padded_cols(w.cols);
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t r = row_begin; r < row_end; ++r) {
      float sum = 0;
      for (int64_t c = 0; c < w.cols; ++c) sum += w.at(r, c) * x_packed[t * pc + c];
      y[t * w.rows + r] = sum * y_scales[t];
    }
}

void dequantize_rows_f32(const LinearWeight& w, int64_t row_begin, int64_t row_end, float* out) {
  for (int64_t r = row_begin; r < row_end; ++r)
    for (int64_t c = 0; c < w.cols; ++c) out[(r - row_begin) * w.cols + c] = w.at(r, c);
}

#endif

}  // namespace dsv3::cpu
