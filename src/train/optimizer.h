// The optimizer side of training (SPEC.md §2, TR §4.2): AdamW on FP32 master weights with global
// gradient-norm clipping, DeepSeek-V3's learning-rate shape, and the auxiliary-loss-free update of the
// routers' correction biases.
//
// Which tensors the optimizer touches (train/train_model.h):
//   - aliases (the MTP modules' embedding and head, when shared) are skipped: their storage and
//     gradient are the main model's, updated once;
//   - e_score_correction_bias (!trainable()) gets no Adam update and no decay: only
//     update_correction_biases() changes it;
//   - weight decay applies to matrices (embedding, head, projections, router gates), not to RMSNorm
//     weights.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "train/train_model.h"

namespace dsv3 {

// ---- learning rate ----

// Linear warm-up from 0 to `peak` over warmup_steps, constant until decay_start, cosine decay from
// peak to final_lr over [decay_start, decay_end], then final_lr (TR §4.2: 2K warm-up steps, constant
// 2.2e-4 for 10T of 14.8T tokens, cosine to 2.2e-5 over 4.3T). Steps are 0-based: the update of step
// s uses lr(s); step 0 of a run with warm-up uses peak / warmup_steps, not 0.
struct LrSchedule {
  double peak = 2.2e-4;
  double final_lr = 2.2e-5;
  int64_t warmup_steps = 2000;
  int64_t decay_start = 0;
  int64_t decay_end = 0;

  double lr(int64_t step) const;
  // The shape of DeepSeek-V3's schedule for a run of total_steps: warm-up over 2% of the steps
  // (at least 1, at most 2000), constant to 2/3 of the run (10T of 14.8T tokens), cosine to
  // peak / 10 at the end.
  static LrSchedule deepseek_v3(int64_t total_steps, double peak = 2.2e-4);
  void validate() const;  // throws on negative steps, decay_end < decay_start, lr < 0
};

// ---- AdamW ----

enum class MomentDtype { f32, bf16 };  // bf16: TR §3.3 keeps the AdamW moments in BF16

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;  // decoupled: p -= lr · wd · p
  double clip_norm = 1.0;     // global gradient-norm clipping; 0 disables
  MomentDtype moments = MomentDtype::f32;
};

struct OptimizerStepStats {
  double grad_norm = 0;  // global L2 norm of the gradients before clipping
  double clip_scale = 1;  // the factor applied to the gradients (1 when not clipped)
};

// The L2 norm over every trainable, non-alias tensor of `grads`. Deterministic: the same value for
// any thread count (fixed-size chunks summed in double, partials combined in chunk order).
double global_grad_norm(const TrainParams<float>& grads);

// The arena-wide loops work in chunks of this many elements: the unit of parallel work and of the
// norm's partial sums. A ZeRO-1 shard is a run of whole chunks, so the norm a data-parallel run
// assembles from its ranks' partials (combined in chunk order) is bit-equal to one process's.
inline constexpr int64_t kOptimizerChunk = int64_t(1) << 16;
// Σ g² of each chunk in [first_chunk, last_chunk) over the trainable, non-alias tensors, in double.
std::vector<double> grad_square_partials(const TrainParams<float>& grads, int64_t first_chunk, int64_t last_chunk);

class AdamW {
 public:
  // Holds moments for the whole arena, or (ZeRO-1, src/dist) for elements [shard_begin, shard_end)
  // only, which must be whole kOptimizerChunk chunks (the end may be the arena's end).
  AdamW(std::shared_ptr<const ParamLayout> layout, const AdamWOptions& options, int64_t shard_begin = 0,
        int64_t shard_end = -1);

  const AdamWOptions& options() const { return options_; }
  int64_t steps() const { return steps_; }  // updates applied so far (bias correction uses steps + 1)

  // One update of params from grads at learning rate lr: clip by the global norm, then for every
  // trainable, non-alias tensor
  //   m = β1 m + (1 − β1) g;  v = β2 v + (1 − β2) g²
  //   p -= lr · (m / (1 − β1^t) / (sqrt(v / (1 − β2^t)) + eps) + wd · p)   (wd only for matrices)
  // The gradient used is grads × grad_scale (1/micro-batches when accumulating), then clipped; grads
  // are read only. Elementwise, so the result does not depend on the thread count.
  OptimizerStepStats step(TrainParams<float>& params, const TrainParams<float>& grads, double lr,
                          double grad_scale = 1.0);
  // The same for a sharded optimizer: updates only the shard's parameters, reading only the shard's
  // gradients, with the norm's Σ g² over the whole arena (all shards' partials) given.
  OptimizerStepStats step_shard(TrainParams<float>& params, const TrainParams<float>& grads, double lr,
                                double grad_scale, double sum_of_squares);

  int64_t shard_begin() const { return shard_begin_; }
  int64_t shard_end() const { return shard_end_; }
  // The shard's moments as stored (f32 or bf16 elements, moment_element_bytes() each), for gathering a
  // sharded state into one (a data-parallel checkpoint) or back.
  size_t moment_element_bytes() const { return options_.moments == MomentDtype::bf16 ? 2 : 4; }
  void* moment_bytes(bool second);
  const void* moment_bytes(bool second) const;
  void set_steps(int64_t steps) { steps_ = steps; }

  // State: the step count and both moments, as safetensors `<hf name>.exp_avg` / `.exp_avg_sq`
  // (F32 or BF16 as the moments are held) with the options in the metadata. load() checks that the
  // file matches the layout (every tensor, shape and dtype) and the options' moment dtype; a sharded
  // optimizer keeps its shard of the file. save() needs the whole arena (gather a sharded state first).
  void save(const std::string& path) const;
  void load(const std::string& path);

 private:
  std::shared_ptr<const ParamLayout> layout_;
  AdamWOptions options_;
  int64_t steps_ = 0;
  int64_t shard_begin_ = 0, shard_end_ = 0;  // moments held for these arena elements
  std::vector<float> m_f32_, v_f32_;      // MomentDtype::f32, arena layout from shard_begin_
  std::vector<uint16_t> m_bf16_, v_bf16_; // MomentDtype::bf16 (round to nearest even on store)
};

// ---- auxiliary-loss-free load balancing (ALF; TR §2.1.2) ----

// MaxVio of one layer's expert loads: (max_i load_i − mean load) / mean load; 0 when nothing was routed.
double max_violation(const std::vector<int64_t>& expert_load);

// After a step: for every MoE layer l of `moe_layers` (Hugging Face layer indices, main layers and MTP
// blocks) with per-expert loads expert_load[l],
//   b_i ← b_i + γ · sign(mean load − load_i)
// on model.layers.{l}.mlp.gate.e_score_correction_bias (sign(0) = 0). γ = 0 leaves the biases alone.
void update_correction_biases(TrainParams<float>& params, const std::vector<int64_t>& moe_layers,
                              const std::vector<std::vector<int64_t>>& expert_load, double gamma);

}  // namespace dsv3
