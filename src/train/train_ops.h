// The elementary layers of training, each a forward/backward pair templated on the scalar type
// (float for training, double for the finite-difference checks; both instantiated in train_ops.cpp):
// linear (GEMM), RMSNorm, embedding, RoPE, SwiGLU gating. Plus the pieces every training module
// shares: the batch shape, the RoPE table and the workspace.
//
// Conventions of every *_backward in src/train:
//   - gradients of parameters are ADDED (dW += ...), so gradients accumulate over micro-batches and
//     over the uses of a shared tensor;
//   - gradients of inputs named d<input> are ADDED as well (residual streams and tensors used twice
//     just accumulate), unless the comment says "written";
//   - nothing is allocated except from the Workspace;
//   - every reduction runs in a fixed order for a given thread count (no atomics), so a step is
//     bit-reproducible (STYLE.md §5).
// Rows are tokens: a batch of `batch` sequences of `seq` tokens is [batch·seq, ...] with row
// r = b·seq + t holding position t of sequence b.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "model/config.h"
#include "ops/gemm.h"

namespace dsv3 {

struct SeqShape {
  int64_t batch = 0;  // sequences
  int64_t seq = 0;    // tokens per sequence
  int64_t rows() const { return batch * seq; }
};

// cos/sin of RoPE angles for positions [0, positions), from the inference tables (model/rope.h) so
// that training and inference rotate identically: [positions, rope_dim / 2] each.
struct RopeTable {
  int64_t half = 0;
  int64_t positions = 0;
  std::vector<float> cos, sin;
};
RopeTable make_rope_table(const ModelConfig& config, int64_t positions);

// Scratch memory for the transient tensors of forward and backward passes: a stack of T. take() hands
// out 64-byte aligned blocks; Scope releases everything taken within it. It grows by adding blocks
// (never moving earlier ones) until the largest step has run once; after that nothing is allocated.
template <typename T>
class Workspace {
 public:
  T* take(int64_t n);
  int64_t capacity() const;  // elements allocated so far

  class Scope {
   public:
    explicit Scope(Workspace& ws) : ws_(ws), block_(ws.block_), used_(ws.used_) {}
    ~Scope() {
      ws_.block_ = block_;
      ws_.used_ = used_;
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Workspace& ws_;
    size_t block_;
    int64_t used_;
  };

 private:
  struct Block {
    std::unique_ptr<T[], void (*)(void*)> data{nullptr, nullptr};
    int64_t size = 0;
  };
  std::vector<Block> blocks_;
  size_t block_ = 0;  // current block
  int64_t used_ = 0;  // elements used in the current block
};

// ---- linear: y[n, out] = x[n, in] · Wᵀ, W [out, in] (Hugging Face layout) ----
template <typename T>
void linear_forward(const T* x, const T* w, int64_t n, int64_t in, int64_t out, T* y);
// dx[n, in] += dy · W (dx may be null), dW[out, in] += dyᵀ · x.
template <typename T>
void linear_backward(const T* x, const T* w, const T* dy, int64_t n, int64_t in, int64_t out, T* dx, T* dw);

// ---- RMSNorm (SPEC.md §1): y = x · rsqrt(mean(x²) + eps) · w, per row; row strides ldx / ldy ----
template <typename T>
void rmsnorm_forward(const T* x, int64_t ldx, const T* w, int64_t rows, int64_t dim, double eps, T* y, int64_t ldy);
// dx += ∂/∂x, dw += ∂/∂w for the upstream gradient dy; r = rsqrt(mean(x²)+eps) is recomputed from x.
template <typename T>
void rmsnorm_backward(const T* x, int64_t ldx, const T* w, const T* dy, int64_t ldy, int64_t rows, int64_t dim,
                      double eps, T* dx, int64_t lddx, T* dw);

// ---- embedding: y[r] = table[tokens[r]] ----
template <typename T>
void embedding_forward(const T* table, int64_t vocab, int64_t dim, const int32_t* tokens, int64_t rows, T* y);
// dtable[tokens[r]] += dy[r], rows summed in order (parallel over columns: deterministic).
template <typename T>
void embedding_backward(int64_t vocab, int64_t dim, const int32_t* tokens, int64_t rows, const T* dy, T* dtable);

// ---- RoPE on interleaved pairs (model/rope.h), in place ----
// x holds `rows` rows of `vectors` vectors of rope_dim = 2·half values; vector j of row r starts at
// x + r·row_stride + j·vector_stride and is at position r % seq. forward rotates by +angle; backward
// applies the transpose (the gradient of the rotation): rotation by -angle, same amplitude.
template <typename T>
void rope_forward(T* x, int64_t rows, int64_t seq, int64_t vectors, int64_t row_stride, int64_t vector_stride,
                  const RopeTable& rope);
template <typename T>
void rope_backward(T* dx, int64_t rows, int64_t seq, int64_t vectors, int64_t row_stride, int64_t vector_stride,
                   const RopeTable& rope);

// ---- SwiGLU gating: h = silu(g) ⊙ u ----
template <typename T>
void swiglu_forward(const T* g, const T* u, int64_t n, T* h);
// Written (not added): dg = dh ⊙ u ⊙ silu'(g), du = dh ⊙ silu(g). dg may alias dh; du may alias dh.
template <typename T>
void swiglu_backward(const T* g, const T* u, const T* dh, int64_t n, T* dg, T* du);

// ---- helpers shared by the training modules ----
// Row softmax of x[0, n) in place (vectorized for float).
template <typename T>
void softmax_row(T* x, int64_t n);
// Σ a[i]·b[i].
template <typename T>
T dot(const T* a, const T* b, int64_t n);

}  // namespace dsv3
