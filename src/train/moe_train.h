// DeepSeekMoE for training (SPEC.md §1; model/moe.h documents the router semantics, which this file
// reproduces exactly — same selection, same tie-breaking, same weight arithmetic in float).
//
//   logits = W_g x;  s = sigmoid(logits) (V3) or softmax(logits) (V2)
//   selection on s + correction_bias (noaux_tc), with group limits; w_j = s_{e_j} [/ Σ s_sel] · scaling
//   out = Σ_j w_j · expert_{e_j}(x) + shared_experts(x)
//
// Gradients: the selection is piecewise constant, so the router learns only through the weights of the
// selected experts: ∂L/∂w_j = dout · expert_j(x) flows to s (through the normalisation), then to the
// logits (sigmoid or softmax Jacobian) and W_g. The correction bias only shifts the selection: it has
// no gradient (it is updated by the load-balancing rule, SPEC.md §2).
//
// Optional balance losses on the router scores (their gradient is added to s):
//   sequence (DeepSeek-V3's complementary sequence-wise loss, TR eq. 17–20), per sequence of T tokens:
//     f_i = E/(K·T) · #{t : i selected at t},  s'_t = s_t / Σ_j s_{t,j},  P_i = (1/T) Σ_t s'_{t,i},
//     L = α Σ_i f_i P_i, averaged over the sequences of the batch;
//   batch (the classic auxiliary loss of DeepSeek-V2/GShard): the same with the whole batch as one group.
// f is a count (no gradient); P carries the gradient.
//
// Stored for backward (per token): the router scores s [E], the chosen experts and weights [K] each,
// the expert-sorted order, and the SwiGLU inputs of every chosen expert [K·moe_inter ×2] and of the
// shared experts [n_shared·moe_inter ×2]. Expert inputs (gathered from x) and the SwiGLU outputs are
// recomputed.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"
#include "train/mlp_train.h"
#include "train/train_model.h"
#include "train/train_ops.h"

