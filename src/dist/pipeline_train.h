// Pipeline-parallel training (SPEC.md §4): the main layers in consecutive stages over the P ranks of a
// pipeline, one optimizer step's micro-batches run through them by a schedule (1F1B, DualPipe,
// DualPipeV: pipeline_schedule.h) on the pipeline executor (pipeline_run.h).
//
// Stages: S stages (P, or 2P for DualPipeV) of consecutive layers, split so that the largest stage's
// training FLOPs are as small as whole layers allow — the last stage also runs the final norm, the head,
// the loss and the MTP modules, which in a small model weigh as much as several layers, so it gets fewer
// layers; the first stage also embeds the tokens (train_step.h's ModelPart). DualPipe's rank r holds stage r of the downward pipe and stage P−1−r of
// the upward one: two copies of every stage, the first half of the micro-batches down, the second up.
// DualPipeV's rank r holds stages r and 2P−1−r.
//
// Messages: a forward sends the stage's output [rows, H] and the running balance loss; a backward sends
// the gradient of its input [rows, H] and the MTP modules' embedding-gradient rows, which travel from
// the last stage down to the first, where the embedding is.
//
// Gradients: every rank keeps one gradient arena per micro-batch of the step (arena m holds what this
// rank computed for micro-batch m — the parameters of the stages it ran m through — and zeros
// elsewhere). ZeRO-1's reduce-scatter adds them in the step's micro-batch order, so each parameter's sum
// is one process's, bit for bit (adding the other stages' zeros changes nothing).
//
// Zero-bubble backwards (DualPipe, DualPipeV): the backward computes the input gradients and queues its
// linears' weight-gradient GEMMs with copies of their inputs (train_ops.h's DeferredWeightGrads); the
// schedule's W op runs them, first in first out, into the same micro-batch's arena — the same GEMMs on
// the same inputs, so the gradients do not change. Under expert parallelism the backward runs whole (the
// experts' weight gradients go back to their ranks inside it) and W is empty. Not built yet: a
// forward/backward pair runs one after the other without overlapping their communication.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/trace.h"
#include "dist/comm.h"
#include "dist/layout.h"
#include "dist/pipeline_schedule.h"
#include "train/train_step.h"
#include "train/training_data.h"

namespace dsv3 {

// The layers of each of `stages` stages: consecutive runs, each at least one layer, chosen to make the
// largest stage's training FLOPs (part_train_flops, the head and MTP modules counted on the last
// stage) as small as possible.
std::vector<ModelPart> pipeline_stage_parts(const ModelConfig& config, int64_t stages, int64_t seq, int64_t mtp_depth);
// One line per stage: its layers, its share of the FLOPs, what else it holds and the pipeline ranks
// that run it.
std::string describe_pipeline_stages(const ModelConfig& config, const ParallelLayout& layout, int64_t seq,
                                     int64_t mtp_depth);

class PipelineTrainer {
 public:
  // Splits `world` into the pipelines of `layout` (every rank calls it). Activations are sized for
  // micro-batches of batch × seq tokens and the MTP depth.
  PipelineTrainer(const Comm& world, const ParallelLayout& layout, const ModelConfig& config, int64_t batch,
                  int64_t seq, int64_t mtp_depth);
  ~PipelineTrainer();

  int64_t micro_batches() const { return schedule_.micro_batches; }

  // One step: micro-batch m (0 … M−1 of this pipeline) is batch_of(m); grads[m] (zeroed here)
  // receives this rank's share of its gradient; stats[m] is set where this rank ran its last stage;
  // loads (keyed by layer, summed over the micro-batches) get the expert loads of this rank's MoE layers.
  void run(TrainParams<float>& params, const TrainOptions& options,
           const std::function<void(int64_t m, TrainBatch& batch)>& batch_of,
           const std::vector<TrainParams<float>*>& grads, std::vector<std::optional<StepStats>>& stats,
           std::map<int64_t, std::vector<int64_t>>& loads, TraceRecorder& trace);

 private:
  class Work;
  Comm comm_;
  ScheduleOps schedule_;
  std::vector<ModelPart> parts_;  // per stage of a pipe
  ModelConfig config_;
  int64_t batch_, seq_, mtp_depth_;
  std::vector<std::unique_ptr<TrainActivations<float>>> free_activations_;  // reused across steps
};

}  // namespace dsv3
