// f32 gemm on oneDNN's matmul (see ops/gemm.h).
//
// Transposes are expressed as strides, so no operand is ever copied: op(A) = A [m, k] has strides
// {lda, 1}, its transpose (A stored [k, m]) strides {1, lda}; likewise B and ldb. alpha is an output
// scale and beta a `sum` post-op.
//
// Shapes: training multiplies matrices whose sizes change every step (the tokens routed to each expert
// are the m of the expert GEMMs and the k of their weight gradients), so primitives are created with
// run-time dimensions and strides (DNNL_RUNTIME_DIM_VAL) and cached per (trans_a, trans_b, alpha ≠ 1,
// beta): a handful of primitives serve every shape, and nothing is created in steady state.
// Each calling thread has its own stream and scratchpad (user scratchpad mode), so a primitive may run
// concurrently from parallel_for workers (where oneDNN runs single-threaded inside the worker).
#include <dnnl.hpp>

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "core/error.h"
#include "ops/gemm.h"

namespace dsv3 {
namespace {

using dnnl::memory;
constexpr memory::dim kRuntime = DNNL_RUNTIME_DIM_VAL;

struct Key {
  bool ta, tb, scaled;
  float beta;
  bool operator<(const Key& o) const { return std::tie(ta, tb, scaled, beta) < std::tie(o.ta, o.tb, o.scaled, o.beta); }
};

struct Primitive {
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
memory::desc runtime_desc(bool transposed) {
  return memory::desc({kRuntime, kRuntime}, memory::data_type::f32,
                      transposed ? memory::dims{1, kRuntime} : memory::dims{kRuntime, 1});
}

const Primitive& get_primitive(const Key& key) {
  Engine& e = engine();
  std::lock_guard<std::mutex> lock(e.mutex);
  auto& slot = e.cache[key];
  if (!slot) {
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (key.scaled) attr.set_output_scales(0, {DNNL_RUNTIME_F32_VAL});
    if (key.beta != 0.0f) {
      dnnl::post_ops ops;
      ops.append_sum(key.beta);
      attr.set_post_ops(ops);
    }
    auto p = std::make_unique<Primitive>();
    try {
      p->pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(runtime_desc(key.ta), runtime_desc(key.tb), runtime_desc(false)), attr,
                                           e.engine);
      p->matmul = dnnl::matmul(p->pd);
    } catch (const dnnl::error& err) {
      e.cache.erase(key);
      DSV3_FAIL("[gemm] oneDNN cannot create an f32 matmul (", err.what(), ")");
    }
    slot = std::move(p);
  }
  return *slot;
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

}  // namespace

void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  DSV3_CHECK(m >= 0 && n >= 0 && k >= 0, "[gemm] negative size m=", m, " n=", n, " k=", k);
  DSV3_CHECK(lda >= (ta == Trans::yes ? m : k) && ldb >= (tb == Trans::yes ? k : n) && ldc >= n,
             "[gemm] leading dimensions lda=", lda, " ldb=", ldb, " ldc=", ldc, " too small for m=", m, " n=", n,
             " k=", k);
  if (m == 0 || n == 0) return;
  if (k == 0 || alpha == 0.0f) {  // C = beta·C
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return;
  }
  const Key key{ta == Trans::yes, tb == Trans::yes, alpha != 1.0f, beta};
  const Primitive& p = get_primitive(key);
  Engine& e = engine();
  thread_local dnnl::stream stream(engine().engine);
  const memory::desc a_desc({m, k}, memory::data_type::f32,
                            ta == Trans::yes ? memory::dims{1, lda} : memory::dims{lda, 1});
  const memory::desc b_desc({k, n}, memory::data_type::f32,
                            tb == Trans::yes ? memory::dims{1, ldb} : memory::dims{ldb, 1});
  const memory::desc c_desc({m, n}, memory::data_type::f32, memory::dims{ldc, 1});
  memory a_mem(a_desc, e.engine, const_cast<float*>(a));
  memory b_mem(b_desc, e.engine, const_cast<float*>(b));
  memory c_mem(c_desc, e.engine, c);
  const memory::desc pad_desc = p.pd.scratchpad_desc();
  memory pad(pad_desc, e.engine, scratchpad(pad_desc.get_size() + 64));
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem}, {DNNL_ARG_DST, c_mem},
                                       {DNNL_ARG_SCRATCHPAD, pad}};
  float alpha_value = alpha;
  if (key.scaled)
    args.emplace(DNNL_ARG_ATTR_OUTPUT_SCALES,
                 memory(memory::desc({1}, memory::data_type::f32, memory::dims{1}), e.engine, &alpha_value));
  p.matmul.execute(stream, args);
  stream.wait();
}

}  // namespace dsv3
