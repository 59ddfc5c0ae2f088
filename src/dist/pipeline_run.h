// Pipeline schedules run on the ranks of an mpirun launch: each rank runs its op list
// (pipeline_schedule.h), receiving each forward's input from the previous stage's rank and each
// backward's gradient from the next stage's, computing, and sending on (non-blocking sends, so two
// neighbours sending to each other at once never wait on each other). What a rank computes is a
// PipelineWork: the model's stages for training (pipeline_train.h), or sleeps of given durations
// (run_pipeline_with_sleeps) — real messages and real waiting without a model, to show a schedule's
// shape and its measured bubble on real ranks beside the simulator and the report's formulas (SPEC.md §4).
#pragma once

#include <cstdint>
#include <vector>

#include "core/trace.h"
#include "dist/comm.h"
#include "dist/pipeline_schedule.h"

namespace dsv3 {

// What one rank computes for its ops. `mb` counts the micro-batches of the op's pipe (0, 1, … in the
// order they enter it). `in` is the message from the neighbouring stage — null for a forward on the
// pipe's first stage and a backward on its last; `out` is the message to the other neighbour
// (forward_bytes / backward_bytes long; not sent from the pipe's end).
class PipelineWork {
 public:
  virtual ~PipelineWork() = default;
  virtual int64_t forward_bytes(int phase) const = 0;
  virtual int64_t backward_bytes(int phase) const = 0;
  virtual void forward(int phase, int64_t mb, const void* in, void* out) = 0;
  // zero_bubble: only the input gradient now, the weight gradient at a later weight() (first in, first out).
  virtual void backward(int phase, int64_t mb, bool zero_bubble, const void* in, void* out) = 0;
  virtual void weight(int phase, int64_t mb) = 0;
};

// Runs this rank's ops of `schedule` (ranks = comm.size()), recording each op and each wait for a
// message in `trace` (when enabled). Returns the milliseconds spent in the work's calls.
double run_pipeline(const Comm& comm, const ScheduleOps& schedule, PipelineWork& work, TraceRecorder& trace);

struct PipelineRun {
  double makespan_ms = 0;             // the step, first op to last over all ranks
  std::vector<double> busy_ms;        // per rank: time in its ops' sleeps
  std::vector<TraceEvent> timeline;   // every rank's ops and waits for messages (rank 0 only)
  double bubble_ms() const;           // the largest idle time of a rank
};

// Sleeps F, B (B − W for a zero-bubble backward) and W in place of computation, with 8-byte messages.
// Every rank of `comm` must call it with the same schedule; results on rank 0.
PipelineRun run_pipeline_with_sleeps(const Comm& comm, const ScheduleOps& schedule, const PipelineDurations& ms);

}  // namespace dsv3
