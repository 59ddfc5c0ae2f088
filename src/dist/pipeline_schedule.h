// Pipeline schedules as per-rank op lists, and a simulator that runs them against each other.
//
// Each rank runs its ops in order; an op waits for the ops on other ranks it depends on (a forward for
// the previous stage's forward of the same micro-batch, a backward for the next stage's backward, the
// last stage's backward for its own forward). The schedules (SPEC.md §4, DeepSeek's DualPipe repository):
//   1F1B       P ranks, one pipe of P stages, M micro-batches: P − r − 1 warm-up forwards, then
//              forward/backward pairs, then the remaining backwards.
//   DualPipe   P ranks (even), two pipes of P stages, M/2 micro-batches each (M even, M ≥ 2P): rank r
//              holds stage r of the downward pipe and stage P − 1 − r of the upward one. Phase 0 is the
//              downward pipe on the first half of the ranks and the upward one on the second half. Per
//              rank, with h = min(r, P − 1 − r) and Q = P/2, eight steps: 2(Q−h−1)× F0; (h+1)× F0,F1;
//              (Q−h−1)× B1(zb),W,F1; (M/2−P+h+1)× F0B1,F1B0; (Q−h−1)× B1,F1B0; (h+1)× B1,B0 (zb from
//              halfway); (Q−h−1)× W,B0(zb); (h+1)× W.
//   DualPipeV  P ranks, one pipe of 2P stages in a V: rank r holds stages r and 2P − 1 − r; the same
//              eight steps with h = r, Q = P and M for M/2.
// "zb" is a zero-bubble backward: only its input-gradient part runs, its weight-gradient part (W) is
// deferred to a later W op, first in, first out. A pair FxBy overlaps a forward and a backward of
// different micro-batches (one's communication under the other's computation); the simulator charges it
// F + B of computation (overlap hides communication, which it does not model).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/trace.h"
#include "dist/layout.h"

namespace dsv3 {

struct PipelineOp {
  enum Kind { forward, backward, weight, forward_backward } kind = forward;
  int phase = 0;          // forward / backward: which of the rank's stages (0 or 1)
  int backward_phase = 0; // forward_backward: the backward's stage (the forward's is `phase`)
  bool zero_bubble = false;  // backward: defer the weight gradient to a later `weight` op
};

struct ScheduleOps {
  PipelineSchedule kind = PipelineSchedule::one_f_one_b;
  int64_t ranks = 0, micro_batches = 0;
  std::vector<std::vector<PipelineOp>> ops;  // per rank, in order
};

// Where a rank's phase sits: stage `stage` of pipe `pipe` (DualPipe has two pipes, the others one).
struct PipelineSlot {
  int pipe = 0;
  int64_t stage = 0;
};
PipelineSlot pipeline_slot(PipelineSchedule kind, int64_t ranks, int64_t rank, int phase);
int64_t pipeline_rank_of(PipelineSchedule kind, int64_t ranks, int pipe, int64_t stage);
int64_t pipeline_stages(PipelineSchedule kind, int64_t ranks);  // per pipe: P, or 2P for DualPipeV
int pipeline_pipes(PipelineSchedule kind);

// The ops of every rank; errors name the flag for impossible P / M.
ScheduleOps build_pipeline_schedule(PipelineSchedule kind, int64_t ranks, int64_t micro_batches);

struct PipelineDurations {
  double forward = 1, backward = 2, weight = 1;  // B is the whole backward; a zero-bubble one takes B − W
};

struct PipelineSimulation {
  bool deadlock = false;
  std::string deadlock_at;          // which rank waited for what, when stuck
  double makespan = 0;              // the step, first op to last
  std::vector<double> busy;         // per rank: time computing
  std::vector<int64_t> forwards, backwards, zero_bubble_backwards, weights;  // per rank, all phases
  std::vector<std::vector<int64_t>> forwards_per_phase, backwards_per_phase;  // [rank][phase]
  std::vector<TraceEvent> timeline;  // every op, one process per rank, 1 time unit = 1 ms
  double bubble() const;            // the largest idle time of a rank: makespan − its busy time
  double bubble_fraction() const;   // bubble / makespan
};

PipelineSimulation simulate_pipeline(const ScheduleOps& schedule, const PipelineDurations& d);

// The report's bubble formulas (SPEC.md §4) in time units: 1F1B (P−1)(F+B); DualPipe (P/2−1)(F&B+B−3W);
// DualPipeV the DualPipe formula over its 2P stages, (P−1)(F&B+B−3W); F&B = F + B.
double formula_bubble(PipelineSchedule kind, int64_t ranks, const PipelineDurations& d);

}  // namespace dsv3
