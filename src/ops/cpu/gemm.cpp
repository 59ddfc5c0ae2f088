// f32 and bf16 gemm on oneDNN's matmul (see ops/gemm.h).
//
// Transposes are expressed as strides, so no operand is ever copied: op(A) = A [m, k] has strides
// {lda, 1}, its transpose (A stored [k, m]) strides {1, lda}; likewise B and ldb. beta is a `sum`
// post-op; alpha is applied to the result by our own loop (oneDNN 2.6's run-time output scale sends
// matmuls to a path several times slower).
//
// Shapes: training multiplies matrices whose sizes change every step (the tokens routed to each expert
// are the m of the expert GEMMs and the k of their weight gradients), so primitives are created with
// run-time dimensions and strides (DNNL_RUNTIME_DIM_VAL) and cached per (trans_a, trans_b, beta,
// operand type): a handful of primitives serve every shape, and nothing is created in steady state.
// Each calling thread has its own stream and scratchpad (user scratchpad mode), so a primitive may run
// concurrently from parallel_for workers (where oneDNN runs single-threaded inside the worker).
//
// BF16: the f32 operands are rounded to bf16 into per-thread buffers (same layout, packed rows) and
// multiplied by oneDNN's bf16 matmul (AMX or AVX512-BF16 kernels) into the f32 C. Where the CPU has no
// bf16 matmul the rounded operands are widened back to f32 and multiplied by the f32 matmul: the same
// products (bf16·bf16 is exact in f32), accumulated in f32.
#include <dnnl.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/parallel.h"
#include "ops/cpu/kernel_lists.h"
#include "ops/gemm.h"
#include "ops/kernels.h"
#include "ops/ops.h"

namespace dsv3 {
namespace {

using dnnl::memory;
constexpr memory::dim kRuntime = DNNL_RUNTIME_DIM_VAL;

struct Key {
  bool ta, tb;
  float beta;
  memory::data_type operands;
  bool operator<(const Key& o) const {
    return std::tie(ta, tb, beta, operands) < std::tie(o.ta, o.tb, o.beta, o.operands);
  }
};

struct Primitive {
  bool supported = true;  // false: oneDNN has no such matmul on this CPU (remembered, not retried)
  dnnl::matmul matmul;
  dnnl::matmul::primitive_desc pd;
};

struct Engine {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  std::mutex mutex;
  std::map<Key, std::unique_ptr<Primitive>> cache;  // never erased: pointers stay valid
};

Engine& engine() {
  static Engine e;
  return e;
}

// A [rows, cols] matrix with run-time sizes and row stride, stored row-major or (transposed) column-major.
// (Fully run-time strides would select oneDNN's reference matmul; a fixed stride pattern keeps gemm:jit.)
memory::desc runtime_desc(bool transposed, memory::data_type type) {
  return memory::desc({kRuntime, kRuntime}, type, transposed ? memory::dims{1, kRuntime} : memory::dims{kRuntime, 1});
}

// Null when oneDNN has no matmul for the key on this CPU (bf16 without AVX512-BF16/AMX).
const Primitive* find_primitive(const Key& key) {
  Engine& e = engine();
  std::lock_guard<std::mutex> lock(e.mutex);
  auto& slot = e.cache[key];
  if (!slot) {
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (key.beta != 0.0f) {
      dnnl::post_ops ops;
      ops.append_sum(key.beta);
      attr.set_post_ops(ops);
    }
    auto p = std::make_unique<Primitive>();
    try {
      p->pd = dnnl::matmul::primitive_desc(
          dnnl::matmul::desc(runtime_desc(key.ta, key.operands), runtime_desc(key.tb, key.operands),
                             runtime_desc(false, memory::data_type::f32)),
          attr, e.engine);
      p->matmul = dnnl::matmul(p->pd);
    } catch (const dnnl::error& err) {
      DSV3_CHECK(key.operands != memory::data_type::f32, "[gemm] oneDNN cannot create an f32 matmul (", err.what(),
                 ")");
      p = std::make_unique<Primitive>();
      p->supported = false;
    }
    slot = std::move(p);
  }
  return slot->supported ? slot.get() : nullptr;
}

// Per-thread scratchpad, grown to the largest size seen.
void* scratchpad(size_t bytes) {
  thread_local std::unique_ptr<void, void (*)(void*)> data{nullptr, std::free};
  thread_local size_t capacity = 0;
  if (bytes > capacity) {
    const size_t rounded = (bytes + 4095) / 4096 * 4096;
    void* p = std::aligned_alloc(64, rounded);
    DSV3_CHECK(p != nullptr, "[gemm] out of memory allocating ", rounded, " bytes of scratchpad");
    data.reset(p);
    capacity = rounded;
  }
  return data.get();
}

// Per-thread buffers for the bf16 operands (A, then B), grown to the largest size seen.
uint16_t* operand_buffer(int which, size_t elements) {
  struct Buffer {
    std::unique_ptr<uint16_t[], void (*)(void*)> data{nullptr, std::free};
    size_t capacity = 0;
  };
  thread_local Buffer buffers[2];
  Buffer& b = buffers[which];
  if (elements > b.capacity) {
    const size_t bytes = (elements * sizeof(uint16_t) + 4095) / 4096 * 4096;
    uint16_t* p = static_cast<uint16_t*>(std::aligned_alloc(64, bytes));
    DSV3_CHECK(p != nullptr, "[gemm] out of memory allocating ", bytes, " bytes for bf16 operands");
    b.data.reset(p);
    b.capacity = bytes / sizeof(uint16_t);
  }
  return b.data.get();
}

// Per-thread f32 buffers for the fallback without a bf16 matmul, grown to the largest size seen.
float* widened_buffer(int which, size_t elements) {
  thread_local std::vector<float> buffers[2];
  std::vector<float>& b = buffers[which];
  if (b.size() < elements) b.resize(elements);
  return b.data();
}

// out (packed [rows, cols]) = x rounded to bf16 values, kept in f32.
void round_to_bf16_values(const float* x, int64_t rows, int64_t cols, int64_t ld, float* out) {
  parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r)
      for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = bf16_to_f32(f32_to_bf16(x[r * ld + c]));
  });
}

