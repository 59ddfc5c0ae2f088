// ZeRO-1 data parallelism (SPEC.md §4: DeepSeek-V3 trains with ZeRO-1 over its data-parallel ranks;
// Rajbhandari et al. 2020, stage 1). Every rank holds the whole FP32 weights and runs its own share of a
// step's micro-batches; the AdamW moments are split: rank r owns a contiguous shard of the parameter
// arena — whole optimizer chunks (kOptimizerChunk), the remainder spread one chunk each over the first
// ranks, as DeepSpeed spreads it — and keeps moments for it alone, so optimizer memory per rank shrinks
// as 1/D. One step:
//   1. reduce-scatter: each rank sends every owner the owner's slice of each of its micro-batch
//      gradients (one all-to-all); the owner sums them in the step's micro-batch order, which is the
//      order one process accumulates them in (trainer.cpp), so the shard's sum is bit-equal to it
//      (under pipeline parallelism each rank's arenas hold its stages' share, zeros elsewhere:
//      pipeline_train.h);
//   2. the gradient norm for clipping: each owner's per-chunk Σ g² (in double), all-gathered and added in
//      chunk order — bit-equal to one process's global_grad_norm;
//   3. each owner's AdamW update of its shard;
//   4. all-gather of the updated shards, so every rank holds the same weights again.
// A checkpoint gathers the moments to rank 0, which writes the same files one process would (so it
// loads in one process or in another layout); loading keeps each rank's shard.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dist/comm.h"
#include "train/optimizer.h"

namespace dsv3 {

class Zero1 {
 public:
  Zero1(const Comm& comm, int64_t arena_elements);

  int64_t begin(int64_t r) const { return bounds_[size_t(r)]; }
  int64_t end(int64_t r) const { return bounds_[size_t(r + 1)]; }
  int64_t shard_begin() const { return begin(comm_.rank()); }
  int64_t shard_end() const { return end(comm_.rank()); }
  std::vector<int64_t> shard_sizes() const;   // elements of each rank's shard
  std::vector<int64_t> shard_begins() const;  // where each starts

  // `local`: this rank's micro-batch gradients (arena-sized, the same count on every rank). Writes the
  // sum over every rank's, for this rank's shard only, into grads[shard_begin, shard_end), adding them
  // in `order` — indices q·k + j of rank q's j-th arena, the step's micro-batch order — or, when order is
  // empty, rank by rank (data parallelism: the ranks hold consecutive runs of the micro-batches).
  void reduce_scatter(const std::vector<const float*>& local, float* grads, const std::vector<int64_t>& order = {});
  // Σ g² over the trainable tensors of the whole arena, from every rank's shard of `grads`.
  double sum_of_squares(const TrainParams<float>& grads) const;
  // Every rank's shard of `params` to every rank.
  void allgather(float* params) const;
  // Rank 0 writes the whole optimizer state (as AdamW::save) from every rank's shard.
  void save_optimizer(const AdamW& shard, std::shared_ptr<const ParamLayout> layout, const std::string& path) const;

 private:
  const Comm& comm_;
  int64_t total_ = 0;
  std::vector<int64_t> bounds_;  // shard r is [bounds_[r], bounds_[r + 1])
  std::vector<float> recv_;
};

}  // namespace dsv3
