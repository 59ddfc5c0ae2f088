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
#include <string>
#include <vector>

#include "model/config.h"
#include "ops/gemm.h"

namespace dsv3 {

class Fp8Weights;  // train/fp8_linear.h

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

// The arithmetic of a training step's GEMMs (SPEC.md §3, docs/TRAINING.md). Master weights, gradients
// and everything outside GEMMs stay f32 (or double) in every case.
//   f32   every GEMM in f32 (double for T = double: the gradient checks)
//   bf16  every GEMM on bf16-rounded operands with f32 accumulation (ops/gemm.h gemm_bf16)
//   fp8   the linear layers of MLA, MLPs, experts and MTP's eh_proj (Fprop, Dgrad, Wgrad) as FP8 GEMMs
//         with fine-grained scaling (ops/fp8.h); the other GEMMs as bf16
enum class ComputePrecision { f32, bf16, fp8 };
const char* compute_precision_name(ComputePrecision p);  // "f32", "bf16", "fp8"
ComputePrecision parse_compute_precision(const std::string& name);  // throws naming the choices

// Which GEMMs follow the step's precision fully: the linear layers DeepSeek runs in FP8, or the
// products it keeps in higher precision (router gate, output head, attention core; SPEC.md §3).
enum class GemmKind { projection, kept };

// Scratch memory for the transient tensors of forward and backward passes: a stack of T. take() hands
// out 64-byte aligned blocks; Scope releases everything taken within it. It grows by adding blocks
// (never moving earlier ones) until the largest step has run once; after that nothing is allocated.
// It also carries the step's ComputePrecision to the GEMMs run on its behalf.
template <typename T>
struct DeferredWeightGrads;

template <typename T>
class Workspace {
 public:
  T* take(int64_t n);
  int64_t capacity() const;  // elements allocated so far

  ComputePrecision precision() const { return precision_; }
  void set_precision(ComputePrecision p);  // anything but f32 needs T = float

  // The bf16 rounding of the parameter arena [base, base + n) for this step (null: none): GEMMs whose
  // operand is a parameter read it there instead of rounding the weight at every use.
  void set_bf16_weights(const T* base, int64_t n, const uint16_t* bf16) {
    weights_ = base;
    weights_size_ = n;
    weights_bf16_ = bf16;
  }
  const uint16_t* bf16_weight(const T* w) const {
    return weights_bf16_ && w >= weights_ && w < weights_ + weights_size_ ? weights_bf16_ + (w - weights_) : nullptr;
  }
  // The step's FP8 projection weights (fp8 steps; null otherwise).
  void set_fp8_weights(const Fp8Weights* weights) { fp8_weights_ = weights; }
  const Fp8Weights* fp8_weights() const { return fp8_weights_; }
  // n bf16 values of scratch (released with the enclosing Scope).
  uint16_t* take_bf16(int64_t n) { return reinterpret_cast<uint16_t*>(take((n * 2 + sizeof(T) - 1) / sizeof(T))); }

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
  ComputePrecision precision_ = ComputePrecision::f32;
  const T* weights_ = nullptr;
  int64_t weights_size_ = 0;
  const uint16_t* weights_bf16_ = nullptr;
  const Fp8Weights* fp8_weights_ = nullptr;
  DeferredWeightGrads<T>* deferred_ = nullptr;

 public:
  // Zero-bubble backwards (dist/pipeline_train.h): while set, the linears' weight-gradient GEMMs are
  // queued in `deferred` (inputs copied) instead of run; run_deferred_weight_grads runs them later.
  void defer_weight_grads(DeferredWeightGrads<T>* deferred) { deferred_ = deferred; }
  DeferredWeightGrads<T>* deferred_weight_grads() const { return deferred_; }
};

// The weight-gradient GEMMs dW += dyᵀ · x a backward queued, in order, each with copies of its inputs.
template <typename T>
struct DeferredWeightGrads {
  struct Wgrad {
    std::vector<T> x, dy;  // [n, in], [n, out]
    int64_t n = 0, in = 0, out = 0;
    T* dw = nullptr;
    GemmKind kind;
    ComputePrecision precision;
  };
  std::vector<Wgrad> queue;
};

// Runs the queued GEMMs in order (each in the precision it was queued with), bit-equal to running them
// where they were queued; empties the queue.
template <typename T>
void run_deferred_weight_grads(DeferredWeightGrads<T>& deferred, Workspace<T>& ws);

// ---- linear: y[n, out] = x[n, in] · Wᵀ, W [out, in] (Hugging Face layout) ----
// The three GEMMs of a linear layer (Fprop, Dgrad, Wgrad), in the workspace's precision for `kind`.
template <typename T>
void linear_forward(Workspace<T>& ws, const T* x, const T* w, int64_t n, int64_t in, int64_t out, T* y,
                    GemmKind kind = GemmKind::projection);
// dx[n, in] (+)= dy · W: added when `accumulate`, else written.
template <typename T>
void linear_dgrad(Workspace<T>& ws, const T* dy, const T* w, int64_t n, int64_t in, int64_t out, T* dx,
                  bool accumulate, GemmKind kind = GemmKind::projection);
// dW[out, in] += dyᵀ · x.
template <typename T>
void linear_wgrad(Workspace<T>& ws, const T* x, const T* dy, int64_t n, int64_t in, int64_t out, T* dw,
                  GemmKind kind = GemmKind::projection);
// Both: dx += dy · W (dx may be null), dW += dyᵀ · x.
template <typename T>
void linear_backward(Workspace<T>& ws, const T* x, const T* w, const T* dy, int64_t n, int64_t in, int64_t out, T* dx,
                     T* dw, GemmKind kind = GemmKind::projection);

// GEMMs that are not linear layers (the attention core): f32, or bf16 when the step runs bf16 or fp8.
// An operand is its values and, optionally, their bf16 rounding made in advance (same layout), so a
// tensor read by many GEMMs is rounded once. Safe to call from parallel_for workers.
template <typename T>
struct KeptOperand {
  const T* values = nullptr;
  int64_t ld = 0;
  const uint16_t* bf16 = nullptr;  // null: rounded at the call when the GEMM runs in bf16

  KeptOperand at(int64_t offset) const { return {values + offset, ld, bf16 ? bf16 + offset : nullptr}; }
};
template <typename T>
void kept_gemm(ComputePrecision precision, Trans trans_a, Trans trans_b, int64_t m, int64_t n, int64_t k, T alpha,
               const KeptOperand<T>& a, const KeptOperand<T>& b, T beta, T* c, int64_t ldc);
// The bf16 rounding of a packed rows × cols matrix for kept GEMMs, taken from ws; null when the step's
// kept GEMMs run in f32 (nothing to round).
template <typename T>
const uint16_t* round_for_kept_gemms(Workspace<T>& ws, const T* x, int64_t rows, int64_t cols);

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
// x + r·row_stride + j·vector_stride and is at position r % seq, less segment_start[r] when given (packed
// documents: mla_train.h's AttentionContext). forward rotates by +angle; backward applies the transpose
// (the gradient of the rotation): rotation by -angle, same amplitude.
template <typename T>
void rope_forward(T* x, int64_t rows, int64_t seq, int64_t vectors, int64_t row_stride, int64_t vector_stride,
                  const RopeTable& rope, const int32_t* segment_start = nullptr);
template <typename T>
void rope_backward(T* dx, int64_t rows, int64_t seq, int64_t vectors, int64_t row_stride, int64_t vector_stride,
                   const RopeTable& rope, const int32_t* segment_start = nullptr);

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