namespace dsv3 {

enum class BalanceLoss { none, sequence, batch };

// Expert parallelism (SPEC.md §4): the routed experts of every MoE layer split over the ranks() ranks of
// a group in contiguous runs — rank p owns experts [p·E/ranks, (p+1)·E/ranks) — while every rank routes
// its own tokens. The MoE layer sends each owner the rows routed to its experts (dispatch), the owners
// run them and send the outputs back (combine), and each rank adds them up per token in slot order, as
// one process does. The owner runs each source rank's rows of an expert as a GEMM of their own, exactly
// the rows one process runs for that micro-batch, so the outputs are bit-equal to it. Backward is the
// mirror image: combine's backward sends the output gradients to the owners, dispatch's backward brings
// the input gradients home; the owner's weight gradient from each source's rows goes back to that source
// (the rank whose micro-batch it belongs to), so a rank's gradient arena is its micro-batch's whole
// gradient, as one process computes it. The group's transport is dist/expert_parallel.h (MPI).
class ExpertGroup {
 public:
  virtual ~ExpertGroup() = default;
  virtual int64_t ranks() const = 0;
  virtual int64_t rank() const = 0;
  // send_bytes[p] bytes to rank p, recv_bytes[p] from it (blocks consecutive in rank order); every rank
  // of the group calls it, also with nothing to send.
  virtual void alltoallv(const void* send, const std::vector<int64_t>& send_bytes, void* recv,
                         const std::vector<int64_t>& recv_bytes) const = 0;
};

// What an expert-parallel rank keeps between a MoE layer's forward and backward about the rows the
// group's ranks (itself included) sent to its experts.
template <typename T>
struct MoeRemoteSaved {
  std::vector<int64_t> rows;           // [ranks, owned experts]: rows from rank p for its i-th owned expert
  std::vector<T> x, weight, gate, up;  // those rows in (rank, expert) order, their routing weights and
                                       // SwiGLU inputs ([rows, H], [rows], [rows, moe_inter] ×2)
};

struct MoeOptions {
  BalanceLoss balance = BalanceLoss::none;
  double balance_alpha = 1e-4;  // α (TR §4.2: 0.0001)
  // Routing replay: keep the experts already in the saved activations (MoeSaved::indices, written by the
  // previous step on the same activations) instead of choosing them from this step's scores. Two runs of
  // one batch then send every token to the same experts, so they can be compared even where rounding
  // differences move a router score across a near-tie (a random-init router has many).
  bool replay_routing = false;
  const ExpertGroup* expert_group = nullptr;  // expert parallelism (null: every expert runs here)
};

template <typename T>
struct MoeSaved {
  T* scores = nullptr;              // [n, E] unbiased router scores
  T* weights = nullptr;             // [n, K] routing weights of the chosen experts
  int32_t* indices = nullptr;       // [n, K] chosen experts, by descending selection score
  int32_t* slot_row = nullptr;      // [n, K] row of (token, slot) in the expert-sorted order
  int64_t* expert_begin = nullptr;  // [E + 1]; expert e's load is expert_begin[e+1] − expert_begin[e]
  T* gate = nullptr;                // [n·K, moe_inter] expert-sorted SwiGLU inputs
  T* up = nullptr;                  // [n·K, moe_inter]
  MlpSaved<T> shared;               // [n, n_shared·moe_inter] each (when there are shared experts)
  MoeRemoteSaved<T>* remote = nullptr;  // under expert parallelism (then gate/up above are unused)
};

// ---- router pieces (public for the tests) ----
// scores [n, E] from logits [n, E] (written).
template <typename T>
void router_scores_forward(const ModelConfig& config, const T* logits, int64_t n, T* scores);
// dlogits (written) from dscores.
template <typename T>
void router_scores_backward(const ModelConfig& config, const T* scores, const T* dscores, int64_t n, T* dlogits);
// The chosen experts (indices [n, K], written) for scores and the correction bias (null unless noaux_tc).
template <typename T>
void route_select(const ModelConfig& config, const T* scores, const T* bias, int64_t n, int32_t* indices);
// weights [n, K] (written) of the chosen experts.
template <typename T>
void route_weights_forward(const ModelConfig& config, const T* scores, const int32_t* indices, int64_t n, T* weights);
// dscores [n, E] += ∂/∂scores of the weights for the upstream dweights [n, K].
template <typename T>
void route_weights_backward(const ModelConfig& config, const T* scores, const int32_t* indices, const T* dweights,
                            int64_t n, T* dscores);
// The balance loss (0 for BalanceLoss::none) and its gradient dscores += ∂L/∂scores.
template <typename T>
double balance_loss_forward(const ModelConfig& config, const MoeOptions& options, const SeqShape& shape,
                            const T* scores, const int32_t* indices);
template <typename T>
void balance_loss_backward(const ModelConfig& config, const MoeOptions& options, const SeqShape& shape,
                           const T* scores, const int32_t* indices, T* dscores);

// ---- the MoE layer ----
// x: [rows, H] (post_attention_layernorm output) -> out [rows, H] (written). Returns the balance loss.
template <typename T>
double moe_forward(const ModelConfig& config, const MoeParams<T>& w, const SeqShape& shape, const MoeOptions& options,
                   const T* x, MoeSaved<T> saved, Workspace<T>& ws, T* out);

// dx [rows, H] += ∂/∂x; dw += parameter gradients (dw.correction_bias is never touched). The balance
// loss enters with weight 1.
template <typename T>
void moe_backward(const ModelConfig& config, const MoeParams<T>& w, const MoeParams<T>& dw, const SeqShape& shape,
                  const MoeOptions& options, const T* x, const MoeSaved<T>& saved, const T* dout, Workspace<T>& ws,
                  T* dx);

}  // namespace dsv3
