// linear()'s GEMV for few tokens, the gemv family of ops/kernels.h: avx512_bf16 (gemv_avx512_bf16.cpp
// for BF16 weights with bf16 activations, gemv_avx512.cpp for the rest), avx512 (gemv_avx512.cpp), avx2
// (gemv_avx2.cpp) or the scalar loops here, chosen at run time from what the CPU has. The SIMD files
// are compiled with their own instruction-set flags whatever the build targets, so a portable build
// (DSV3_NATIVE=OFF) runs the best kernel of the CPU it lands on, and a native build on one CPU still
// holds and tests the narrower ones. This file also packs activations into each kernel's layout.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "ops/cpu/kernel_lists.h"
#include "ops/cpu/linear_kernels.h"
#include "ops/kernels.h"

#if defined(__x86_64__)
#define DSV3_GEMV_X86 1
#endif

namespace dsv3::cpu {

#ifdef DSV3_GEMV_X86
// Entry points of the SIMD files (declared here, not in a header: nothing else may call them on a CPU
// that lacks the instructions). pack_token_avx2/avx512 pack the whole chunks of one token and return
// the columns done, the rest is packed by pack_chunk_scalar; pack_token_bf16_pairs packs the whole row.
int64_t pack_token_avx2(const float* src, int64_t cols, Precision precision, XLayout layout, float x_scale,
                        float* dst);
int64_t pack_token_avx512(const float* src, int64_t cols, Precision precision, XLayout layout, float x_scale,
                          float* dst);
void gemv_rows_avx2(const LinearWeight& w, const float* x_packed, int64_t n_tokens, const float* y_scales, float* y,
                    int64_t row_begin, int64_t row_end);
void gemv_rows_avx512(const LinearWeight& w, const float* x_packed, int64_t n_tokens, const float* y_scales, float* y,
                      int64_t row_begin, int64_t row_end);
void dequantize_rows_avx2(const LinearWeight& w, int64_t row_begin, int64_t row_end, float* out);
void pack_token_bf16_pairs(const float* src, int64_t cols, float* dst);
void gemv_rows_avx512_bf16(const LinearWeight& w, const float* x_packed, int64_t n_tokens, float* y,
                           int64_t row_begin, int64_t row_end);
#endif

namespace {

enum class Isa { scalar, avx2, avx512, avx512_bf16 };

#ifdef DSV3_GEMV_X86
bool cpu_has_avx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
bool cpu_has_avx512() {
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}
bool cpu_has_avx512_bf16() { return cpu_has_avx512() && __builtin_cpu_supports("avx512bf16"); }
#endif

// The gemv family's active implementation.
Isa active_isa() {
  const std::string& name = active_kernel(KernelFamily::gemv);
  return name == "avx512_bf16" ? Isa::avx512_bf16 : name == "avx512" ? Isa::avx512 : name == "avx2" ? Isa::avx2 : Isa::scalar;
}

// Whether the call runs gemv_avx512_bf16.cpp (else avx512_bf16 runs gemv_avx512.cpp).
bool bf16_pairs(Isa isa, DType dtype, Precision precision) {
  return isa == Isa::avx512_bf16 && dtype == DType::BF16 && precision == Precision::bf16;
}

XLayout layout_for(Isa isa, DType dtype, Precision precision) {
  if (bf16_pairs(isa, dtype, precision)) return XLayout::bf16_pairs;
  if (isa == Isa::avx512 || isa == Isa::avx512_bf16) return dtype == DType::BF16 ? XLayout::even_odd32 : dtype == DType::F8_E4M3 ? XLayout::quad64 : XLayout::natural;
  if (isa == Isa::avx2) return dtype == DType::BF16 ? XLayout::even_odd : dtype == DType::F8_E4M3 ? XLayout::quad : XLayout::natural;
  return XLayout::natural;
}

int64_t layout_chunk(XLayout layout) {
  switch (layout) {
    case XLayout::natural: return 16;
    case XLayout::even_odd: return 16;
    case XLayout::quad: return 32;
    case XLayout::even_odd32: return 32;
    case XLayout::quad64: return 64;
    case XLayout::bf16_pairs: return 64;
  }
  return 16;
}

// Column of x stored at position j of a chunk.
int64_t layout_column(XLayout layout, int64_t j) {
  switch (layout) {
    case XLayout::natural: return j;
    case XLayout::even_odd: return j < 8 ? 2 * j : 2 * (j - 8) + 1;
    case XLayout::quad: return 4 * (j % 8) + j / 8;
    case XLayout::even_odd32: return j < 16 ? 2 * j : 2 * (j - 16) + 1;
    case XLayout::quad64: return 4 * (j % 16) + j / 16;
    case XLayout::bf16_pairs: return j;  // packed by pack_token_bf16_pairs only
  }
  return j;
}

// Scalar packing: the definition, used for the partial last chunk (and everything in the scalar kernels).
void pack_chunk_scalar(const float* src, int64_t n_valid, Precision precision, XLayout layout, float x_scale,
                       float* dst) {
  for (int64_t j = 0; j < layout_chunk(layout); ++j) {
    const int64_t c = layout_column(layout, j);
    float v = c < n_valid ? src[c] : 0.0f;
    if (precision == Precision::bf16) v = bf16_to_f32(f32_to_bf16(v));
    dst[j] = v * x_scale;
  }
}

// The scalar implementation: x packed in natural order, unscaled.
void gemv_rows_scalar(const LinearWeight& w, const float* x_packed, int64_t n_tokens, const float* y_scales, float* y,
                      int64_t row_begin, int64_t row_end) {
  const int64_t pc = padded_cols(w.cols);
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t r = row_begin; r < row_end; ++r) {
      float sum = 0;
      for (int64_t c = 0; c < w.cols; ++c) sum += w.at(r, c) * x_packed[t * pc + c];
      y[t * w.rows + r] = sum * y_scales[t];
    }
}

void dequantize_rows_scalar(const LinearWeight& w, int64_t row_begin, int64_t row_end, float* out) {
  for (int64_t r = row_begin; r < row_end; ++r)
    for (int64_t c = 0; c < w.cols; ++c) out[(r - row_begin) * w.cols + c] = w.at(r, c);
}

}  // namespace

