// The gemv family's AVX2 implementation (ops/kernels.h): weight-streaming linear kernels for few
// tokens, where every weight byte is read once from memory per call and reused for all tokens, so
// decode runs at memory bandwidth (the weights do not fit in cache). This file is compiled with
// -mavx2 -mfma -mf16c whatever the build targets (CMakeLists.txt) and only called on CPUs that have
// them (gemv.cpp asks the CPU at run time), so a portable build carries it too. It defines no
// inline or template function with external linkage: a copy compiled for AVX2 must never be the one
// the linker keeps for code that runs on older CPUs.
//
// Raw intrinsics rather than Highway: the decoders are bit placements tied to one instruction set
// (sign-extending byte loads, 32-bit lanes read as bf16 pairs matched to a pre-permuted activation
// vector) plus software prefetch, and the speed comes from counting those instructions per 8 weights.
//
// Decoders (16 weights -> two 8-lane f32 halves `lo`, `hi`, matching XLayout):
//   F32   lo = w[0..7], hi = w[8..15]
//   F16   vcvtph2ps on each half
//   BF16  a 32-bit lane holds elements (2i, 2i+1); lane << 16 is element 2i as f32, lane & 0xffff0000
//         is element 2i+1 — exact, no rounding; x is packed even/odd to match.
//   FP8   E4M3 placed directly into an f32: the byte's sign at bit 31, eeeemmm at bits 26..20, zeros
//         elsewhere. The f32's exponent bias is 127 against E4M3's 7 and E4M3 subnormals become f32
//         subnormals, so the float equals the E4M3 value × 2^-120 exactly. The GEMV decodes 32
//         weights per load with 16-bit arithmetic shifts and a mask (decode32_fp8, 9 ops per 32,
//         x packed in the matching `quad` order); dequantize_rows uses a natural-order form
//         (vpmovsxbd, shift, mask: 12 ops per 32). 2^-120 is undone in exact power-of-two factors:
//         each token's x is packed × 2^k, k chosen from its max|x| (up to 2^124, less where it would
//         overflow), each 128×128 block scale (SPEC.md §1) is applied × 2^56 and the sums × 2^(64-k),
//         so products and partial sums stay clear of f32's subnormal range: only terms with |w·x|
//         below ~2^-131 × max|x| of their token lose precision. E4M3 NaN (0x7f/0xff) decodes as
//         ±480 × 2^-120 here; DeepSeek's quantizer never produces it. Subnormal weights rely on the
//         CPU not running with DAZ set.
//         Measured alternatives (bench_linear, 2 Zen 3 cores): E4M3 -> f16 bit placement + vcvtph2ps
//         decoded ~11 G weights/s per core in cache against ~16-18 for the direct f32 placement.
//
// Memory: each row pointer software-prefetches kPrefetchBytes ahead. Rows of a tile are adjacent in
// memory, so this runs ahead into the next tile. FP8 decode streamed ~16 GB/s with the hardware
// prefetcher alone, ~19-22 GB/s with it, ~23 GB/s with the 32-weight decoder (read probe ~29 GB/s).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "ops/cpu/linear_kernels.h"

// The register tiles below are arrays indexed by small constant loops; they must be fully unrolled
// to stay in registers (GCC -O2 does not do it by itself).
#define DSV3_UNROLL _Pragma("GCC unroll 16")

namespace dsv3::cpu {

int64_t pack_token_avx2(const float* src, int64_t cols, Precision precision, XLayout layout, float x_scale, float* dst) {
  const int64_t width = layout == XLayout::quad ? kFp8Chunk : kChunk;
  const int64_t full = cols / width;
  int64_t c = 0;
  const __m256 scale = _mm256_set1_ps(x_scale);
  // f32_to_bf16 on 8 lanes: round to nearest even on the top 16 bits; NaN keeps a quiet NaN.
  auto prepare = [&](__m256 v) {
    if (precision == Precision::bf16) {
      const __m256i bits = _mm256_castps_si256(v);
      const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
      const __m256i rounded =
          _mm256_and_si256(_mm256_add_epi32(bits, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb)),
                           _mm256_set1_epi32(int32_t(0xffff0000u)));
      const __m256i quiet_nan = _mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(int32_t(0xffff0000u))),
                                                _mm256_set1_epi32(0x00400000));
      const __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(bits, _mm256_set1_epi32(0x7fffffff)),
                                                _mm256_set1_epi32(0x7f800000));
      v = _mm256_castsi256_ps(_mm256_blendv_epi8(rounded, quiet_nan, is_nan));
    }
    return _mm256_mul_ps(v, scale);
  };
  for (; c < full; ++c) {
    const float* s8 = src + c * width;
    float* d8 = dst + c * width;
    if (layout == XLayout::quad) {
      // 8×4 -> 4×8 transpose: r_i holds columns 8i..8i+7; group k gets columns 4j+k, j = 0..7.
      const __m256 r0 = prepare(_mm256_loadu_ps(s8)), r1 = prepare(_mm256_loadu_ps(s8 + 8));
      const __m256 r2 = prepare(_mm256_loadu_ps(s8 + 16)), r3 = prepare(_mm256_loadu_ps(s8 + 24));
      const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
      const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
      const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
      _mm256_storeu_ps(d8, _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t0, t2, 0x44), order));
      _mm256_storeu_ps(d8 + 8, _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t0, t2, 0xee), order));
      _mm256_storeu_ps(d8 + 16, _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t1, t3, 0x44), order));
      _mm256_storeu_ps(d8 + 24, _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t1, t3, 0xee), order));
      continue;
    }
    __m256 a = prepare(_mm256_loadu_ps(s8));
    __m256 b = prepare(_mm256_loadu_ps(s8 + 8));
    if (layout == XLayout::even_odd) {
      // [x0 x2 x8 x10 | x4 x6 x12 x14] -> x0 x2 x4 .. x14 (and the odd elements likewise)
      const __m256 even = _mm256_shuffle_ps(a, b, 0x88);
      const __m256 odd = _mm256_shuffle_ps(a, b, 0xdd);
      a = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(even), 0xd8));
      b = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(odd), 0xd8));
    }
    _mm256_storeu_ps(d8, a);
    _mm256_storeu_ps(d8 + 8, b);
  }
  return full * width;
}

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

