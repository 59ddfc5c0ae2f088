// FP8 mixed precision as DeepSeek-V3 trains and serves with it (SPEC.md §3): element conversions,
// fine-grained quantization (1×128 tiles, 128×1 tiles, 128×128 blocks) and the FP8 GEMM with FP32
// promotion every N_C = 128 products, plus an emulation of a tensor core's narrow accumulator.
//
// Every fast function here (src/ops/cpu/fp8_*.cpp) has a scalar twin in dsv3::reference
// (src/ops/reference/fp8_gemm.cpp); conversions and quantizers are bit-exact with their twins (and with
// dtype.h / quantize.h), the GEMM is bit-exact where the kernel sums in f32 in k order and within the
// bound of fp8_gemm_error_bound() everywhere. docs/FP8.md has the formats, scaling and measured errors.
#pragma once

#include <cstdint>

namespace dsv3 {

enum class Fp8Format : uint8_t {
  e4m3,  // OCP "fn": bias 7, max 448, no infinities, 0x7F/0xFF NaN (dtype.h f32_to_e4m3 / e4m3_to_f32)
  e5m2,  // IEEE-like: bias 15, max 57344, infinities (dtype.h f32_to_e5m2 / e5m2_to_f32)
};
float fp8_max(Fp8Format format);  // 448 or 57344
const char* fp8_format_name(Fp8Format format);

// ---- Element conversions -----------------------------------------------------------------------
// Bit-exact with the scalar definitions in dtype.h for every input (NaN, ±inf, ±0, subnormals):
// round to nearest even, saturating to ±max (±inf too), NaN -> 0x7F.
void f32_to_fp8(const float* x, int64_t n, Fp8Format format, uint8_t* out);
// Exact; E4M3 NaN codes give the quiet NaN 0x7FC00000 as e4m3_to_f32 does, E5M2 NaN codes keep
// their payload as e5m2_to_f32 does.
void fp8_to_f32(const uint8_t* q, int64_t n, Fp8Format format, float* out);
// out = fp8(x / scale) (division, as quantize.cpp does, so power-of-two scales are exact).
void f32_to_fp8_scaled(const float* x, int64_t n, float scale, Fp8Format format, uint8_t* out);
// out = value(q) × scale.
void fp8_to_f32_scaled(const uint8_t* q, int64_t n, float scale, Fp8Format format, float* out);

// ---- Fine-grained scaling (SPEC.md §3) -----------------------------------------------------------
// s = max(amax, 1e-4) / fp8_max(format); with pow2 (DeepSeek-V3.1's "ue8m0" scales) rounded up to
// 2^ceil(log2 s) so |x / s| <= max still. Equals quantize.h's fp8_scale_for_amax for E4M3.
float fp8_scale(float amax, Fp8Format format, bool pow2_scales);

inline constexpr int64_t kFp8Tile = 128;
// Which elements share a scale. Scales are stored row-major in a [scale_rows, scale_cols] grid:
//   tile_1x128    one per row per 128 columns  [rows, ceil(cols/128)]          activations, forward
//   tile_128x1    one per column per 128 rows  [ceil(rows/128), cols]          activations/gradients
//                                                                                read along rows (Wgrad)
//   block_128x128 one per 128×128 block        [ceil(rows/128), ceil(cols/128)] weights
enum class Fp8Tiling : uint8_t { tile_1x128, tile_128x1, block_128x128 };
const char* fp8_tiling_name(Fp8Tiling tiling);
int64_t fp8_scale_rows(Fp8Tiling tiling, int64_t rows);
int64_t fp8_scale_cols(Fp8Tiling tiling, int64_t cols);

// A quantized matrix (non-owning view): element (r, c) = value(data[r·cols + c]) × scale(r, c).
struct Fp8Matrix {
  const uint8_t* data = nullptr;  // [rows, cols] FP8 codes, row-major
  const float* scales = nullptr;  // [fp8_scale_rows(tiling, rows), fp8_scale_cols(tiling, cols)]
  int64_t rows = 0;
  int64_t cols = 0;
  Fp8Format format = Fp8Format::e4m3;
  Fp8Tiling tiling = Fp8Tiling::tile_1x128;

