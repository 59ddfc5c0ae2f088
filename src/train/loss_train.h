// Output head + softmax cross-entropy for training: logits = h · W_headᵀ, CE_r = −log softmax(logits_r)[target_r].
// Rows are processed in chunks (the [rows, vocab] logits never exist at once), and the gradient is fused
// into the same pass: the loss is the end of the graph, so its upstream gradient (grad_scale) is known
// when the logits are, and the logits need not be stored or recomputed.
#pragma once

#include <cstdint>

#include "train/train_ops.h"

namespace dsv3 {

// A target that does not count (dsv3 sft's prompt tokens, positions across a document boundary): its
// row adds nothing to the sum and gets no gradient.
constexpr int32_t kIgnoredTarget = -1;

// Σ_r CE_r over `rows` rows of h [rows, H] (the final-norm output), head [V, H], rows whose target is
// kIgnoredTarget left out. logits (optional, [rows, V]) receives the logits.
template <typename T>
double head_loss_forward(const T* h, const T* head, int64_t rows, int64_t hidden, int64_t vocab,
                         const int32_t* targets, Workspace<T>& ws, T* logits = nullptr);

// A per-token objective of the targets' log-probabilities in place of the cross-entropy (dsv3 grpo's
// clipped policy objective): the head hands it each counted row's log π(target) and takes back the
// objective's derivative with respect to it. The objective is minimised.
class TokenObjective {
 public:
  virtual ~TokenObjective() = default;
  // Row r's target log-probability under the current weights; returns ∂L/∂ log π_r. Called once per
  // counted row and pass, rows in increasing order.
  virtual double gradient(int64_t row, double logp) = 0;
  // L over the rows seen since the last reset().
  virtual double value() const = 0;
  virtual void reset() = 0;
};

// The objective's value after feeding it every counted row's log π(target) (objective.reset() first).
template <typename T>
double head_objective_forward(const T* h, const T* head, int64_t rows, int64_t hidden, int64_t vocab,
                              const int32_t* targets, TokenObjective& objective, Workspace<T>& ws);
// The same, plus the gradients of L: dh [rows, H] += ..., dhead [V, H] += ... (∂L/∂logits_r is
// ∂L/∂log π_r · (onehot(target) − softmax)).
template <typename T>
double head_objective_forward_backward(const T* h, const T* head, int64_t rows, int64_t hidden, int64_t vocab,
                                       const int32_t* targets, TokenObjective& objective, Workspace<T>& ws, T* dh,
                                       T* dhead);

// The same sum, plus the gradients of grad_scale · Σ_r CE_r: dh [rows, H] += ..., dhead [V, H] += ...
template <typename T>
double head_loss_forward_backward(const T* h, const T* head, int64_t rows, int64_t hidden, int64_t vocab,
                                  const int32_t* targets, double grad_scale, Workspace<T>& ws, T* dh, T* dhead);

}  // namespace dsv3