// FP8, 32 weights from one 32-byte load, into four vectors: part k lane i = weight 4i + k (XLayout
// quad), each the E4M3 value × 2^-120 like decode16. Per 16-bit half, an arithmetic shift by 4 puts
// the high byte's eeeemmm in bits 10..4 with the sign copied above; as the top half of a 32-bit lane
// that is sign at bit 31 and eeeemmm at bits 26..20, and the mask clears the sign copies and the
// low-byte bits. Bytes 1 and 0 get there by a 32-bit shift left by 16, bytes 2 and 0 first by a
// 16-bit shift left by 8. 9 ops per 32 weights (the per-8 decoder above needs 12, 8 of them on the
// shift/shuffle ports).
inline __attribute__((always_inline)) void decode32_fp8(const uint8_t* p, __m256* part) {
  const __m256i mask = _mm256_set1_epi32(int32_t(0x87f00000u));
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i odd_bytes = _mm256_srai_epi16(v, 4);                          // bytes 3 and 1
  const __m256i even_bytes = _mm256_srai_epi16(_mm256_slli_epi16(v, 8), 4);  // bytes 2 and 0
  part[0] = _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(even_bytes, 16), mask));
  part[1] = _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(odd_bytes, 16), mask));
  part[2] = _mm256_castsi256_ps(_mm256_and_si256(even_bytes, mask));
  part[3] = _mm256_castsi256_ps(_mm256_and_si256(odd_bytes, mask));
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
  constexpr int64_t kCh = kFp8 ? kFp8Chunk : kChunk;  // columns per step
  constexpr int kParts = int(kCh / 8);                 // 8-lane vectors per step
  const int64_t cols = w.cols;
  const int64_t full = cols / kCh;  // chunks read straight from the weight
  const int64_t n_chunks = (cols + kCh - 1) / kCh;
  const int64_t per_block = kFp8 ? w.block / kCh : n_chunks;

  const uint8_t* row[RB];
  const float* scale_row[RB];
  DSV3_UNROLL
  for (int r = 0; r < RB; ++r) {
    row[r] = static_cast<const uint8_t*>(w.data) + (r0 + r) * cols * es;
    scale_row[r] = kFp8 ? w.scale_inv + ((r0 + r) / w.block) * ((w.cols + w.block - 1) / w.block) : nullptr;
  }
  // The last partial chunk is copied into zero-padded buffers: reading past the row could leave
  // the mapping, and garbage × 0 may be NaN.
  alignas(32) uint8_t tail[RB][kCh * es];
  if (full < n_chunks) {
    const size_t n_bytes = size_t(cols - full * kCh) * es;
    DSV3_UNROLL
    for (int r = 0; r < RB; ++r) {
      std::memset(tail[r], 0, sizeof(tail[r]));
      std::memcpy(tail[r], row[r] + full * kCh * es, n_bytes);
    }
  }
  const float* xt[TB];
  DSV3_UNROLL
  for (int t = 0; t < TB; ++t) xt[t] = xp + (t0 + t) * pc;

  // One accumulator per output. (Splitting each into two, for more independent FMA chains, made GCC
  // spill accumulators inside the loop and measured slower.)
  __m256 acc[RB][TB];
  __m256 total[RB][TB];
  DSV3_UNROLL
  for (int r = 0; r < RB; ++r)
    DSV3_UNROLL
    for (int t = 0; t < TB; ++t) acc[r][t] = total[r][t] = _mm256_setzero_ps();

  auto chunk = [&](int64_t c, const uint8_t* const* src) __attribute__((always_inline)) {
    if constexpr (TB == 1) {
      // x first, then each row decoded and consumed at once: fewer live registers than decoding
      // all rows first (which made GCC spill decoded weights).
      __m256 xv[kParts];
      DSV3_UNROLL
      for (int k = 0; k < kParts; ++k) xv[k] = _mm256_loadu_ps(xt[0] + c * kCh + 8 * k);
      DSV3_UNROLL
      for (int r = 0; r < RB; ++r) {
        __m256 wr[kParts];
        if constexpr (kFp8) decode32_fp8(src[r], wr);
        else decode16<D>(src[r], wr[0], wr[1]);
        DSV3_UNROLL
        for (int k = 0; k < kParts; ++k) acc[r][0] = _mm256_fmadd_ps(wr[k], xv[k], acc[r][0]);
      }
      return;
    }
    __m256 wv[RB][kParts];
    DSV3_UNROLL
    for (int r = 0; r < RB; ++r) {
      if constexpr (kFp8) decode32_fp8(src[r], wv[r]);
      else decode16<D>(src[r], wv[r][0], wv[r][1]);
    }
    DSV3_UNROLL
    for (int t = 0; t < TB; ++t) {
      DSV3_UNROLL
      for (int k = 0; k < kParts; ++k) {
        const __m256 xv = _mm256_loadu_ps(xt[t] + c * kCh + 8 * k);
        DSV3_UNROLL
        for (int r = 0; r < RB; ++r) acc[r][t] = _mm256_fmadd_ps(wv[r][k], xv, acc[r][t]);
      }
    }
  };
  for (int64_t b0 = 0; b0 < n_chunks; b0 += per_block) {
    const int64_t b1 = std::min(n_chunks, b0 + per_block);
    const int64_t main_end = std::min(b1, full);
    for (int64_t c = b0; c < main_end; ++c) {
      const uint8_t* src[RB];
      DSV3_UNROLL
      for (int r = 0; r < RB; ++r) src[r] = row[r] + c * kCh * es;
      if (((c * kCh * es) & 63) == 0) {
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
          total[r][t] = _mm256_fmadd_ps(acc[r][t], s, total[r][t]);
          acc[r][t] = _mm256_setzero_ps();
        }
      }
    }
  }
  DSV3_UNROLL
  for (int r = 0; r < RB; ++r)
    DSV3_UNROLL
    for (int t = 0; t < TB; ++t) y[(t0 + t) * w.rows + r0 + r] = kFp8 ? hsum(total[r][t]) * y_scales[t0 + t] : hsum(acc[r][t]);
}

