#include "train/loss_train.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/profiler.h"
#include "core/error.h"
#include "core/parallel.h"

namespace dsv3 {

namespace {

// Rows per chunk: about 4M logits.
int64_t chunk_rows(int64_t rows, int64_t vocab) {
  return std::max<int64_t>(1, std::min<int64_t>(rows, (int64_t(1) << 22) / std::max<int64_t>(vocab, 1)));
}

// logits -> probabilities in place; returns Σ CE of the chunk. −log p_t = (max − l_t) − log p_max, exact
// even when p_t underflows (p_max = 1 / Σ exp(l − max) >= 1/V never does).
template <typename T>
double softmax_ce(T* logits, int64_t rows, int64_t vocab, const int32_t* targets, std::vector<double>& ce) {
  ce.assign(static_cast<size_t>(rows), 0.0);
  parallel_for(rows, 4, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      T* l = logits + r * vocab;
      const int64_t arg = std::max_element(l, l + vocab) - l;
      const bool counted = targets[r] != kIgnoredTarget;
      const double margin = counted ? double(l[arg]) - double(l[targets[r]]) : 0.0;
      softmax_row(l, vocab);
      ce[size_t(r)] = counted ? margin - std::log(double(l[arg])) : 0.0;
    }
  });
  double sum = 0;
  for (double v : ce) sum += v;
  return sum;
}

void check_targets(const int32_t* targets, int64_t rows, int64_t vocab) {
  for (int64_t r = 0; r < rows; ++r)
    DSV3_CHECK((targets[r] >= 0 && targets[r] < vocab) || targets[r] == kIgnoredTarget, "[train] target token ",
               targets[r], " at row ", r,
               " is outside the vocabulary [0, ", vocab, ")");
}

}  // namespace

template <typename T>
double head_loss_forward(const T* h, const T* head, int64_t rows, int64_t hidden, int64_t vocab,
                         const int32_t* targets, Workspace<T>& ws, T* logits_out) {
  DSV3_ZONE("head.loss_forward");
  check_targets(targets, rows, vocab);
  typename Workspace<T>::Scope scope(ws);
  const int64_t chunk = chunk_rows(rows, vocab);
  T* logits = ws.take(chunk * vocab);
  double sum = 0;
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t m = std::min(chunk, rows - r0);
    linear_forward(ws, h + r0 * hidden, head, m, hidden, vocab, logits, GemmKind::kept);
    if (logits_out) std::memcpy(logits_out + r0 * vocab, logits, size_t(m * vocab) * sizeof(T));
    std::vector<double> ce;
    sum += softmax_ce(logits, m, vocab, targets + r0, ce);
  }
  return sum;
}

template <typename T>
double head_loss_forward_backward(const T* h, const T* head, int64_t rows, int64_t hidden, int64_t vocab,
                                  const int32_t* targets, double grad_scale, Workspace<T>& ws, T* dh, T* dhead) {
  DSV3_ZONE("head.loss_forward_backward");
  check_targets(targets, rows, vocab);
  typename Workspace<T>::Scope scope(ws);
  const int64_t chunk = chunk_rows(rows, vocab);
  T* logits = ws.take(chunk * vocab);
  double sum = 0;
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t m = std::min(chunk, rows - r0);
    linear_forward(ws, h + r0 * hidden, head, m, hidden, vocab, logits, GemmKind::kept);
    std::vector<double> ce;
    sum += softmax_ce(logits, m, vocab, targets + r0, ce);
    // dlogits = grad_scale · (p − onehot(target))
    const T scale = T(grad_scale);
    parallel_for(m, 4, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        T* l = logits + r * vocab;
        if (targets[r0 + r] == kIgnoredTarget) {
          std::fill(l, l + vocab, T(0));
          continue;
        }
        l[targets[r0 + r]] -= T(1);
        for (int64_t i = 0; i < vocab; ++i) l[i] *= scale;
      }
    });
    linear_backward(ws, h + r0 * hidden, head, logits, m, hidden, vocab, dh + r0 * hidden, dhead, GemmKind::kept);
  }
  return sum;
}

namespace {

// Logits, log-probabilities and the objective's derivatives chunk by chunk; with dh, the backward too.
template <typename T>
double head_objective(const T* h, const T* head, int64_t rows, int64_t hidden, int64_t vocab, const int32_t* targets,
                      TokenObjective& objective, Workspace<T>& ws, T* dh, T* dhead) {
  check_targets(targets, rows, vocab);
  typename Workspace<T>::Scope scope(ws);
  objective.reset();
  const int64_t chunk = chunk_rows(rows, vocab);
  T* logits = ws.take(chunk * vocab);
  std::vector<double> ce, scale;
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t m = std::min(chunk, rows - r0);
    linear_forward(ws, h + r0 * hidden, head, m, hidden, vocab, logits, GemmKind::kept);
    softmax_ce(logits, m, vocab, targets + r0, ce);
    scale.assign(size_t(m), 0.0);
    for (int64_t r = 0; r < m; ++r)  // in row order, on this thread: the objective may keep state
      if (targets[r0 + r] != kIgnoredTarget) scale[size_t(r)] = -objective.gradient(r0 + r, -ce[size_t(r)]);
    if (!dh) continue;
    // dlogits = ∂L/∂logπ · (onehot − p) = scale · (p − onehot)
    parallel_for(m, 4, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        T* l = logits + r * vocab;
        const T sc = T(scale[size_t(r)]);
        if (targets[r0 + r] != kIgnoredTarget) l[targets[r0 + r]] -= T(1);
        for (int64_t i = 0; i < vocab; ++i) l[i] *= sc;
      }
    });
    linear_backward(ws, h + r0 * hidden, head, logits, m, hidden, vocab, dh + r0 * hidden, dhead, GemmKind::kept);
  }
  return objective.value();
}

}  // namespace

template <typename T>
double head_objective_forward(const T* h, const T* head, int64_t rows, int64_t hidden, int64_t vocab,
                              const int32_t* targets, TokenObjective& objective, Workspace<T>& ws) {
  DSV3_ZONE("head.objective_forward");
  return head_objective(h, head, rows, hidden, vocab, targets, objective, ws, static_cast<T*>(nullptr),
                        static_cast<T*>(nullptr));
}

template <typename T>
double head_objective_forward_backward(const T* h, const T* head, int64_t rows, int64_t hidden, int64_t vocab,
                                       const int32_t* targets, TokenObjective& objective, Workspace<T>& ws, T* dh,
                                       T* dhead) {
  DSV3_ZONE("head.objective_forward_backward");
  return head_objective(h, head, rows, hidden, vocab, targets, objective, ws, dh, dhead);
}

#define DSV3_INSTANTIATE(T)                                                                                   \
  template double head_objective_forward(const T*, const T*, int64_t, int64_t, int64_t, const int32_t*,       \
                                         TokenObjective&, Workspace<T>&);                                     \
  template double head_objective_forward_backward(const T*, const T*, int64_t, int64_t, int64_t,              \
                                                  const int32_t*, TokenObjective&, Workspace<T>&, T*, T*);    \
  template double head_loss_forward(const T*, const T*, int64_t, int64_t, int64_t, const int32_t*,            \
                                    Workspace<T>&, T*);                                                       \
  template double head_loss_forward_backward(const T*, const T*, int64_t, int64_t, int64_t, const int32_t*,   \
                                             double, Workspace<T>&, T*, T*);
DSV3_INSTANTIATE(float)
DSV3_INSTANTIATE(double)
#undef DSV3_INSTANTIATE

}  // namespace dsv3