bool check_and_handle_trivial(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, int64_t lda,
                              int64_t ldb, float beta, float* c, int64_t ldc) {
  DSV3_CHECK(m >= 0 && n >= 0 && k >= 0, "[gemm] negative size m=", m, " n=", n, " k=", k);
  DSV3_CHECK(lda >= (ta == Trans::yes ? m : k) && ldb >= (tb == Trans::yes ? k : n) && ldc >= n,
             "[gemm] leading dimensions lda=", lda, " ldb=", ldb, " ldc=", ldc, " too small for m=", m, " n=", n,
             " k=", k);
  if (m == 0 || n == 0) return true;
  if (k == 0 || alpha == 0.0f) {  // C = beta·C
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return true;
  }
  return false;
}

// C = op(A)·op(B) + beta·C (beta as p was made) with A and B of `type` (f32 or bf16) through p.
void run_matmul(const Primitive& p, memory::data_type type, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k,
                const void* a, int64_t lda, const void* b, int64_t ldb, float* c, int64_t ldc) {
  Engine& e = engine();
  thread_local dnnl::stream stream(engine().engine);
  const memory::desc a_desc({m, k}, type, ta == Trans::yes ? memory::dims{1, lda} : memory::dims{lda, 1});
  const memory::desc b_desc({k, n}, type, tb == Trans::yes ? memory::dims{1, ldb} : memory::dims{ldb, 1});
  const memory::desc c_desc({m, n}, memory::data_type::f32, memory::dims{ldc, 1});
  memory a_mem(a_desc, e.engine, const_cast<void*>(a));
  memory b_mem(b_desc, e.engine, const_cast<void*>(b));
  memory c_mem(c_desc, e.engine, c);
  const memory::desc pad_desc = p.pd.scratchpad_desc();
  memory pad(pad_desc, e.engine, scratchpad(pad_desc.get_size() + 64));
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem}, {DNNL_ARG_DST, c_mem},
                                       {DNNL_ARG_SCRATCHPAD, pad}};
  p.matmul.execute(stream, args);
  stream.wait();
}

