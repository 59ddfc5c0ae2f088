// The training loop behind `dsv3 train`: batches from token shards, forward/backward with gradient
// accumulation, AdamW with DeepSeek-V3's schedule, the auxiliary-loss-free bias update, evaluation on
// the val split, a metrics file, and checkpoints that resume bit-identically.
//
// Reproducibility: the initial weights are a function of the seed (init_random), the batch of step s,
// micro-batch m is TokenShards::batch(train, s·accum + m, seed) — a pure function — and every kernel has
// a fixed reduction order for a given thread count. A checkpoint stores the FP32 weights (which include
// the correction biases), the AdamW state and the step, so a run stopped at any step and resumed with
// the same thread count produces the same bits as an uninterrupted one.
//
// A checkpoint directory holds
//   config.json, model.safetensors        the model in Hugging Face layout (F32), loadable by dsv3 generate
//   tokenizer.json                        copied from the token shards' tokenizer when it can be found
//   optimizer.safetensors                 AdamW moments and step (train/optimizer.h)
//   trainer_state.json                    the run's settings and the step reached
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "dist/layout.h"
#include "model/config.h"
#include "train/optimizer.h"
#include "train/train_step.h"
#include "train/training_data.h"

namespace dsv3 {

// How the experts are kept balanced (SPEC.md §2; ALF).
enum class BalanceMode {
  aux_free,  // DeepSeek-V3: bias update γ, plus the complementary sequence-wise loss α = 1e-4
  aux_loss,  // the classic auxiliary loss over the batch (α, default 1e-3), no bias update
  none,      // neither
};
const char* balance_mode_name(BalanceMode mode);  // "aux-free", "aux-loss", "none"
BalanceMode parse_balance_mode(const std::string& name);


struct TrainRunOptions {
  ModelConfig config;
  std::string preset;       // recorded only
  ComputePrecision precision = ComputePrecision::f32;  // of the GEMMs (train_ops.h); master weights FP32
  int64_t batch_size = 8;   // sequences per micro-batch
  int64_t seq_len = 256;
  int64_t grad_accum = 1;   // micro-batches per optimizer step
  int64_t steps = 100;      // optimizer steps of the whole run
  uint64_t seed = 1;        // initial weights and batch order

  LrSchedule schedule;  // LrSchedule::deepseek_v3(steps, peak) unless set explicitly
  AdamWOptions adamw;
  double init_std = 0.006;

  BalanceMode balance = BalanceMode::aux_free;
  double bias_gamma = 0.001;       // γ of the bias update (aux_free)
  double balance_alpha = 1e-4;     // α of the sequence-wise (aux_free) or batch-wise (aux_loss) loss
  int64_t mtp_depth = -1;          // -1: the config's num_nextn_predict_layers
  double mtp_lambda = 0.3;

  int64_t eval_every = 50;     // steps between val evaluations (also at the last step); 0: last step only
  int64_t eval_sequences = 64; // val windows of seq_len per evaluation (fewer when the split is short)
  int64_t save_every = 0;      // steps between checkpoints (always at the end); 0: end only

  nlohmann::json to_json() const;
  static TrainRunOptions from_json(const nlohmann::json& j, const std::string& where);
  void validate() const;
  // The per-step options these imply (MTP depth and λ, which balance loss with which α).
  TrainOptions step_options() const;
};

// One optimizer step, as written to the metrics file.
struct StepRecord {
  int64_t step = 0;     // updates done (1-based)
  int64_t tokens = 0;   // cumulative training tokens (main-model targets)
  double loss = 0, main_loss = 0, balance_loss = 0;
  std::vector<double> mtp_loss;
  double lr = 0, grad_norm = 0;
  double tokens_per_s = 0, elapsed_s = 0;
  double max_vio = 0;                    // mean over MoE layers
  std::vector<double> max_vio_layers;
  std::vector<int64_t> moe_layers;
  std::vector<std::vector<int64_t>> expert_load;  // summed over the step's micro-batches
  std::optional<double> val_loss;

  nlohmann::json to_json() const;
};

struct TrainerPaths {
  std::string data_dir;      // the data: token shards (dsv3 data), or a chat JSONL file (dsv3 sft)
  std::string out_dir;       // checkpoints
  std::string metrics_path;  // JSONL (a "run" header line, then one line per step); empty: none.
                             // A resumed run keeps the lines up to its checkpoint's step and appends.
  std::string tokenizer;     // tokenizer.json to copy into checkpoints; empty: the shards' own
  std::string trace_path;    // Chrome-trace timeline of the run, every rank's spans (core/trace.h); empty: none
  std::string data_format = "token-shards";  // TrainingData::format() of data_dir (a resumed run: its own)
};

class Trainer {
 public:
  // A new run: weights from the seed, or from init_dir's checkpoint when given.
  // open_data opens paths.data_dir as paths.data_format (default: token shards only).
  Trainer(const TrainRunOptions& options, const TrainerPaths& paths, const std::string& init_dir = "",
          const TrainingDataOpener& open_data = open_pretraining_data);
  // Continues the run saved in resume_dir (its trainer_state.json gives the options and the data).
  static Trainer resume(const std::string& resume_dir, const TrainerPaths& paths,
                        const TrainingDataOpener& open_data = open_pretraining_data);
  Trainer(Trainer&&) noexcept;
  ~Trainer();

  const TrainRunOptions& options() const;
  int64_t step() const;  // updates done
  const TrainParams<float>& params() const;
  // Moves the end of the run (a resumed run may be extended; the LR schedule stays as saved, so steps
  // past its decay run at the final rate).
  void set_steps(int64_t steps);

  // Under mpirun: the launch's layout (dist/layout.h), which every rank sets before run(). Data
  // parallelism (ZeRO-1) over the whole launch is there from construction; an --ep above 1 splits each
  // MoE layer's routed experts over the expert-parallel groups (dist/expert_parallel.h); a --pp above 1
  // runs the layers in pipeline stages by the layout's schedule (dist/pipeline_train.h).
  void set_layout(const ParallelLayout& layout);

  // Runs until options().steps or until `stop` becomes true (checked between steps); saves the
  // checkpoint at save_every and at the end (or on stop). on_step is called after every step.
  void run(const std::function<void(const StepRecord&)>& on_step, const std::atomic<bool>* stop = nullptr);

  // Mean main-model CE over the first eval_sequences windows of the val split.
  double evaluate();
  // Writes the checkpoint into dir (each file via a temporary and rename). Under mpirun every rank must
  // call it (rank 0 gathers the optimizer shards and writes).
  void save(const std::string& dir) const;
  // Bytes of AdamW moments this process holds (its ZeRO-1 shard under mpirun).
  size_t optimizer_state_bytes() const;

 private:
  struct Impl;
  static OptimizerStepStats train_one_step(Impl& s, double lr, TrainBatch& batch, StepRecord& r);
  static void write_trace(Impl& s);
  explicit Trainer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsv3
