// linear(): validates the call and picks the kernel.
//   n_tokens <  gemm_min_tokens: GEMV (gemv.cpp), rows split across threads, weights streamed once.
//   n_tokens >= gemm_min_tokens: oneDNN matmul (gemm_onednn.cpp): bf16 for BF16 weights with bf16
//                                activations where the CPU has a bf16 matmul, else f32.
//   Precision::fp8 with FP8 weights: activations quantized per 1×128 tile (linear_fp8.cpp).
// The crossover was measured with bench_linear (see gemm_min_tokens).
#include <algorithm>
#include <memory>

#include "core/error.h"
#include "core/parallel.h"
#include "ops/cpu/linear_kernels.h"
#include "ops/fp8.h"
#include "ops/gemm.h"
#include "ops/linear.h"

namespace dsv3 {
namespace {

// Per-thread growable float buffer for packed/rounded activations: grown to the largest call seen,
// never shrunk, so steady-state calls do not allocate. Only the calling thread writes it.
float* activation_scratch(size_t n) {
  thread_local std::unique_ptr<float[], void (*)(void*)> data{nullptr, std::free};
  thread_local size_t capacity = 0;
  if (n > capacity) {
    const size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
    DSV3_CHECK(p != nullptr, "[linear] out of memory allocating ", bytes, " bytes of activation scratch");
    data.reset(p);
    capacity = n;
  }
  return data.get();
}

void check_weight(const LinearWeight& w) {
  DSV3_CHECK(w.rows >= 0 && w.cols >= 0, "[linear] weight has negative shape [", w.rows, ", ", w.cols, "]");
  DSV3_CHECK(w.dtype == DType::F32 || w.dtype == DType::BF16 || w.dtype == DType::F16 ||
                 w.dtype == DType::F8_E4M3,
             "[linear] weight [", w.rows, ", ", w.cols, "] has dtype ", dtype_name(w.dtype),
             "; linear reads F32, BF16, F16 or F8_E4M3");
  DSV3_CHECK(w.data != nullptr || w.rows * w.cols == 0, "[linear] weight [", w.rows, ", ", w.cols,
             "] has no data");
  if (w.dtype == DType::F8_E4M3) {
    DSV3_CHECK(w.scale_inv != nullptr, "[linear] FP8 weight [", w.rows, ", ", w.cols,
               "] has no scale_inv (load the matching weight_scale_inv tensor)");
    DSV3_CHECK(w.block > 0, "[linear] FP8 weight [", w.rows, ", ", w.cols, "] has block size ", w.block);
  }
}

}  // namespace

int64_t gemm_min_tokens(const LinearWeight& w) {
  // bench_linear "crossover", [2048 x 2048] weights, 2 cores.
  // With a bf16 matmul (Xeon with AMX), BF16 weights are multiplied as they are stored: the matmul wins
  // from 8 tokens (0.39 vs 0.45 ms). FP8 weights (dequantized to f32 for the f32 matmul) from 32 (1.9 vs
  // 2.1 ms; tied at 24).
  // Without one (Zen 3, AVX2): the multi-token GEMV (~85 GFLOP/s once compute-bound) still wins at 32
  // tokens (BF16 3.0 vs 3.4 ms, FP8 2.5 vs 3.0 ms), dequantize + f32 matmul from 48 (4.4 vs 4.7 ms,
  // 4.4 vs 4.9 ms).
  if (has_native_bf16_gemm()) return w.dtype == DType::BF16 ? 8 : w.dtype == DType::F8_E4M3 ? 32 : 40;
  return 40;
}

void linear(const LinearWeight& w, const float* x, float* y, int64_t n_tokens, Precision precision,
            LinearPath path) {
  check_weight(w);
  if (n_tokens <= 0 || w.rows == 0) return;
  DSV3_CHECK(x != nullptr && y != nullptr, "[linear] null activation or output pointer for weight [", w.rows,
             ", ", w.cols, "]");
  if (w.cols == 0) {
    std::fill(y, y + n_tokens * w.rows, 0.0f);
    return;
  }
  if (precision == Precision::fp8) {
    if (w.dtype == DType::F8_E4M3 && w.block == kFp8Tile) {
      cpu::linear_fp8_dynamic(w, x, y, n_tokens);
      return;
    }
    if (w.dtype != DType::F8_E4M3) precision = Precision::bf16;  // activations of non-FP8 weights
  }
  // The fast kernels walk FP8 blocks in 32-column chunks; other block sizes go to the reference.
  if (w.dtype == DType::F8_E4M3 && (w.block % cpu::kFp8Chunk != 0 || precision == Precision::fp8)) {
    reference::linear(w, x, y, n_tokens, precision);
    return;
  }

  const bool use_gemm = path == LinearPath::gemm || (path == LinearPath::automatic && n_tokens >= gemm_min_tokens(w));
  if (use_gemm) {
    if (precision == Precision::bf16 && cpu::gemm_bf16_weights(w, x, n_tokens, y)) return;
    const float* xg = x;
    if (precision == Precision::bf16) {
      float* xr = activation_scratch(size_t(n_tokens * w.cols));
      parallel_for(n_tokens, 16, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin * w.cols; i < end * w.cols; ++i) xr[i] = bf16_to_f32(f32_to_bf16(x[i]));
      });
      xg = xr;
    }
    if (cpu::gemm_onednn(w, xg, n_tokens, y)) return;
  }

  const int64_t pc = cpu::padded_cols(w.cols);
  float* xp = activation_scratch(size_t(n_tokens * (pc + 1)));
  float* y_scales = xp + n_tokens * pc;
  cpu::pack_activations(x, n_tokens, w.cols, precision, w.dtype, xp, y_scales);
  // Rows go to threads in tiles of 4 (the single-token kernel's row block); each row's arithmetic does
  // not depend on the split, so results are identical for any thread count. Threads only pay off when
  // each gets at least ~64 KB of weights.
  const int64_t tile = 4;
  const int64_t n_tiles = (w.rows + tile - 1) / tile;
  const int64_t tile_bytes = int64_t(tile * w.cols * dtype_size(w.dtype));
  const int64_t grain = std::max<int64_t>(1, (int64_t(64) << 10) / std::max<int64_t>(tile_bytes, 1));
  parallel_for(n_tiles, grain, [&](int64_t begin, int64_t end) {
    cpu::gemv_rows(w, xp, n_tokens, y_scales, y, begin * tile, std::min(w.rows, end * tile));
  });
}

void dequantize_rows(const LinearWeight& w, int64_t row_begin, int64_t row_end, float* out) {
  check_weight(w);
  DSV3_CHECK(0 <= row_begin && row_begin <= row_end && row_end <= w.rows, "[dequantize_rows] rows [", row_begin,
             ", ", row_end, ") outside weight [", w.rows, ", ", w.cols, "]");
  if (w.dtype == DType::F8_E4M3 && w.block % cpu::kChunk != 0) {
    for (int64_t r = row_begin; r < row_end; ++r)
      for (int64_t c = 0; c < w.cols; ++c) out[(r - row_begin) * w.cols + c] = w.at(r, c);
    return;
  }
  cpu::dequantize_rows_f32(w, row_begin, row_end, out);
}

}  // namespace dsv3
