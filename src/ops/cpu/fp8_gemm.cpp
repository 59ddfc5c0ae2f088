// FP8 GEMM with fine-grained scales and FP32 promotion every 128 products (SPEC.md §3), the CPU
// counterpart of DeepSeek's GPU kernel: C[m, n] = Σ_j sA(m, j)·sB(n, j) · Σ_{k in run j} a(m, k)·b(n, k).
//
// Structure (GotoBLAS-style): the output is cut into MC×NC tasks spread over parallel_for. For each
// 128-run j of k a task decodes its A rows and B rows to f32 panels laid out [k][MR] and [k][NR]
// (FP8 -> f32 is exact), a register-tile microkernel sums the run's 128 products per output with
// FMAs in k order (products of two FP8 values are exact in f32, so each FMA is one f32 addition),
// and the tile is promoted: C = fma(partial, sA·sB, C), exactly as reference::fp8_gemm_rows does
// it, so the f32-FMA kernels are bit-exact with the reference.
//   avx2_fma     6×16 tile, 12 ymm accumulators
//   avx512_fma   12×32 tile, 24 zmm accumulators
//   avx512_bf16  12×32 tile with vdpbf16ps: FP8 values are exact in bf16, and the instruction adds
//                the products of two consecutive k into each f32 lane (the pairs are summed, so this
//                kernel is not bit-exact with the k-order reference; it stays within
//                fp8_gemm_error_bound).
// A build compiles every kernel its instruction set allows (an AVX512-BF16 build has all three) and
// uses the one ops/kernels.h names for the fp8_gemm family, the best by default; "scalar" runs the
// reference row-parallel, as do other accumulation modes and builds without AVX2. Panels are packed
// with AVX2 (present on every AVX-512 machine).
// -DDSV3_FP8_SIMDE_AVX512 compiles the AVX-512 kernels through SIMDe on machines without AVX-512
// (testing; add -DDSV3_FP8_SIMDE_NO_BF16 to leave out the avx512_bf16 kernel).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "ops/cpu/kernel_lists.h"
#include "ops/fp8.h"
#include "ops/kernels.h"

#if defined(DSV3_FP8_SIMDE_AVX512)
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#define DSV3_FP8_GEMM_AVX2 1
#define DSV3_FP8_GEMM_AVX512 1
#if !defined(DSV3_FP8_SIMDE_NO_BF16)
#define DSV3_FP8_GEMM_BF16 1
#endif
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define DSV3_FP8_GEMM_AVX2 1
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define DSV3_FP8_GEMM_AVX512 1
#if defined(__AVX512BF16__)
#define DSV3_FP8_GEMM_BF16 1
#endif
#endif
#endif

// Register tiles are arrays indexed in constant loops; they must be fully unrolled to stay in registers.
#define DSV3_UNROLL _Pragma("GCC unroll 32")

#if defined(DSV3_FP8_GEMM_AVX512) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
// GCC 12's avx512fintrin.h trips -Wmaybe-uninitialized on its own _mm512_undefined_ps (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace dsv3 {

