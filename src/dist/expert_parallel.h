// Expert parallelism over MPI: the transport of moe_train.h's ExpertGroup. A rank's expert-parallel
// group is the E consecutive data-parallel ranks of its stage that together hold one replica of every
// MoE layer's routed experts (layout.h); the D / E groups of a stage are replicas of each other, whose
// expert gradients meet in ZeRO-1's reduce-scatter like every other gradient.
#pragma once

#include <cstdint>
#include <vector>

#include "core/trace.h"
#include "dist/comm.h"
#include "dist/layout.h"
#include "train/moe_train.h"

namespace dsv3 {

class MpiExpertGroup final : public ExpertGroup {
 public:
  // Splits `world` into the expert-parallel groups of `layout`; every rank of the launch calls it.
  // Each all-to-all is recorded in `trace` (may be null) as a communication span.
  MpiExpertGroup(const Comm& world, const ParallelLayout& layout, TraceRecorder* trace);

  int64_t ranks() const override { return comm_.size(); }
  int64_t rank() const override { return comm_.rank(); }
  void alltoallv(const void* send, const std::vector<int64_t>& send_bytes, void* recv,
                 const std::vector<int64_t>& recv_bytes) const override;

 private:
  Comm comm_;
  TraceRecorder* trace_;
};

}  // namespace dsv3