// Tokens in blocks of four (2 rows × 4 tokens = 8 accumulators; measured faster than blocks of two
// for 4 and 8 tokens), then the remainder.
constexpr int kTokenBlock = 4;

template <DType D, int RB>
void gemv_row_block(const LinearWeight& w, const float* xp, int64_t pc, int64_t n_tokens, const float* y_scales,
                    float* y, int64_t r) {
  int64_t t = 0;
  for (; t + kTokenBlock <= n_tokens; t += kTokenBlock) gemv_tile<D, RB, kTokenBlock>(w, xp, pc, y_scales, y, r, t);
  switch (n_tokens - t) {
    case 3: if constexpr (kTokenBlock > 3) gemv_tile<D, RB, 3>(w, xp, pc, y_scales, y, r, t); break;
    case 2: if constexpr (kTokenBlock > 2) gemv_tile<D, RB, 2>(w, xp, pc, y_scales, y, r, t); break;
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
    // Four rows at once: four independent streams in flight and each x chunk loaded once for four rows.
    for (; r + 4 <= row_end; r += 4) gemv_tile<D, 4, 1>(w, xp, pc, y_scales, y, r, 0);
  } else {
    // Two rows per tile (2 x 4 tokens = 8 accumulators); four-row tiles for two tokens measured slower.
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
  const int64_t n_chunks = (cols + kChunk - 1) / kChunk;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const uint8_t* row = static_cast<const uint8_t*>(w.data) + r * cols * es;
    const float* scale_row = kFp8 ? w.scale_inv + (r / w.block) * ((w.cols + w.block - 1) / w.block) : nullptr;
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

void gemv_rows_avx2(const LinearWeight& w, const float* x_packed, int64_t n_tokens, const float* y_scales, float* y,
                    int64_t row_begin, int64_t row_end) {
  switch (w.dtype) {
    case DType::F32: return gemv_rows_typed<DType::F32>(w, x_packed, n_tokens, y_scales, y, row_begin, row_end);
    case DType::F16: return gemv_rows_typed<DType::F16>(w, x_packed, n_tokens, y_scales, y, row_begin, row_end);
    case DType::BF16: return gemv_rows_typed<DType::BF16>(w, x_packed, n_tokens, y_scales, y, row_begin, row_end);
    case DType::F8_E4M3: return gemv_rows_typed<DType::F8_E4M3>(w, x_packed, n_tokens, y_scales, y, row_begin, row_end);
    default: break;
  }
}

void dequantize_rows_avx2(const LinearWeight& w, int64_t row_begin, int64_t row_end, float* out) {
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

}  // namespace dsv3::cpu