#if defined(DSV3_FP8_GEMM_AVX2)
namespace {

// ---- Packing ---------------------------------------------------------------------------------------

// 8 FP8 codes -> 8 exact f32 (as fp8_to_f32 except that every NaN code gives the same quiet NaN).
template <Fp8Format F>
inline __m256 decode8(const uint8_t* p) {
  const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  const __m256i mag = _mm256_and_si256(v, _mm256_set1_epi32(0x7f));
  const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(v, _mm256_set1_epi32(0x80)), 24);
  constexpr bool e4m3 = F == Fp8Format::e4m3;
  constexpr int shift = e4m3 ? 20 : 21;  // code mantissa position in f32
  const __m256i normal = _mm256_add_epi32(_mm256_slli_epi32(mag, shift), _mm256_set1_epi32((e4m3 ? 120 : 112) << 23));
  const __m256 subnormal = _mm256_mul_ps(_mm256_cvtepi32_ps(mag), _mm256_set1_ps(e4m3 ? 0x1p-9f : 0x1p-16f));
  __m256i bits = _mm256_blendv_epi8(normal, _mm256_castps_si256(subnormal),
                                    _mm256_cmpgt_epi32(_mm256_set1_epi32(e4m3 ? 8 : 4), mag));
  const __m256i special =
      e4m3 ? _mm256_cmpeq_epi32(mag, _mm256_set1_epi32(0x7f)) : _mm256_cmpgt_epi32(mag, _mm256_set1_epi32(0x7b));
  bits = _mm256_blendv_epi8(bits, _mm256_set1_epi32(0x7fc00000), special);  // NaN/inf: any NaN will do here
  if (!e4m3) {
    // E5M2 infinities must stay infinities.
    const __m256i inf = _mm256_cmpeq_epi32(mag, _mm256_set1_epi32(0x7c));
    bits = _mm256_blendv_epi8(bits, _mm256_set1_epi32(0x7f800000), inf);
  }
  return _mm256_castsi256_ps(_mm256_or_si256(bits, sign));
}

template <Fp8Format F>
inline __m256 decode8_partial(const uint8_t* p, int n) {
  uint8_t buf[8] = {};  // code 0 is +0 in both formats
  std::memcpy(buf, p, size_t(n));
  return decode8<F>(buf);
}

inline void transpose8x8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// Stores the first w (1..8) lanes of v. Panel widths (6, 12 = 8 + 4, 16, 32) only need 8, 6 and 4,
// done with plain stores: masked stores are slow on some CPUs (AMD Zen).
inline void store_first(float* dst, __m256 v, int w) {
  if (w == 8) {
    _mm256_storeu_ps(dst, v);
  } else if (w == 6 || w == 4) {
    _mm_storeu_ps(dst, _mm256_castps256_ps128(v));
    if (w == 6) _mm_storel_pi(reinterpret_cast<__m64*>(dst + 4), _mm256_extractf128_ps(v, 1));
  } else {
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(w), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    _mm256_maskstore_ps(dst, mask, v);
  }
}

// out[k·width + r] = value of operand element (i0 + r, k0 + k) for k < kc, r < width; zero for rows
// past the operand's end.
template <Fp8Format F>
void pack_panel(const Fp8Operand& op, int64_t i0, int width, int64_t k0, int kc, float* out) {
  const Fp8Matrix& m = op.matrix;
  const int valid = int(std::clamp<int64_t>(op.outer() - i0, 0, width));
  if (op.transposed) {
    // Stored [k, i]: a run of operand rows is contiguous for each k.
    for (int k = 0; k < kc; ++k) {
      const uint8_t* src = m.data + (k0 + k) * m.cols + i0;
      for (int r = 0; r < width; r += 8) {
        const int n = std::clamp(valid - r, 0, 8), w = std::min(8, width - r);
        // Whole 8-byte loads where they stay inside the stored row, even when fewer lanes are kept.
        const bool whole = n >= w && i0 + r + 8 <= m.cols;
        const __m256 v = whole ? decode8<F>(src + r) : n > 0 ? decode8_partial<F>(src + r, n) : _mm256_setzero_ps();
        store_first(out + k * width + r, v, w);
      }
    }
    return;
  }
  // Stored [i, k]: 8 rows × 8 k decoded and transposed at a time.
  for (int r0 = 0; r0 < width; r0 += 8) {
    const int rows = std::clamp(valid - r0, 0, 8), w = std::min(8, width - r0);
    for (int k = 0; k < kc; k += 8) {
      const int kn = std::min(8, kc - k);
      __m256 v[8];
      for (int j = 0; j < 8; ++j) {
        const uint8_t* src = m.data + (i0 + r0 + j) * m.cols + k0 + k;
        v[j] = j >= rows ? _mm256_setzero_ps() : kn == 8 ? decode8<F>(src) : decode8_partial<F>(src, kn);
      }
      transpose8x8(v);
      for (int t = 0; t < kn; ++t) store_first(out + (k + t) * width + r0, v[t], w);
    }
  }
}