  float scale_at(int64_t r, int64_t c) const;
  float value_at(int64_t r, int64_t c) const;  // unscaled FP8 value
  float at(int64_t r, int64_t c) const { return value_at(r, c) * scale_at(r, c); }
};

// x: [rows, cols] f32 -> q: [rows, cols] codes, scales as Fp8Tiling describes; each scale from its
// tile's amax, computed in the same pass ("online"). Bit-exact with reference::quantize_fp8 and, for
// E4M3, with quantize.h's quantize_fp8_tiles_1x128 / quantize_fp8_blocks(block = 128).
void quantize_fp8(const float* x, int64_t rows, int64_t cols, Fp8Format format, Fp8Tiling tiling, bool pow2_scales,
                  uint8_t* q, float* scales);
// x[r, c] = m.at(r, c).
void dequantize_fp8(const Fp8Matrix& m, float* x);
// Exact transpose, no requantization: q_t [cols, rows], scales_t for the transposed tiling
// (1×128 <-> 128×1, 128×128 stays). Returns the view of the result.
Fp8Matrix transpose_fp8(const Fp8Matrix& m, uint8_t* q_t, float* scales_t);

// ---- FP8 GEMM ------------------------------------------------------------------------------------
// C[m, n] = Σ_k A(m, k) · B(n, k): both operands indexed "row-major over k", as linear weights are
// stored ([out, in]). An operand is a stored Fp8Matrix read directly (operand(i, k) = matrix(i, k))
// or transposed (operand(i, k) = matrix(k, i)), so nothing needs re-laying out. Its scale must be
// constant over each aligned 128-run of k, which allows:
//   direct      tile_1x128 or block_128x128
//   transposed  tile_128x1 or block_128x128
// The three training GEMMs of a linear layer y = x·Wᵀ (x [T, in], W [out, in], SPEC.md §3):
//   Fprop  y  [T, out] = x · Wᵀ    a = x  [T, in]   1×128, direct      b = W [out, in] 128×128, direct
//   Dgrad  dx [T, in]  = dy · W    a = dy [T, out]  1×128, direct      b = W [out, in] 128×128, transposed
//   Wgrad  dW [out, in] = dyᵀ · x  a = dy [T, out]  128×1, transposed  b = x [T, in]   128×1,  transposed
// (Wgrad contracts over tokens, so its operands are quantized per 128 tokens of one channel: the
// 128×1 tiling DeepSeek applies to activations and gradients in the backward pass.)
struct Fp8Operand {
  Fp8Matrix matrix;
  bool transposed = false;

