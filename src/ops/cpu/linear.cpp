// linear(): validates the call and picks the kernel.
//   n_tokens <  gemm_min_tokens: GEMV (gemv.cpp picks the CPU's best: gemv_avx512_bf16.cpp,
//                                gemv_avx512.cpp, gemv_avx2.cpp), rows split across threads, weights
//                                streamed once.
//   n_tokens >= gemm_min_tokens: oneDNN matmul (gemm_onednn.cpp): bf16 for BF16 weights with bf16
//                                activations where the CPU has a bf16 matmul, else f32.
//   Precision::fp8 with FP8 weights: activations quantized per 1×128 tile (linear_fp8.cpp).
// The crossover was measured with bench_linear (see gemm_min_tokens).
// linear_group(): the same routes for many calls in one parallel region (ops/linear.h).
#include <algorithm>
#include <memory>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "ops/cpu/linear_kernels.h"
#include "ops/fp8.h"
#include "ops/gemm.h"
#include "ops/kernels.h"
#include "ops/linear.h"

namespace dsv3 {
namespace {

// Per-thread growable float buffers for packed/rounded activations: grown to the largest call seen,
// never shrunk, so steady-state calls do not allocate. Only the owning thread writes them. linear()
// uses kLinear; linear_group packs its GEMV calls into kGroup, which stays valid while the group's
// GEMM calls (linear() on the same thread) use kLinear.
enum ScratchSlot { kLinear, kGroup, kScratchSlots };
float* activation_scratch(size_t n, ScratchSlot slot = kLinear) {
  struct Buffer {
    std::unique_ptr<float[], void (*)(void*)> data{nullptr, std::free};
    size_t capacity = 0;
  };
  thread_local Buffer buffers[kScratchSlots];
  Buffer& b = buffers[slot];
  if (n > b.capacity) {
    const size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
    DSV3_CHECK(p != nullptr, "[linear] out of memory allocating ", bytes, " bytes of activation scratch");
    b.data.reset(p);
    b.capacity = n;
  }
  return b.data.get();
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

int64_t gemm_min_tokens(const LinearWeight& w, Precision precision) {
  // bench_linear "crossover", [2048 x 2048] weights, 2 cores.
  // With a bf16 matmul (Xeon with AMX), BF16 weights are multiplied as they are stored: the matmul wins
  // from 8 tokens (0.39 vs 0.45 ms). FP8 weights (dequantized to f32 for the f32 matmul) from 32 (1.9 vs
  // 2.1 ms; tied at 24).
  // Without one (Zen 3, AVX2): the multi-token GEMV (~85 GFLOP/s once compute-bound) still wins at 32
  // tokens (BF16 3.0 vs 3.4 ms, FP8 2.5 vs 3.0 ms), dequantize + f32 matmul from 48 (4.4 vs 4.7 ms,
  // 4.4 vs 4.9 ms).
  // With the avx512_bf16 GEMV (vdpbf16ps, AMD Zen 5, 2 cores) BF16 weights with bf16 activations stay on
  // the GEMV up to 48 tokens (16: 0.31 vs 0.63 ms; 48: 0.87 vs 1.00 ms; 64: 1.19 vs 1.12 ms) — for rows of
  // 1024 or more; short rows (MoE down projections, [1024 x 256]) pay the GEMV's per-output reduction
  // more often and the matmul wins from ~16 tokens (48: 81 vs 50 us), so they switch at 24.
  if (w.dtype == DType::BF16 && precision == Precision::bf16 && active_kernel(KernelFamily::gemv) == "avx512_bf16")
    return w.cols <= 512 ? 24 : 64;
  if (has_native_bf16_gemm()) return w.dtype == DType::BF16 ? 8 : w.dtype == DType::F8_E4M3 ? 32 : 40;
  return 40;
}

namespace {

// How linear() runs a call.
enum class Route { nothing, zeros, fp8_dynamic, reference, gemm, gemv };

// Validates the call and picks its route; `precision` becomes the activations' precision for weights
// that are not FP8 (fp8 means bf16 for them).
Route route_of(const LinearWeight& w, const float* x, const float* y, int64_t n_tokens, Precision& precision,
               LinearPath path) {
  check_weight(w);
  if (n_tokens <= 0 || w.rows == 0) return Route::nothing;
  DSV3_CHECK(x != nullptr && y != nullptr, "[linear] null activation or output pointer for weight [", w.rows,
             ", ", w.cols, "]");
  if (w.cols == 0) return Route::zeros;
  if (precision == Precision::fp8) {
    if (w.dtype == DType::F8_E4M3 && w.block == kFp8Tile) return Route::fp8_dynamic;
    if (w.dtype != DType::F8_E4M3) precision = Precision::bf16;  // activations of non-FP8 weights
  }
  // The fast kernels walk FP8 blocks in 32- or 64-column chunks; other block sizes go to the reference.
  if (w.dtype == DType::F8_E4M3 && (w.block % cpu::gemv_fp8_block_multiple() != 0 || precision == Precision::fp8))
    return Route::reference;
  const bool use_gemm = path == LinearPath::gemm || (path == LinearPath::automatic && n_tokens >= gemm_min_tokens(w, precision));
  return use_gemm ? Route::gemm : Route::gemv;
}

// The GEMM route; falls back to the GEMV when oneDNN cannot run the call (returns false).
bool run_gemm(const LinearWeight& w, const float* x, float* y, int64_t n_tokens, Precision precision) {
  if (precision == Precision::bf16 && cpu::gemm_bf16_weights(w, x, n_tokens, y)) return true;
  const float* xg = x;
  if (precision == Precision::bf16) {
    float* xr = activation_scratch(size_t(n_tokens * w.cols));
    parallel_for(n_tokens, 16, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin * w.cols; i < end * w.cols; ++i) xr[i] = bf16_to_f32(f32_to_bf16(x[i]));
    });
    xg = xr;
  }
  return cpu::gemm_onednn(w, xg, n_tokens, y);
}

// Rows go to threads in tiles of 4 (the single-token kernels' smallest row block); each row's
// arithmetic does not depend on the split, so results are identical for any thread count or grouping.
constexpr int64_t kRowTile = 4;

}  // namespace

void linear(const LinearWeight& w, const float* x, float* y, int64_t n_tokens, Precision precision,
            LinearPath path) {
  switch (route_of(w, x, y, n_tokens, precision, path)) {
    case Route::nothing: return;
    case Route::zeros: std::fill(y, y + n_tokens * w.rows, 0.0f); return;
    case Route::fp8_dynamic: cpu::linear_fp8_dynamic(w, x, y, n_tokens); return;
    case Route::reference: reference::linear(w, x, y, n_tokens, precision); return;
    case Route::gemm:
      if (run_gemm(w, x, y, n_tokens, precision)) return;
      break;
    case Route::gemv: break;
  }
  const int64_t pc = cpu::padded_cols(w.cols);
  float* xp = activation_scratch(size_t(n_tokens * (pc + 1)));
  float* y_scales = xp + n_tokens * pc;
  cpu::pack_activations(x, n_tokens, w.cols, precision, w.dtype, xp, y_scales);
  // Threads only pay off when each gets at least ~64 KB of weights.
  const int64_t n_tiles = (w.rows + kRowTile - 1) / kRowTile;
  const int64_t tile_bytes = int64_t(kRowTile * w.cols * dtype_size(w.dtype));
  const int64_t grain = std::max<int64_t>(1, (int64_t(64) << 10) / std::max<int64_t>(tile_bytes, 1));
  parallel_for(n_tiles, grain, [&](int64_t begin, int64_t end) {
    cpu::gemv_rows(w, xp, n_tokens, precision, y_scales, y, begin * kRowTile, std::min(w.rows, end * kRowTile));
  });
}

void linear_group(const LinearCall* calls, int64_t n_calls, Precision precision) {
  // A unit of work: rows [row_begin, row_end) of one GEMV call (~kUnitBytes of weights), or a whole GEMM
  // call, with an estimate of its seconds on one thread. Threads take contiguous runs of units of
  // equal estimated time: a MoE layer's experts range from one token (weight streaming) to hundreds
  // (arithmetic), so equal bytes or equal counts would leave one thread idle.
  struct Unit {
    int64_t call, row_begin, row_end;
    bool gemm;
    double seconds;
  };
  struct Packed {
    const float* x;
    const float* y_scales;
    Precision precision;
  };
  constexpr int64_t kUnitBytes = int64_t(32) << 10;
  // Rough per-thread rates (2-core Zen 5 / Xeon, bench_linear): only their ratios matter.
  constexpr double kStreamBytesPerSecond = 25e9, kGemvFlops = 150e9, kGemmFlops = 300e9;
  // The calling thread's lists, reused from call to call. Named through references: inside the
  // parallel region a thread_local's name would mean the worker's own (empty) copy.
  thread_local std::vector<Unit> units_storage;
  thread_local std::vector<Packed> packed_storage;
  thread_local std::vector<int64_t> offsets_storage;
  std::vector<Unit>& units = units_storage;
  std::vector<Packed>& packed = packed_storage;
  std::vector<int64_t>& offsets = offsets_storage;  // packed activations of call i start at offsets[i]
  units.clear();
  packed.assign(size_t(n_calls), Packed{nullptr, nullptr, precision});
  offsets.assign(size_t(n_calls) + 1, 0);
  for (int64_t i = 0; i < n_calls; ++i) {
    const LinearCall& call = calls[i];
    Precision p = precision;
    const Route route = route_of(*call.w, call.x, call.y, call.n_tokens, p, LinearPath::automatic);
    if (route == Route::gemm) {
      const double flops = 2.0 * double(call.n_tokens) * double(call.w->rows) * double(call.w->cols);
      units.push_back({i, 0, call.w->rows, true, flops / kGemmFlops});
      continue;
    }
    if (route != Route::gemv) {
      linear(*call.w, call.x, call.y, call.n_tokens, precision);
      continue;
    }
    packed[size_t(i)].x = call.x;  // marks the call as one for the GEMV; replaced by its packed copy
    packed[size_t(i)].precision = p;
    offsets[size_t(i) + 1] = call.n_tokens * (cpu::padded_cols(call.w->cols) + 1);
  }
  for (int64_t i = 0; i < n_calls; ++i) offsets[size_t(i) + 1] += offsets[size_t(i)];
  float* scratch = offsets.back() > 0 ? activation_scratch(size_t(offsets.back()), kGroup) : nullptr;
  for (int64_t i = 0; i < n_calls; ++i) {
    if (packed[size_t(i)].x == nullptr) continue;
    const LinearCall& call = calls[i];
    const LinearWeight& w = *call.w;
    float* xp = scratch + offsets[size_t(i)];
    float* y_scales = xp + call.n_tokens * cpu::padded_cols(w.cols);
    cpu::pack_activations(call.x, call.n_tokens, w.cols, packed[size_t(i)].precision, w.dtype, xp, y_scales);
    packed[size_t(i)].x = xp;
    packed[size_t(i)].y_scales = y_scales;
    const int64_t row_bytes = int64_t(w.cols * dtype_size(w.dtype));
    const int64_t rows_per_unit = std::max<int64_t>(1, kUnitBytes / std::max<int64_t>(row_bytes * kRowTile, 1)) * kRowTile;
    for (int64_t r = 0; r < w.rows; r += rows_per_unit) {
      const int64_t rows = std::min(w.rows, r + rows_per_unit) - r;
      const double seconds = std::max(double(rows * row_bytes) / kStreamBytesPerSecond,
                                      2.0 * double(rows * w.cols * call.n_tokens) / kGemvFlops);
      units.push_back({i, r, r + rows, false, seconds});
    }
  }
  if (units.empty()) return;
  auto run = [&](const Unit& unit) {
    const LinearCall& call = calls[unit.call];
    if (unit.gemm) {
      linear(*call.w, call.x, call.y, call.n_tokens, precision);  // on this thread alone inside a worker
      return;
    }
    const Packed& p = packed[size_t(unit.call)];
    cpu::gemv_rows(*call.w, p.x, call.n_tokens, p.precision, p.y_scales, call.y, unit.row_begin, unit.row_end);
  };
  double total = 0;
  for (const Unit& unit : units) total += unit.seconds;
  // As in linear(): threads pay off from ~64 KB of weights (a few microseconds) each.
  if (num_threads() <= 1 || total < 2 * double(int64_t(64) << 10) / kStreamBytesPerSecond) {
    for (const Unit& unit : units) run(unit);
    return;
  }
  // Thread t runs the units whose midpoint in the running total falls in its share [t, t + 1) · total / T.
  parallel_run([&](int thread, int threads) {
    double before = 0;
    for (const Unit& unit : units) {
      const double middle = before + unit.seconds / 2;
      before += unit.seconds;
      if (int(middle / total * threads) == thread || (thread == threads - 1 && middle >= total)) run(unit);
    }
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