void pack(const Fp8Operand& op, int64_t i0, int width, int64_t k0, int kc, float* out) {
  if (op.matrix.format == Fp8Format::e4m3)
    pack_panel<Fp8Format::e4m3>(op, i0, width, k0, kc, out);
  else
    pack_panel<Fp8Format::e5m2>(op, i0, width, k0, kc, out);
}

// ---- Microkernels: partial[MR][NR] = Σ_k a[k][r] · b[k][c] over one run -------------------------
// Each tile type says its register tile (MR × NR), how it multiplies packed panels and how it promotes
// a full tile into C: C[r][c] = fma(partial[r][c], sa[r]·sb[c], C[r][c]). Pairs: whether the panels are
// re-laid out as bf16 pairs (pair_bf16) first.

struct Avx2Tile {
  static constexpr int kMR = 6, kNR = 16;
  static constexpr bool kPairs = false;

  static void multiply(const float* a, const float* b, int kc, float* partial) {
    __m256 acc[kMR][2];
    DSV3_UNROLL for (int r = 0; r < kMR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int k = 0; k < kc; ++k) {
      const __m256 b0 = _mm256_loadu_ps(b + k * kNR), b1 = _mm256_loadu_ps(b + k * kNR + 8);
      DSV3_UNROLL for (int r = 0; r < kMR; ++r) {
        const __m256 ar = _mm256_broadcast_ss(a + k * kMR + r);
        acc[r][0] = _mm256_fmadd_ps(ar, b0, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(ar, b1, acc[r][1]);
      }
    }
    DSV3_UNROLL for (int r = 0; r < kMR; ++r) {
      _mm256_storeu_ps(partial + r * kNR, acc[r][0]);
      _mm256_storeu_ps(partial + r * kNR + 8, acc[r][1]);
    }
  }

  static void promote(const float* partial, const float* sa, const float* sb, float* c, int64_t ldc) {
    const __m256 sb0 = _mm256_loadu_ps(sb), sb1 = _mm256_loadu_ps(sb + 8);
    for (int r = 0; r < kMR; ++r) {
      const __m256 s = _mm256_set1_ps(sa[r]);
      float* cr = c + r * ldc;
      _mm256_storeu_ps(cr,
                       _mm256_fmadd_ps(_mm256_loadu_ps(partial + r * kNR), _mm256_mul_ps(s, sb0), _mm256_loadu_ps(cr)));
      _mm256_storeu_ps(cr + 8, _mm256_fmadd_ps(_mm256_loadu_ps(partial + r * kNR + 8), _mm256_mul_ps(s, sb1),
                                               _mm256_loadu_ps(cr + 8)));
    }
  }
};

#if defined(DSV3_FP8_GEMM_AVX512)
struct Avx512FmaTile {
  static constexpr int kMR = 12, kNR = 32;
  static constexpr bool kPairs = false;

