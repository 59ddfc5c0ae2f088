#include "dist/expert_parallel.h"

#include "core/error.h"
#include "core/profiler.h"

namespace dsv3 {

MpiExpertGroup::MpiExpertGroup(const Comm& world, const ParallelLayout& layout, TraceRecorder* trace)
    : comm_(world.split(int(layout.stage() * (layout.dp / layout.ep) + layout.expert_replica()),
                        int(layout.ep_rank()))),
      trace_(trace) {
  DSV3_CHECK(world.size() == layout.world && comm_.size() == layout.ep, "[train] the expert-parallel group of rank ",
             world.rank(), " has ", comm_.size(), " ranks, the layout says ", layout.ep);
}

void MpiExpertGroup::alltoallv(const void* send, const std::vector<int64_t>& send_bytes, void* recv,
                               const std::vector<int64_t>& recv_bytes) const {
  DSV3_ZONE("expert_parallel.alltoallv");
  DSV3_CHECK(int64_t(send_bytes.size()) == ranks() && int64_t(recv_bytes.size()) == ranks(),
             "[train] an expert all-to-all needs a count for each of the ", ranks(), " ranks of the group");
  TraceRecorder::Span span = trace_ ? trace_->span("expert all-to-all", "communication")
                                    : TraceRecorder::Span(nullptr, "", "");
  comm_.alltoallv_bytes(send, send_bytes, recv, recv_bytes);
}

}  // namespace dsv3
