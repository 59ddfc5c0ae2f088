// How the ranks of a launch divide the training work, in the layout DeepSeek-V3 and Megatron use
// (SPEC.md §4): N ranks = P pipeline stages × D data-parallel ranks, D = N / P; expert parallelism is
// carved out of data parallelism — the D ranks of a stage split each MoE layer's routed experts over E
// of them (E divides D), so each expert is replicated D / E times. Ranks are numbered stage-major with
// the data-parallel rank innermost (rank = stage · D + dp), so a stage's data-parallel group is a run
// of consecutive ranks — on one node when ranks-per-node allows — and the expert-parallel group of a
// rank is the E consecutive data-parallel ranks around it.
//
// The trainer runs data parallelism (ZeRO-1, zero1.h) and expert parallelism (expert_parallel.h);
// pipeline parallelism is validated here and refused by the trainer with a message until it is built.
#pragma once

#include <cstdint>
#include <string>

#include "model/config.h"

namespace dsv3 {

enum class PipelineSchedule { one_f_one_b, dualpipe, dualpipev };
const char* pipeline_schedule_name(PipelineSchedule s);  // "1f1b", "dualpipe", "dualpipev"
PipelineSchedule parse_pipeline_schedule(const std::string& name);

// The flags of `dsv3 train` that choose the layout (0 = the default).
struct ParallelFlags {
  int64_t pp = 1;              // --pp: pipeline stages P
  int64_t dp = 0;              // --dp: data-parallel ranks D (0: N / P)
  int64_t ep = 1;              // --ep: expert-parallel ranks E within each data-parallel group
  PipelineSchedule schedule = PipelineSchedule::one_f_one_b;  // --pp-schedule
  int64_t micro_batches = 0;   // --micro-batches M per step through each pipeline (0: grad_accum / D)
  int64_t ranks_per_node = 0;  // --ranks-per-node (0: all ranks on one node)
};

struct ParallelLayout {
  int64_t world = 1, rank = 0;
  int64_t pp = 1, dp = 1, ep = 1;
  PipelineSchedule schedule = PipelineSchedule::one_f_one_b;
  int64_t micro_batches = 1;
  int64_t ranks_per_node = 1;

  int64_t stage() const { return rank / dp; }         // pipeline stage
  int64_t dp_rank() const { return rank % dp; }       // within the stage's data-parallel group
  int64_t ep_rank() const { return dp_rank() % ep; }  // which share of the experts this rank holds
  int64_t expert_replica() const { return dp_rank() / ep; }
  int64_t node() const { return rank / ranks_per_node; }
  bool single_process() const { return world == 1; }

  // One line per rank: its stage, data-parallel and expert-parallel coordinates and node.
  std::string describe() const;
};

// Checks the flags against the launch (world ranks) and the model; errors name the flag at fault.
// grad_accum is the run's micro-batches per optimizer step: each of the D pipelines runs M = grad_accum / D.
ParallelLayout make_parallel_layout(int64_t world, int64_t rank, const ParallelFlags& flags,
                                    const ModelConfig& config, int64_t grad_accum);

}  // namespace dsv3