  static void multiply(const float* a, const float* b, int kc, float* partial) {
    __m512 acc[kMR][2];
    DSV3_UNROLL for (int r = 0; r < kMR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int k = 0; k < kc; ++k) {
      const __m512 b0 = _mm512_loadu_ps(b + k * kNR), b1 = _mm512_loadu_ps(b + k * kNR + 16);
      DSV3_UNROLL for (int r = 0; r < kMR; ++r) {
        const __m512 ar = _mm512_set1_ps(a[k * kMR + r]);
        acc[r][0] = _mm512_fmadd_ps(ar, b0, acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(ar, b1, acc[r][1]);
      }
    }
    DSV3_UNROLL for (int r = 0; r < kMR; ++r) {
      _mm512_storeu_ps(partial + r * kNR, acc[r][0]);
      _mm512_storeu_ps(partial + r * kNR + 16, acc[r][1]);
    }
  }

  static void promote(const float* partial, const float* sa, const float* sb, float* c, int64_t ldc) {
    const __m512 sb0 = _mm512_loadu_ps(sb), sb1 = _mm512_loadu_ps(sb + 16);
    for (int r = 0; r < kMR; ++r) {
      const __m512 s = _mm512_set1_ps(sa[r]);
      float* cr = c + r * ldc;
      _mm512_storeu_ps(cr,
                       _mm512_fmadd_ps(_mm512_loadu_ps(partial + r * kNR), _mm512_mul_ps(s, sb0), _mm512_loadu_ps(cr)));
      _mm512_storeu_ps(cr + 16, _mm512_fmadd_ps(_mm512_loadu_ps(partial + r * kNR + 16), _mm512_mul_ps(s, sb1),
                                                _mm512_loadu_ps(cr + 16)));
    }
  }
};
#endif

#if defined(DSV3_FP8_GEMM_BF16)
// f32 panel [kc][width] (values exact in bf16) -> [ceil(kc/2)][width] 32-bit lanes holding the bf16
// of k = 2p in the low half and of k = 2p + 1 in the high half (zero past kc): vdpbf16ps's layout.
void pair_bf16(const float* in, int width, int kc, uint32_t* out) {
  for (int p = 0; p < (kc + 1) / 2; ++p) {
    const float* even = in + 2 * p * width;
    const float* odd = 2 * p + 1 < kc ? even + width : nullptr;
    int r = 0;
    for (; r + 8 <= width; r += 8) {
      const __m256i lo = _mm256_srli_epi32(_mm256_castps_si256(_mm256_loadu_ps(even + r)), 16);
      const __m256i hi =
          odd ? _mm256_and_si256(_mm256_castps_si256(_mm256_loadu_ps(odd + r)), _mm256_set1_epi32(int32_t(0xffff0000u)))
              : _mm256_setzero_si256();
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + p * width + r), _mm256_or_si256(lo, hi));
    }
    for (; r < width; ++r)
      out[p * width + r] =
          (std::bit_cast<uint32_t>(even[r]) >> 16) | (odd ? std::bit_cast<uint32_t>(odd[r]) & 0xffff0000u : 0u);
  }
}

struct Avx512Bf16Tile {
  static constexpr int kMR = Avx512FmaTile::kMR, kNR = Avx512FmaTile::kNR;
  static constexpr bool kPairs = true;

  // a, b: panels re-laid out by pair_bf16.
  static void multiply(const uint32_t* a, const uint32_t* b, int kc, float* partial) {
    __m512 acc[kMR][2];
    DSV3_UNROLL for (int r = 0; r < kMR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int p = 0; p < (kc + 1) / 2; ++p) {
      const __m512bh b0 = std::bit_cast<__m512bh>(_mm512_loadu_si512(b + p * kNR));
      const __m512bh b1 = std::bit_cast<__m512bh>(_mm512_loadu_si512(b + p * kNR + 16));
      DSV3_UNROLL for (int r = 0; r < kMR; ++r) {
        const __m512bh ar = std::bit_cast<__m512bh>(_mm512_set1_epi32(int32_t(a[p * kMR + r])));
        acc[r][0] = _mm512_dpbf16_ps(acc[r][0], ar, b0);
        acc[r][1] = _mm512_dpbf16_ps(acc[r][1], ar, b1);
      }
    }
    DSV3_UNROLL for (int r = 0; r < kMR; ++r) {
      _mm512_storeu_ps(partial + r * kNR, acc[r][0]);
      _mm512_storeu_ps(partial + r * kNR + 16, acc[r][1]);
    }
  }

