// The loop of `dsv3 grpo`: each step samples a group of G completions for each of P prompts of a task
// (rl/tasks.h) with the inference engine, scores them, and takes `iterations` AdamW steps on GRPO's
// objective (rl/grpo.h) with the training path — one engine for both halves, so the sampler's and the
// trainer's log-probabilities agree (the step reports how closely).
//
// Per step:
//   1. the policy is written as a checkpoint (OUT/policy) and loaded by the inference engine;
//   2. P prompts of the task's train split (a stream from --seed), rendered with the chat template,
//      G completions each at the sampling temperature, all P·G sequences decoded as one batch
//      (forward_batch) until EOS or --max-completion-length tokens;
//   3. rewards (1 / 0.1 / 0), group advantages; π_old and π_ref are the training path's
//      log-probabilities under the step's starting weights and the frozen reference (the --model);
//   4. `iterations` optimizer steps on the objective over the P·G sequences (one row each, prompt
//      tokens not counted; --mask-truncated leaves out completions that hit the length limit).
// Held-out accuracy (greedy decoding of the task's test split) at the start, every --eval-every steps
// and at the end. Metrics: one JSON line per step.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "infer/chat_format.h"
#include "rl/grpo.h"
#include "rl/tasks.h"
#include "train/train_model.h"
#include "train/train_step.h"

namespace dsv3 {

struct Model;
class Tokenizer;

struct GrpoRunOptions {
  std::string model_dir;  // policy's start and frozen reference
  std::string out_dir;
  std::string metrics_path;  // empty: OUT/metrics.jsonl
  TaskKind task = TaskKind::arithmetic;
  TaskOptions task_options;
  GrpoOptions objective;
  int64_t steps = 50;
  int64_t prompts_per_step = 4;  // P
  int64_t generations = 8;       // G (TRL's --num-generations)
  int64_t iterations = 1;        // optimizer steps per batch of rollouts (TRL's num_iterations)
  double temperature = 1.0;
  bool mask_truncated = false;
  double lr = 1e-4;
  double weight_decay = 0.0;
  double clip = 1.0;
  ComputePrecision precision = ComputePrecision::bf16;
  ChatTemplate chat_template = ChatTemplate::deepseek_r1;
  uint64_t seed = 1;
  int64_t eval_every = 0;      // 0: at the start and the end only
  int64_t eval_problems = 64;  // held-out problems per evaluation
  void validate() const;
};

struct GrpoStepRecord {
  int64_t step = 0;
  double reward = 0, accuracy = 0, format = 0;  // means over the step's completions
  double equal_groups = 0;      // fraction of groups whose rewards are all equal (no signal)
  double completion_length = 0, truncated = 0;
  double entropy = 0;           // mean per sampled token, nats
  double kl = 0, clip_fraction = 0, ratio = 0, loss = 0, grad_norm = 0;  // of the last iteration
  double sampler_logp_gap = 0;  // largest |log π| difference between sampler and trainer, same weights
  double rollout_tokens_per_s = 0, train_tokens_per_s = 0;
  std::optional<double> eval_accuracy;
  nlohmann::json to_json() const;
};

// One sampled completion.
struct Rollout {
  std::vector<int32_t> completion;  // sampled ids (EOS included when reached)
  std::vector<double> logp;         // the sampler's log π of each at temperature 1
  double entropy = 0;               // summed over the tokens
  bool truncated = false;           // stopped at the length limit
};

// Samples `per_prompt` completions of every prompt as one batch (greedy when temperature is 0).
std::vector<Rollout> sample_completions(const Model& model, const Tokenizer& tokenizer,
                                        const std::vector<std::vector<int32_t>>& prompts, int64_t per_prompt,
                                        int64_t max_tokens, double temperature, uint64_t seed);

// The text a reward reads: the completion decoded, without its closing EOS.
std::string completion_text(const Tokenizer& tokenizer, const Rollout& rollout);

// Runs the whole loop; on_step after every step (and after evaluations).
void run_grpo(const GrpoRunOptions& options, const std::function<void(const GrpoStepRecord&)>& on_step);

}  // namespace dsv3
