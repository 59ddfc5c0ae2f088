// Many-token linear (prefill): oneDNN f32 matmul y = x · Wᵀ.
//
// The weight is handed to oneDNN as the transposed B operand ([cols, rows] with strides {1, cols}),
// which is exactly the checkpoint's row-major [rows, cols] layout: F32 weights are used in place.
// BF16/F16/FP8 weights are dequantized to f32 in chunks of rows (bounded scratch, the conversion
// amortized over all tokens) and multiplied chunk by chunk into the strided columns of y.
// oneDNN 2.6 on this project's CPUs without AVX-512 has no bf16 matmul at all, and bf16 × bf16
// products are exact in f32, so Precision::bf16 is served by the same f32 matmul on bf16-rounded x.
//
// Primitives are created once per shape and kept in a mutex-guarded map. Each calling thread has its
// own stream and scratch buffers (thread_local, grown to the largest size seen, never shrunk), and
// primitives use a user-provided scratchpad from that buffer, so concurrent callers do not share
// oneDNN's scratchpad and steady-state calls do not allocate.
#include <dnnl.hpp>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "ops/cpu/linear_kernels.h"
#include "ops/gemm.h"
#include "ops/ops.h"

namespace dsv3::cpu {
namespace {

using dnnl::memory;

struct MatmulKey {
  int64_t m, n, k, ldc;
  bool operator<(const MatmulKey& o) const { return std::tie(m, n, k, ldc) < std::tie(o.m, o.n, o.k, o.ldc); }
};

struct Matmul {
  dnnl::matmul primitive;
  memory::desc src, weights, dst, scratchpad;
};

struct OneDnn {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  std::mutex mutex;
  std::map<MatmulKey, std::unique_ptr<Matmul>> cache;  // entries are never erased: pointers stay valid
};

OneDnn& onednn() {
  static OneDnn instance;
  return instance;
}

// y[m, n] (row stride ldc) = x[m, k] · B where B[k, n] is stored as n rows of k floats.
const Matmul* get_matmul(int64_t m, int64_t n, int64_t k, int64_t ldc) {
  OneDnn& d = onednn();
  std::lock_guard<std::mutex> lock(d.mutex);
  auto& slot = d.cache[MatmulKey{m, n, k, ldc}];
  if (!slot) {
    auto mm = std::make_unique<Matmul>();
    mm->src = memory::desc({m, k}, memory::data_type::f32, memory::dims{k, 1});
    mm->weights = memory::desc({k, n}, memory::data_type::f32, memory::dims{1, k});
    mm->dst = memory::desc({m, n}, memory::data_type::f32, memory::dims{ldc, 1});
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    try {
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(mm->src, mm->weights, mm->dst), attr, d.engine);
      mm->scratchpad = pd.scratchpad_desc();
      mm->primitive = dnnl::matmul(pd);
    } catch (const dnnl::error&) {
      d.cache.erase(MatmulKey{m, n, k, ldc});
      return nullptr;
    }
    slot = std::move(mm);
  }
  return slot.get();
}

// Per-thread growable buffer (64-byte aligned floats).
struct Scratch {
  std::unique_ptr<float[], void (*)(void*)> data{nullptr, std::free};
  size_t capacity = 0;  // in floats
  float* get(size_t n) {
    if (n > capacity) {
      const size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
      float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
      DSV3_CHECK(p != nullptr, "[linear] out of memory allocating ", bytes, " bytes of GEMM scratch");
      data.reset(p);
      capacity = n;
    }
    return data.get();
  }
};

bool run_matmul(const Matmul& mm, const float* x, const float* w, float* y) {
  thread_local dnnl::stream stream(onednn().engine);
  thread_local Scratch pad;
  OneDnn& d = onednn();
  memory src(mm.src, d.engine, const_cast<float*>(x));
  memory weights(mm.weights, d.engine, const_cast<float*>(w));
  memory dst(mm.dst, d.engine, y);
  memory scratch(mm.scratchpad, d.engine, pad.get(mm.scratchpad.get_size() / sizeof(float) + 1));
  mm.primitive.execute(stream, {{DNNL_ARG_SRC, src},
                                {DNNL_ARG_WEIGHTS, weights},
                                {DNNL_ARG_DST, dst},
                                {DNNL_ARG_SCRATCHPAD, scratch}});
  stream.wait();
  return true;
}

// Rows of weight dequantized per matmul call: about 4M floats (16 MB) of scratch, at least 64 rows.
int64_t chunk_rows(int64_t rows, int64_t cols) {
  const int64_t target = std::max<int64_t>(64, (int64_t(4) << 20) / std::max<int64_t>(cols, 1));
  if (rows <= target) return rows;
  const int64_t n_chunks = (rows + target - 1) / target;
  return (rows + n_chunks - 1) / n_chunks;  // equal chunks, so one primitive serves all but maybe the last
}

}  // namespace

bool gemm_onednn(const LinearWeight& w, const float* x, int64_t n_tokens, float* y) {
  if (w.dtype == DType::F32) {
    const Matmul* mm = get_matmul(n_tokens, w.rows, w.cols, w.rows);
    return mm && run_matmul(*mm, x, static_cast<const float*>(w.data), y);
  }
  thread_local Scratch weight_scratch;
  const int64_t chunk = chunk_rows(w.rows, w.cols);
  float* wf = weight_scratch.get(size_t(chunk * w.cols));
  for (int64_t r0 = 0; r0 < w.rows; r0 += chunk) {
    const int64_t nr = std::min(chunk, w.rows - r0);
    const Matmul* mm = get_matmul(n_tokens, nr, w.cols, w.rows);
    if (!mm) return false;
    parallel_for(nr, 8, [&](int64_t begin, int64_t end) {
      dequantize_rows_f32(w, r0 + begin, r0 + end, wf + begin * w.cols);
    });
    run_matmul(*mm, x, wf, y + r0);
  }
  return true;
}

bool gemm_bf16_weights(const LinearWeight& w, const float* x, int64_t n_tokens, float* y) {
  if (w.dtype != DType::BF16 || !has_native_bf16_gemm()) return false;
  thread_local std::vector<uint16_t> rounded;
  rounded.resize(size_t(n_tokens * w.cols));
  f32_to_bf16_2d(x, n_tokens, w.cols, w.cols, rounded.data());
  gemm_bf16(Trans::no, Trans::yes, n_tokens, w.rows, w.cols, 1.0f, rounded.data(), w.cols,
            static_cast<const uint16_t*>(w.data), w.cols, 0.0f, y, w.rows);
  return true;
}

}  // namespace dsv3::cpu