std::vector<std::string> gemv_kernel_list() {
  std::vector<std::string> list;
#ifdef DSV3_GEMV_X86
  if (cpu_has_avx512_bf16()) list.push_back("avx512_bf16");
  if (cpu_has_avx512()) list.push_back("avx512");
  if (cpu_has_avx2()) list.push_back("avx2");
#endif
  list.push_back("scalar");
  return list;
}

int64_t gemv_fp8_block_multiple() {
  const Isa isa = active_isa();
  return isa == Isa::avx512 || isa == Isa::avx512_bf16 ? 64 : 32;
}

void pack_activations(const float* x, int64_t n_tokens, int64_t cols, Precision precision, DType weight_dtype,
                      float* out, float* y_scales) {
  const Isa isa = active_isa();
  const XLayout layout = layout_for(isa, weight_dtype, precision);
  const int64_t width = layout_chunk(layout);
  const int64_t pc = padded_cols(cols);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* src = x + t * cols;
    float* dst = out + t * pc;
    float x_scale = 1.0f;
    y_scales[t] = 1.0f;
    if (isa != Isa::scalar && weight_dtype == DType::F8_E4M3) {
      // The SIMD FP8 decoders yield E4M3 × 2^-120 (gemv_avx2.cpp). Per token, x × 2^k with k as large
      // as max|x| · 2^k < 2^127 allows (bf16 rounding may carry max|x| into the next binade), capped
      // at 124; the kernel's sums come out × 2^(k-64).
      float amax = 0.0f;
      for (int64_t i = 0; i < cols; ++i) amax = std::max(amax, std::fabs(src[i]));
      int k = 124;
      if (!std::isfinite(amax)) k = 0;
      else if (amax > 0.0f) k = std::clamp(125 - std::ilogb(amax), 0, 124);
      x_scale = std::ldexp(1.0f, k);
      y_scales[t] = std::ldexp(1.0f, 64 - k);
    }
    int64_t done = 0;
#ifdef DSV3_GEMV_X86
    if (layout == XLayout::bf16_pairs) {
      pack_token_bf16_pairs(src, cols, dst);
      continue;
    }
    if (isa == Isa::avx512 || isa == Isa::avx512_bf16) done = pack_token_avx512(src, cols, precision, layout, x_scale, dst);
    else if (isa == Isa::avx2) done = pack_token_avx2(src, cols, precision, layout, x_scale, dst);
#endif
    for (int64_t c = done; c < pc; c += width)
      pack_chunk_scalar(src + c, cols - c, precision, layout, x_scale, dst + c);
  }
}

void gemv_rows(const LinearWeight& w, const float* x_packed, int64_t n_tokens, Precision precision,
               const float* y_scales, float* y, int64_t row_begin, int64_t row_end) {
#ifdef DSV3_GEMV_X86
  const Isa isa = active_isa();
  if (bf16_pairs(isa, w.dtype, precision)) return gemv_rows_avx512_bf16(w, x_packed, n_tokens, y, row_begin, row_end);
  switch (isa) {
    case Isa::avx512_bf16:
    case Isa::avx512: return gemv_rows_avx512(w, x_packed, n_tokens, y_scales, y, row_begin, row_end);
    case Isa::avx2: return gemv_rows_avx2(w, x_packed, n_tokens, y_scales, y, row_begin, row_end);
    case Isa::scalar: break;
  }
#endif
  gemv_rows_scalar(w, x_packed, n_tokens, y_scales, y, row_begin, row_end);
}

void dequantize_rows_f32(const LinearWeight& w, int64_t row_begin, int64_t row_end, float* out) {
#ifdef DSV3_GEMV_X86
  // The AVX2 decoders serve both SIMD implementations (dequantizing is not on the decode path).
  if (active_isa() != Isa::scalar) return dequantize_rows_avx2(w, row_begin, row_end, out);
#endif
  dequantize_rows_scalar(w, row_begin, row_end, out);
}

}  // namespace dsv3::cpu