  static void promote(const float* partial, const float* sa, const float* sb, float* c, int64_t ldc) {
    Avx512FmaTile::promote(partial, sa, sb, c, ldc);
  }
};
#endif

// The same operations one element at a time, for tiles cut by the edge of C.
template <int NR>
void promote_edge(const float* partial, const float* sa, const float* sb, float* c, int64_t ldc, int rows, int cols) {
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < cols; ++j) c[r * ldc + j] = std::fma(partial[r * NR + j], sa[r] * sb[j], c[r * ldc + j]);
}

// Tasks cover MC rows × NC columns of C; their packed panels (MC·128 + NC·128 floats) stay in L2.
// Both are multiples of every tile's MR (6, 12) and NR (16, 32).
constexpr int kMC = 192, kNC = 256;

struct Scratch {
  std::vector<float> a, b, partial;
  std::vector<uint32_t> a_pairs, b_pairs;
};

template <typename Tile>
void gemm_task(const Fp8Operand& a, const Fp8Operand& b, float* c, bool accumulate, int64_t m0, int64_t n0,
               Scratch& s) {
  constexpr int kMR = Tile::kMR, kNR = Tile::kNR;
  static_assert(kMC % kMR == 0 && kNC % kNR == 0);
  const int64_t m_len = a.outer(), n_len = b.outer(), k_len = a.inner();
  const int mc = int(std::min<int64_t>(kMC, m_len - m0)), nc = int(std::min<int64_t>(kNC, n_len - n0));
  const int a_panels = (mc + kMR - 1) / kMR, b_panels = (nc + kNR - 1) / kNR;
  s.a.resize(size_t(kMC) * kFp8Tile);
  s.b.resize(size_t(kNC) * kFp8Tile);
  s.partial.resize(size_t(kMR) * kNR);
  float sa[kMC], sb[kNC];
  if (!accumulate)
    for (int r = 0; r < mc; ++r) std::fill(c + (m0 + r) * n_len + n0, c + (m0 + r) * n_len + n0 + nc, 0.0f);
  for (int64_t k0 = 0; k0 < k_len; k0 += kFp8Tile) {
    const int kc = int(std::min<int64_t>(kFp8Tile, k_len - k0));
    for (int p = 0; p < a_panels; ++p) pack(a, m0 + p * kMR, kMR, k0, kc, s.a.data() + size_t(p) * kMR * kc);
    for (int q = 0; q < b_panels; ++q) pack(b, n0 + q * kNR, kNR, k0, kc, s.b.data() + size_t(q) * kNR * kc);
    for (int r = 0; r < a_panels * kMR; ++r) sa[r] = r < mc ? a.scale(m0 + r, k0) : 0.0f;
    for (int j = 0; j < b_panels * kNR; ++j) sb[j] = j < nc ? b.scale(n0 + j, k0) : 0.0f;
    [[maybe_unused]] const int pairs = (kc + 1) / 2;
    if constexpr (Tile::kPairs) {
#if defined(DSV3_FP8_GEMM_BF16)
      s.a_pairs.resize(size_t(kMC) * kFp8Tile / 2);
      s.b_pairs.resize(size_t(kNC) * kFp8Tile / 2);
      for (int p = 0; p < a_panels; ++p)
        pair_bf16(s.a.data() + size_t(p) * kMR * kc, kMR, kc, s.a_pairs.data() + size_t(p) * kMR * pairs);
      for (int q = 0; q < b_panels; ++q)
        pair_bf16(s.b.data() + size_t(q) * kNR * kc, kNR, kc, s.b_pairs.data() + size_t(q) * kNR * pairs);
#endif
    }
    for (int q = 0; q < b_panels; ++q) {
      const int cols = std::min(kNR, nc - q * kNR);
      for (int p = 0; p < a_panels; ++p) {
        const int rows = std::min(kMR, mc - p * kMR);
        if constexpr (Tile::kPairs)
          Tile::multiply(s.a_pairs.data() + size_t(p) * kMR * pairs, s.b_pairs.data() + size_t(q) * kNR * pairs, kc,
                         s.partial.data());
        else
          Tile::multiply(s.a.data() + size_t(p) * kMR * kc, s.b.data() + size_t(q) * kNR * kc, kc, s.partial.data());
        float* ct = c + (m0 + p * kMR) * n_len + n0 + q * kNR;
        if (rows == kMR && cols == kNR)
          Tile::promote(s.partial.data(), sa + p * kMR, sb + q * kNR, ct, n_len);
        else
          promote_edge<kNR>(s.partial.data(), sa + p * kMR, sb + q * kNR, ct, n_len, rows, cols);
      }
    }
  }
}

