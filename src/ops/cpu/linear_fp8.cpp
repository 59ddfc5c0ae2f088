// FP8 weights × activations quantized on the fly (Precision::fp8, DeepSeek's "activation_scheme":
// "dynamic"): x is quantized per 1×128 tile to E4M3, then the FP8 GEMM with FP32 promotion every 128
// products (ops/fp8.h) multiplies it with the weight's 128×128 blocks as stored.
#include <vector>

#include "core/error.h"
#include "ops/cpu/linear_kernels.h"
#include "ops/fp8.h"

namespace dsv3::cpu {

namespace {
// From this many tokens the bf16-matmul GEMM (weights decoded to bf16 once per call) beats the
// register kernel (bench_linear, fp8 cases).
constexpr int64_t kFp8MatmulTokens = 32;
}  // namespace

void linear_fp8_dynamic(const LinearWeight& w, const float* x, float* y, int64_t n_tokens) {
  DSV3_CHECK(w.dtype == DType::F8_E4M3 && w.block == kFp8Tile, "[linear] the dynamic FP8 path needs FP8 weights with ",
             kFp8Tile, "x", kFp8Tile, " blocks");
  thread_local std::vector<uint8_t> codes;
  thread_local std::vector<float> scales;
  codes.resize(size_t(n_tokens * w.cols));
  scales.resize(size_t(n_tokens * fp8_scale_cols(Fp8Tiling::tile_1x128, w.cols)));
  quantize_fp8(x, n_tokens, w.cols, Fp8Format::e4m3, Fp8Tiling::tile_1x128, false, codes.data(), scales.data());
  const Fp8Matrix a{codes.data(), scales.data(), n_tokens, w.cols, Fp8Format::e4m3, Fp8Tiling::tile_1x128};
  const Fp8Matrix b{static_cast<const uint8_t*>(w.data), w.scale_inv, w.rows, w.cols, Fp8Format::e4m3,
                    Fp8Tiling::block_128x128};
  if (n_tokens >= kFp8MatmulTokens)
    fp8_gemm_by_runs(Fp8Operand{a, false}, Fp8Operand{b, false}, y);
  else
    fp8_gemm(Fp8Operand{a, false}, Fp8Operand{b, false}, y);
}

}  // namespace dsv3::cpu