  int64_t outer() const { return transposed ? matrix.cols : matrix.rows; }  // m (or n)
  int64_t inner() const { return transposed ? matrix.rows : matrix.cols; }  // k
  float value(int64_t i, int64_t k) const { return transposed ? matrix.value_at(k, i) : matrix.value_at(i, k); }
  float scale(int64_t i, int64_t k) const { return transposed ? matrix.scale_at(k, i) : matrix.scale_at(i, k); }
};

// How partial sums are accumulated (SPEC.md §3, "Accumulation").
//   promote_interval  N_C: products summed into a fresh partial sum before it is promoted, i.e.
//                     multiplied by sA·sB in FP32 and added to the FP32 accumulator (DeepSeek: 128).
//                     0 means one interval spanning all of K (no promotion). When N_C divides 128,
//                     an interval shares one sA·sB and sums unscaled products (as on the GPU);
//                     otherwise each product is scaled before it enters the partial sum.
//   accumulator_bits  0: partial sums are IEEE f32 (products of FP8 values are exact in f32).
//                     p > 0: emulate a tensor core that keeps p significant bits (H800: about 14):
//                     every `fused_terms` products are added to the partial sum in one step that
//                     aligns all of them and the partial sum to the largest exponent among them,
//                     drops the bits below 2^(emax - p + 1) (round toward zero), adds exactly, then
//                     truncates the result to p significant bits. See docs/FP8.md.
//   fused_terms       products per aligned addition in the emulation (32 = the k of one Hopper FP8
//                     MMA; an assumption, see docs/FP8.md).
// The fast kernel runs {128, 0 bits}; every other setting runs the scalar emulation (slow).
struct Fp8Accumulation {
  int64_t promote_interval = 128;
  int accumulator_bits = 0;
  int fused_terms = 32;
};

struct Fp8GemmOptions {
  Fp8Accumulation accumulation;
  bool accumulate = false;  // C += A·Bᵀ instead of C = A·Bᵀ (gradient accumulation)
};

// c: [a.outer(), b.outer()] f32, row-major. Checks shapes, scales and tilings (DSV3_CHECK, "[fp8_gemm]").
// Threads through parallel_for; deterministic for a given thread count (and bit-identical across
// thread counts: each output element is computed by one thread in a fixed order).
void fp8_gemm(const Fp8Operand& a, const Fp8Operand& b, float* c, const Fp8GemmOptions& options = {});
// The checks fp8_gemm makes; throws dsv3::Error naming the first problem.
void validate_fp8_gemm(const Fp8Operand& a, const Fp8Operand& b, const float* c, const Fp8GemmOptions& options);

// The same product on the machine's bf16 matmul (AMX / AVX512-BF16 through oneDNN), for training where
// speed matters more than bit-exactness: each 128-run of k is one bf16 GEMM (FP8 values are exact in bf16
// and their products exact in f32, so the matmul's f32 sum is the run's partial sum, in its own order),
// then promoted into C with the run's scales, C = fma(partial, sA·sB, C). Within fp8_gemm_error_bound;
// deterministic for a given thread count. Default accumulation only. a_bf16 / b_bf16 (optional) are
// the operands' codes already decoded to bf16 in the matrices' layout. Where the bf16_matmul kernel
// family (ops/kernels.h) is not oneDNN's bf16 matmul — CPUs without one, or tests selecting the
// fallback — it computes fp8_gemm instead. Scalar twin: reference::fp8_gemm_by_runs.
void fp8_gemm_by_runs(const Fp8Operand& a, const Fp8Operand& b, float* c, const Fp8GemmOptions& options = {},
                      const uint16_t* a_bf16 = nullptr, const uint16_t* b_bf16 = nullptr);
// codes [rows, cols] of `format` -> their exact bf16 values (threaded over rows).
void fp8_to_bf16(const uint8_t* q, int64_t n, Fp8Format format, uint16_t* out);

// Name of the kernel fp8_gemm uses for the default accumulation: the fp8_gemm family's active
// implementation (ops/kernels.h) — "avx512_bf16", "avx512_fma", "avx2_fma" or "scalar". The f32-FMA
// kernels and "scalar" sum products in k order and are bit-exact with reference::fp8_gemm; avx512_bf16
// (vdpbf16ps) adds products in pairs.
const char* fp8_gemm_kernel();

// Bound on |C - exact| for element (m, n) under FP32 accumulation with promotion every 128, where
// exact = Σ_k A·B of the dequantized operands in exact arithmetic: 128 f32 additions per interval,
// one rounding of sA·sB, of the product by it and of the promoted addition:
//   |err| <= (min(K, 128) + 3 + ceil(K/128)) · 2^-24 · Σ_k |A(m,k)·B(n,k)| (+ tiny second-order terms).
// abs_dot = Σ_k |A(m,k)·B(n,k)| computed in double on the dequantized values.
double fp8_gemm_error_bound(int64_t k, double abs_dot);

namespace reference {
void f32_to_fp8(const float* x, int64_t n, Fp8Format format, uint8_t* out);
void fp8_to_f32(const uint8_t* q, int64_t n, Fp8Format format, float* out);
void quantize_fp8(const float* x, int64_t rows, int64_t cols, Fp8Format format, Fp8Tiling tiling, bool pow2_scales,
                  uint8_t* q, float* scales);
// Single-threaded; rows [m_begin, m_end) of C into c_rows ([m_end - m_begin, N], row m at
// c_rows[(m - m_begin)·N]). The definition of every accumulation mode.
void fp8_gemm_rows(const Fp8Operand& a, const Fp8Operand& b, float* c_rows, const Fp8GemmOptions& options,
                   int64_t m_begin, int64_t m_end);
void fp8_gemm(const Fp8Operand& a, const Fp8Operand& b, float* c, const Fp8GemmOptions& options = {});
// Scalar twin of fp8_gemm_by_runs (default accumulation): each 128-run's partial sum computed in double
// and rounded once to f32 (exact before that rounding for E4M3 operands: ≤ 128 products of ≤ 8
// significant bits between 2^-18 and 2^18 fit in 53 bits), then promoted as reference::fp8_gemm does,
// C = fma(partial, sA·sB, C). The fast version sums each run in the matmul's own f32 order, so the two
// differ by at most that summation's rounding (within fp8_gemm_error_bound), and agree bit for bit
// whenever every partial sum is exact in f32.
void fp8_gemm_by_runs(const Fp8Operand& a, const Fp8Operand& b, float* c, const Fp8GemmOptions& options = {});
// The emulated narrow accumulator's one step: acc plus terms[0..n), aligned, truncated and
// normalised as Fp8Accumulation describes (acc must already hold at most `bits` significant bits).
double truncated_fused_add(double acc, const double* terms, int n, int bits);
}  // namespace reference

}  // namespace dsv3