// C = alpha·op(A)·op(B) + beta·C through oneDNN; false when it has no matmul for `type` on this CPU.
bool matmul(memory::data_type type, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, const void* a,
            int64_t lda, const void* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (alpha == 1.0f) {
    const Primitive* p = find_primitive(Key{ta == Trans::yes, tb == Trans::yes, beta, type});
    if (!p) return false;
    run_matmul(*p, type, ta, tb, m, n, k, a, lda, b, ldb, c, ldc);
    return true;
  }
  const Primitive* p = find_primitive(Key{ta == Trans::yes, tb == Trans::yes, 0.0f, type});
  if (!p) return false;
  if (beta == 0.0f) {  // C = alpha · (A·B)
    run_matmul(*p, type, ta, tb, m, n, k, a, lda, b, ldb, c, ldc);
    parallel_for(m, std::max<int64_t>(1, 16384 / n), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        for (int64_t j = 0; j < n; ++j) c[i * ldc + j] *= alpha;
    });
    return true;
  }
  thread_local std::vector<float> product;
  product.resize(size_t(m * n));
  run_matmul(*p, type, ta, tb, m, n, k, a, lda, b, ldb, product.data(), n);
  const float* prod = product.data();
  parallel_for(m, std::max<int64_t>(1, 16384 / n), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = alpha * prod[i * n + j] + beta * c[i * ldc + j];
  });
  return true;
}

// The stored rows × cols of an operand op(X) [rows, cols]: X itself, or its transpose.
struct Stored {
  int64_t rows, cols;
};
Stored stored_shape(Trans t, int64_t rows, int64_t cols) {
  return t == Trans::yes ? Stored{cols, rows} : Stored{rows, cols};
}

}  // namespace

void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (check_and_handle_trivial(ta, tb, m, n, k, alpha, lda, ldb, beta, c, ldc)) return;
  matmul(memory::data_type::f32, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

namespace cpu {
std::vector<std::string> bf16_matmul_kernel_list() {
  std::vector<std::string> list;
  if (find_primitive(Key{false, false, 0.0f, memory::data_type::bf16}) != nullptr) list.push_back("onednn_bf16");
  list.push_back("f32_matmul");
  return list;
}
}  // namespace cpu

bool has_native_bf16_gemm() { return active_kernel(KernelFamily::bf16_matmul) == "onednn_bf16"; }

void gemm_bf16(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, const uint16_t* a, int64_t lda,
               const uint16_t* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (check_and_handle_trivial(ta, tb, m, n, k, alpha, lda, ldb, beta, c, ldc)) return;
  if (has_native_bf16_gemm() && matmul(memory::data_type::bf16, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc))
    return;
  // No bf16 matmul on this CPU: widen (exactly) and use the f32 one.
  const Stored sa = stored_shape(ta, m, k), sb = stored_shape(tb, k, n);
  float* wa = widened_buffer(0, size_t(sa.rows * sa.cols));
  float* wb = widened_buffer(1, size_t(sb.rows * sb.cols));
  bf16_to_f32_2d(a, sa.rows, sa.cols, lda, wa);
  bf16_to_f32_2d(b, sb.rows, sb.cols, ldb, wb);
  gemm(ta, tb, m, n, k, alpha, wa, sa.cols, wb, sb.cols, beta, c, ldc);
}

void gemm_bf16(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
               const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (check_and_handle_trivial(ta, tb, m, n, k, alpha, lda, ldb, beta, c, ldc)) return;
  const Stored sa = stored_shape(ta, m, k), sb = stored_shape(tb, k, n);
  if (!has_native_bf16_gemm()) {  // round in f32 (bf16 values) and use the f32 matmul: one pass, no widening
    float* wa = widened_buffer(0, size_t(sa.rows * sa.cols));
    float* wb = widened_buffer(1, size_t(sb.rows * sb.cols));
    round_to_bf16_values(a, sa.rows, sa.cols, lda, wa);
    round_to_bf16_values(b, sb.rows, sb.cols, ldb, wb);
    gemm(ta, tb, m, n, k, alpha, wa, sa.cols, wb, sb.cols, beta, c, ldc);
    return;
  }
  uint16_t* ra = operand_buffer(0, size_t(sa.rows * sa.cols));
  uint16_t* rb = operand_buffer(1, size_t(sb.rows * sb.cols));
  f32_to_bf16_2d(a, sa.rows, sa.cols, lda, ra);
  f32_to_bf16_2d(b, sb.rows, sb.cols, ldb, rb);
  gemm_bf16(ta, tb, m, n, k, alpha, ra, sa.cols, rb, sb.cols, beta, c, ldc);
}

}  // namespace dsv3
