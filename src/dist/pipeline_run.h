// A pipeline schedule run on the ranks of an mpirun launch with sleeps in place of computation: each
// rank runs its op list (pipeline_schedule.h), receiving each forward's input from the previous stage's
// rank and each backward's gradient from the next stage's, sleeping the given F, B (B − W for a
// zero-bubble backward, F + B for a pair) and W, and sending on. Real messages and real waiting, no
// model: the schedule's shape and its measured bubble on real ranks, for comparison with the simulator
// and the report's formulas (SPEC.md §4).
#pragma once

#include <vector>

#include "core/trace.h"
#include "dist/comm.h"
#include "dist/pipeline_schedule.h"

namespace dsv3 {

struct PipelineRun {
  double makespan_ms = 0;             // the step, first op to last over all ranks
  std::vector<double> busy_ms;        // per rank: time in its ops' sleeps
  std::vector<TraceEvent> timeline;   // every rank's ops (rank 0 only)
  double bubble_ms() const;           // the largest idle time of a rank
};

// Every rank of `comm` must call it with the same schedule (ranks = comm.size()); results on rank 0.
PipelineRun run_pipeline_with_sleeps(const Comm& comm, const ScheduleOps& schedule, const PipelineDurations& ms);

}  // namespace dsv3