template <typename Tile>
void gemm_fast(const Fp8Operand& a, const Fp8Operand& b, float* c, bool accumulate) {
  const int64_t tm = (a.outer() + kMC - 1) / kMC, tn = (b.outer() + kNC - 1) / kNC;
  parallel_for(tm * tn, 1, [&](int64_t t0, int64_t t1) {
    thread_local Scratch scratch;
    for (int64_t t = t0; t < t1; ++t) gemm_task<Tile>(a, b, c, accumulate, (t / tn) * kMC, (t % tn) * kNC, scratch);
  });
}

// Runs the fast kernel `name` (an fp8_gemm_kernel_list entry); false for "scalar".
bool run_fast_kernel(const std::string& name, const Fp8Operand& a, const Fp8Operand& b, float* c, bool accumulate) {
#if defined(DSV3_FP8_GEMM_BF16)
  if (name == "avx512_bf16") return gemm_fast<Avx512Bf16Tile>(a, b, c, accumulate), true;
#endif
#if defined(DSV3_FP8_GEMM_AVX512)
  if (name == "avx512_fma") return gemm_fast<Avx512FmaTile>(a, b, c, accumulate), true;
#endif
  if (name == "avx2_fma") return gemm_fast<Avx2Tile>(a, b, c, accumulate), true;
  return false;
}

}  // namespace
#endif

namespace cpu {
std::vector<std::string> fp8_gemm_kernel_list() {
  std::vector<std::string> list;
#if defined(DSV3_FP8_GEMM_BF16)
  list.push_back("avx512_bf16");
#endif
#if defined(DSV3_FP8_GEMM_AVX512)
  list.push_back("avx512_fma");
#endif
#if defined(DSV3_FP8_GEMM_AVX2)
  list.push_back("avx2_fma");
#endif
  list.push_back("scalar");
  return list;
}
}  // namespace cpu

const char* fp8_gemm_kernel() { return active_kernel(KernelFamily::fp8_gemm).c_str(); }

void fp8_gemm(const Fp8Operand& a, const Fp8Operand& b, float* c, const Fp8GemmOptions& options) {
  validate_fp8_gemm(a, b, c, options);
  const int64_t m_len = a.outer(), n_len = b.outer();
  if (m_len == 0 || n_len == 0) return;
  const Fp8Accumulation& acc = options.accumulation;
  const bool default_mode = acc.promote_interval == kFp8Tile && acc.accumulator_bits == 0;
#if defined(DSV3_FP8_GEMM_AVX2)
  if (default_mode && run_fast_kernel(active_kernel(KernelFamily::fp8_gemm), a, b, c, options.accumulate)) return;
#endif
  // The reference per row block: the scalar kernel, every other accumulation mode, builds without AVX2.
  const int64_t work_per_row = std::max<int64_t>(1, n_len * std::max<int64_t>(a.inner(), 1));
  parallel_for(m_len, std::max<int64_t>(1, (1 << 16) / work_per_row),
               [&](int64_t m0, int64_t m1) { reference::fp8_gemm_rows(a, b, c + m0 * n_len, options, m0, m1); });
  (void)default_mode;
}

}  // namespace dsv3
