// Zero-bubble backwards split a linear's backward (train_ops.h's DeferredWeightGrads): the input
// gradient now, the weight gradient at the schedule's W op. Deferred and replayed, the weight gradients
// are the ones run in place, bit for bit, in every precision; the input gradients do not change.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "train/train_ops.h"

namespace dsv3 {
namespace {

std::vector<float> random_values(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

TEST(DeferredWeightGrads, ReplayEqualsRunningInPlace) {
  const int64_t n = 37, in = 48, out = 29;
  const std::vector<float> w = random_values(out * in, 2), dy = random_values(n * out, 3);
  const std::vector<float> dw0 = random_values(out * in, 4);
  for (ComputePrecision p : {ComputePrecision::f32, ComputePrecision::bf16, ComputePrecision::fp8}) {
    std::vector<float> x = random_values(n * in, 1);
    Workspace<float> ws;
    ws.set_precision(p);
    // In place: a linear's backward, then a second weight-gradient use of the same weight.
    std::vector<float> dx_now(size_t(n * in), 0.0f), dw_now = dw0;
    linear_backward(ws, x.data(), w.data(), dy.data(), n, in, out, dx_now.data(), dw_now.data());
    linear_wgrad(ws, x.data(), dy.data(), n, in, out, dw_now.data());
    // Deferred: the input gradient now, nothing into dw until the replay.
    std::vector<float> dx_later(size_t(n * in), 0.0f), dw_later = dw0;
    DeferredWeightGrads<float> deferred;
    ws.defer_weight_grads(&deferred);
    linear_backward(ws, x.data(), w.data(), dy.data(), n, in, out, dx_later.data(), dw_later.data());
    linear_wgrad(ws, x.data(), dy.data(), n, in, out, dw_later.data());
    ws.defer_weight_grads(nullptr);
    ASSERT_EQ(deferred.queue.size(), 2u);
    EXPECT_EQ(std::memcmp(dx_now.data(), dx_later.data(), dx_now.size() * sizeof(float)), 0);
    EXPECT_EQ(dw_later, dw0);
    std::fill(x.begin(), x.end(), 0.0f);  // the queue holds its own copies
    Workspace<float> replay;               // f32 by default: each GEMM runs in the precision it was queued with
    run_deferred_weight_grads(deferred, replay);
    EXPECT_TRUE(deferred.queue.empty());
    EXPECT_EQ(std::memcmp(dw_now.data(), dw_later.data(), dw_now.size() * sizeof(float)), 0)
        << compute_precision_name(p);
    EXPECT_NE(dw_now, dw0);
  }
}

}  // namespace
}  // namespace dsv3
