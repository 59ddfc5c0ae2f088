// `dsv3 train`: trains a DeepSeek-V3-shaped model from scratch (or from a checkpoint) on token shards,
// with DeepSeek-V3's recipe (SPEC.md §2): AdamW, warm-up/constant/cosine LR, auxiliary-loss-free
// balancing, MTP. See train/trainer.h and docs/TRAINING.md.
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "commands.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "dist/comm.h"
#include "dist/layout.h"
#include "dist/pipeline_train.h"
#include "infer/chat_format.h"
#include "rl/distill.h"
#include "rl/sft_data.h"
#include "train/train_presets.h"
#include "train/trainer.h"

namespace dsv3::cli {

namespace {

std::atomic<bool> g_stop{false};

extern "C" void on_interrupt(int) { g_stop.store(true); }

struct TrainArgs {
  bool sft = false;  // dsv3 sft: fine-tune --model on chat conversations
  std::string model, chat_template = "deepseek-r1";
  std::string preset, config, data, out, metrics, resume, init, tokenizer, trace;
  ParallelFlags parallel;
  std::string pp_schedule = "1f1b";
  std::string balance = "aux-free", precision = "bf16", moments = "f32";
  int64_t steps = 0, batch_size = 0, seq_len = 0, grad_accum = 1;
  uint64_t seed = 1;
  double lr = 0, final_lr = -1;
  int64_t warmup = -1, decay_start = -1, decay_end = -1;
  double weight_decay = 0.1, clip = 1.0, init_std = 0.006;
  double bias_gamma = 0.001, balance_alpha = -1, mtp_lambda = 0.3;
  int64_t mtp_depth = -1, eval_every = -1, eval_sequences = 64, save_every = 0, log_every = 0, stop_at = 0;
  bool quiet = false;
};

// Builds the run's options from a preset or config.json and the flags.
TrainRunOptions options_from_args(const TrainArgs& a) {
  TrainRunOptions o;
  double default_lr = 1e-3;
  if (!a.preset.empty()) {
    const TrainPreset p = train_preset(a.preset);
    o.config = p.config;
    o.preset = p.name;
    o.batch_size = p.batch_size;
    o.seq_len = p.seq_len;
    default_lr = p.learning_rate;
  } else {
    o.config = load_model_config(a.config);
    o.config.quantization_config = {};
    o.preset = a.sft ? "sft:" + a.model : "config:" + a.config;
    if (a.sft) default_lr = 2e-4;  // fine-tuning: a tenth of what the presets pretrain with
  }
  if (a.batch_size > 0) o.batch_size = a.batch_size;
  if (a.seq_len > 0) o.seq_len = a.seq_len;
  o.grad_accum = a.grad_accum;
  o.steps = a.steps;
  o.seed = a.seed;
  o.precision = parse_compute_precision(a.precision);
  o.schedule = LrSchedule::deepseek_v3(o.steps, a.lr > 0 ? a.lr : default_lr);
  if (a.final_lr >= 0) o.schedule.final_lr = a.final_lr;
  if (a.warmup >= 0) o.schedule.warmup_steps = a.warmup;
  if (a.decay_start >= 0) o.schedule.decay_start = a.decay_start;
  if (a.decay_end >= 0) o.schedule.decay_end = a.decay_end;
  o.adamw.weight_decay = a.weight_decay;
  o.adamw.clip_norm = a.clip;
  o.adamw.moments = a.moments == "bf16" ? MomentDtype::bf16 : MomentDtype::f32;
  o.init_std = a.init_std;
  o.balance = parse_balance_mode(a.balance);
  o.bias_gamma = a.bias_gamma;
  // α: DeepSeek-V3's complementary sequence-wise loss is 1e-4; the classic auxiliary loss of the
  // ablation uses 1e-3 unless told otherwise.
  o.balance_alpha = a.balance_alpha >= 0 ? a.balance_alpha : o.balance == BalanceMode::aux_loss ? 1e-3 : 1e-4;
  o.mtp_depth = a.mtp_depth;
  o.mtp_lambda = a.mtp_lambda;
  o.eval_every = a.eval_every >= 0 ? a.eval_every : std::max<int64_t>(1, o.steps / 10);
  o.eval_sequences = a.eval_sequences;
  o.save_every = a.save_every;
  return o;
}

std::string step_note(const StepRecord& r, double last_val) {
  char val[32] = "";
  if (!std::isnan(last_val)) std::snprintf(val, sizeof(val), "  val %.4f", last_val);
  char buffer[256];
  std::snprintf(buffer, sizeof(buffer), "loss %.4f%s  lr %.2e  MaxVio %.3f  %s tok/s", r.main_loss, val, r.lr,
                r.max_vio, format_count(r.tokens_per_s).c_str());
  return buffer;
}

int run_train(const TrainArgs& args) {
  const Comm& comm = Comm::world();
  TrainArgs a = args;
  if (comm.rank() != 0) a.quiet = true;  // rank 0 reports for the launch
  a.parallel.schedule = parse_pipeline_schedule(a.pp_schedule);
  // The layout under mpirun (layout.h): pipeline stages × data parallelism (ZeRO-1), experts split over --ep ranks.
  ParallelLayout layout;
  const auto check_layout = [&](const TrainRunOptions& o) {
    layout = make_parallel_layout(comm.size(), comm.rank(), a.parallel, o.config, o.grad_accum);
    if (comm.distributed() && comm.rank() == 0) std::fputs(layout.describe().c_str(), stderr);
  };
  const char* name = a.sft ? "sft" : "train";
  // dsv3 sft starts from --model: its config, weights and tokenizer.
  if (a.sft && a.resume.empty()) {
    DSV3_CHECK(!a.model.empty(), "[sft] --model DIR is required (the checkpoint to fine-tune)");
    a.config = a.model + "/config.json";
    a.init = a.model;
    DSV3_CHECK(std::filesystem::is_regular_file(a.config), "[sft] ", a.model, " has no config.json: give a "
               "checkpoint directory (dsv3 train's --out, or a Hugging Face download)");
    if (a.tokenizer.empty() && std::filesystem::is_regular_file(a.model + "/tokenizer.json"))
      a.tokenizer = a.model + "/tokenizer.json";
  }
  TrainerPaths paths;
  paths.data_dir = a.data;
  paths.tokenizer = a.tokenizer;
  paths.trace_path = a.trace;
  if (a.sft) paths.data_format = sft_data_format(parse_chat_template(a.chat_template));
  // Chat conversations render with the run's tokenizer: the one given, the model's, or a resumed run's own.
  const std::string chat_tokenizer =
      !a.tokenizer.empty() ? a.tokenizer : !a.resume.empty() ? a.resume + "/tokenizer.json" : std::string();
  const TrainingDataOpener open_data = [&](const std::string& format, const std::string& path) {
    return format.rfind("chat-jsonl", 0) == 0 && a.sft ? open_sft_data(format, path, chat_tokenizer)
                                                       : open_pretraining_data(format, path);
  };
  std::optional<Trainer> trainer;
  if (!a.resume.empty()) {
    paths.out_dir = a.out.empty() ? a.resume : a.out;
    paths.metrics_path = a.metrics.empty() ? paths.out_dir + "/metrics.jsonl" : a.metrics;
    trainer.emplace(Trainer::resume(a.resume, paths, open_data));
    check_layout(trainer->options());
    if (a.steps > 0) trainer->set_steps(a.steps);
    if (comm.rank() == 0)
      std::fprintf(stderr, "[%s] resuming %s at step %lld of %lld\n", name, a.resume.c_str(),
                 (long long)trainer->step(), (long long)trainer->options().steps);
  } else {
    DSV3_CHECK(!a.data.empty(), "[", name, "] --data ", a.sft ? "FILE is required (chat conversations as JSON lines)"
                                                            : "DIR is required (token shards from dsv3 data)");
    DSV3_CHECK(!a.out.empty(), "[", name, "] --out DIR is required (where the checkpoint is written)");
    DSV3_CHECK(!a.preset.empty() || !a.config.empty(), "[train] give --preset NAME or --config FILE");
    DSV3_CHECK(a.steps > 0, "[", name, "] --steps N is required");
    if (std::filesystem::exists(a.out + "/trainer_state.json"))
      DSV3_FAIL("[", name, "] ", a.out, " already holds a training checkpoint: continue it with --resume ", a.out,
                " or choose another --out");
    paths.out_dir = a.out;
    paths.metrics_path = a.metrics.empty() ? a.out + "/metrics.jsonl" : a.metrics;
    const TrainRunOptions options = options_from_args(a);
    check_layout(options);
    trainer.emplace(options, paths, a.init, open_data);
  }
  trainer->set_layout(layout);
  if (layout.pp > 1 && comm.rank() == 0)
    std::fputs(describe_pipeline_stages(trainer->options().config, layout, trainer->options().seq_len,
                                        resolve_mtp_depth(trainer->options().config,
                                                          trainer->options().step_options())).c_str(),
               stderr);
  if (comm.distributed() && comm.rank() == 0) {
    const double full = double(trainer->params().size()) * 2 *
                        (trainer->options().adamw.moments == MomentDtype::bf16 ? 2 : 4);
    std::fprintf(stderr, "[train] AdamW moments on rank 0: %.2f MiB of %.2f MiB (ZeRO-1 over %d ranks)\n",
                 double(trainer->optimizer_state_bytes()) / (1 << 20), full / (1 << 20), comm.size());
  }
  const TrainRunOptions& o = trainer->options();
  const int64_t first_step = trainer->step();
  if (comm.rank() == 0)
    std::fprintf(stderr,
               "[%s] %s: %s parameters, batch %lld x %lld tokens x %lld micro-batches, %lld steps, lr %.2e "
               "(warm-up %lld, decay %lld..%lld), balance %s, MTP depth %lld, %s, %d threads\n",
               name, o.preset.c_str(), format_count(double(trainer->params().size())).c_str(), (long long)o.batch_size,
               (long long)o.seq_len, (long long)o.grad_accum, (long long)o.steps, o.schedule.peak,
               (long long)o.schedule.warmup_steps, (long long)o.schedule.decay_start, (long long)o.schedule.decay_end,
               balance_mode_name(o.balance), (long long)resolve_mtp_depth(o.config, o.step_options()),
               compute_precision_name(o.precision), num_threads());

  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);
  ProgressBar bar(name, o.steps - first_step, "steps", !a.quiet);
  const bool terminal = bar.is_terminal();
  const int64_t log_every = a.log_every > 0 ? a.log_every : std::max<int64_t>(1, (o.steps - first_step) / 20);
  double last_val = NAN, tokens_per_s_sum = 0, max_vio_sum = 0;
  int64_t steps_run = 0;
  std::atomic<bool>& stop = g_stop;
  trainer->run(
      [&](const StepRecord& r) {
        if (a.stop_at > 0 && r.step >= a.stop_at) stop.store(true);
        if (r.val_loss) last_val = *r.val_loss;
        tokens_per_s_sum += r.tokens_per_s;
        max_vio_sum += r.max_vio;
        ++steps_run;
        bar.set_note(step_note(r, last_val));
        bar.update(r.step - first_step);
        if (!terminal && !a.quiet && (r.step % log_every == 0 || r.val_loss || r.step == o.steps)) {
          // The bar's ETA: this process's own pace (a resumed run's earlier steps may have run elsewhere).
          std::fprintf(stderr, "[%s] step %lld/%lld  %s  %s elapsed, ETA %s\n", name, (long long)r.step,
                       (long long)o.steps, step_note(r, last_val).c_str(), format_duration(r.elapsed_s).c_str(),
                       format_duration(bar.eta_seconds()).c_str());
        }
      },
      &g_stop);
  bar.finish();
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  const bool stopped_early = trainer->step() < o.steps;
  if (comm.rank() != 0) return stopped_early && !(a.stop_at > 0 && trainer->step() >= a.stop_at) ? 130 : 0;
  if (stopped_early)
    std::fprintf(stderr, "[%s] stopped at step %lld of %lld; checkpoint saved: continue with --resume %s\n",
                 name, (long long)trainer->step(), (long long)o.steps, paths.out_dir.c_str());
  if (steps_run > 0) {
    std::printf("step %lld: val loss %.4f (perplexity %.1f), mean %s tokens/s, mean MaxVio %.3f\n",
                (long long)trainer->step(), last_val, std::exp(last_val),
                format_count(tokens_per_s_sum / double(steps_run)).c_str(), max_vio_sum / double(steps_run));
  }
  std::printf("checkpoint: %s (dsv3 generate --model %s)\nmetrics: %s (dsv3 plot --metrics %s --out DIR)\n",
              paths.out_dir.c_str(), paths.out_dir.c_str(), paths.metrics_path.c_str(), paths.metrics_path.c_str());
  return stopped_early && !(a.stop_at > 0 && trainer->step() >= a.stop_at) ? 130 : 0;
}

}  // namespace

// The options dsv3 train and dsv3 sft share: the run's shape, recipe, checkpoints and layout.
void add_run_options(CLI::App* cmd, TrainArgs* a) {
  cmd->add_option("--out", a->out, "Checkpoint directory (for --resume: default the resumed directory)");
  cmd->add_option("--steps", a->steps, "Optimizer steps of the whole run (for --resume: extend the run to N)");
  cmd->add_option("--metrics", a->metrics, "Metrics file, one JSON line per step (default OUT/metrics.jsonl)");
  cmd->add_option("--resume", a->resume, "Continue the run saved in this checkpoint directory (bit-identical to an "
                                         "uninterrupted run with the same thread count)");
  cmd->add_option("--seed", a->seed, "Seed of the initial weights and of the batch order")->capture_default_str();
  cmd->add_option("--batch-size", a->batch_size, "Sequences per micro-batch (default: the preset's; 8)");
  cmd->add_option("--seq-len", a->seq_len, "Tokens per sequence (default: the preset's; 256 for --config)");
  cmd->add_option("--grad-accum", a->grad_accum, "Micro-batches per optimizer step")->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--precision", a->precision, "Arithmetic of the linear layers: f32, bf16 or fp8 (FP32 master "
                                               "weights in every case)")
      ->capture_default_str()->check(CLI::IsMember({"f32", "bf16", "fp8"}));
  cmd->add_option("--lr", a->lr, "Peak learning rate (default: the preset's)");
  cmd->add_option("--final-lr", a->final_lr, "Learning rate after the cosine decay (default: peak / 10)");
  cmd->add_option("--warmup-steps", a->warmup, "Linear warm-up steps (default: 2% of the run, at most 2000)");
  cmd->add_option("--decay-start", a->decay_start, "Step where the cosine decay starts (default: 10/14.8 of the run)");
  cmd->add_option("--decay-end", a->decay_end, "Step where it ends (default: 14.3/14.8 of the run)");
  cmd->add_option("--weight-decay", a->weight_decay, "AdamW weight decay (matrices only)")->capture_default_str();
  cmd->add_option("--clip", a->clip, "Global gradient-norm clipping (0: off)")->capture_default_str();
  cmd->add_option("--adam-moments", a->moments, "Storage of the AdamW moments: f32 or bf16")
      ->capture_default_str()->check(CLI::IsMember({"f32", "bf16"}));
  cmd->add_option("--balance", a->balance, "Expert load balancing: aux-free (DeepSeek-V3: bias update + "
                                           "sequence-wise loss), aux-loss (classic auxiliary loss) or none")
      ->capture_default_str()->check(CLI::IsMember({"aux-free", "aux-loss", "none"}));
  cmd->add_option("--bias-gamma", a->bias_gamma, "Bias update speed gamma of aux-free balancing (0: no update)")
      ->capture_default_str();
  cmd->add_option("--balance-alpha", a->balance_alpha,
                  "Balance loss weight alpha (default 1e-4 for aux-free's sequence-wise loss, 1e-3 for aux-loss)");
  cmd->add_option("--mtp-depth", a->mtp_depth, "MTP modules in the loss (default: all of the model's; 0: none)");
  cmd->add_option("--mtp-lambda", a->mtp_lambda, "MTP loss weight lambda")->capture_default_str();
  cmd->add_option("--eval-every", a->eval_every, "Steps between validation losses (default: a tenth of the run)");
  cmd->add_option("--eval-sequences", a->eval_sequences, "Validation sequences per evaluation")->capture_default_str();
  cmd->add_option("--save-every", a->save_every, "Steps between checkpoints (always at the end; 0: end only)")
      ->capture_default_str();
  cmd->add_option("--stop-at", a->stop_at, "Save and stop when the run reaches this step (its LR schedule stays "
                                           "that of --steps); continue it later with --resume")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--pp", a->parallel.pp, "Under mpirun: pipeline stages P (ranks = P x data-parallel ranks)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--dp", a->parallel.dp, "Under mpirun: data-parallel ranks D (default: ranks / P); ZeRO-1 "
                  "splits the optimizer state over them")->check(CLI::NonNegativeNumber);
  cmd->add_option("--ep", a->parallel.ep, "Under mpirun: split each MoE layer's routed experts over E ranks of each data-parallel group (E divides D)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--pp-schedule", a->pp_schedule, "Pipeline schedule: 1f1b, dualpipe or dualpipev")
      ->capture_default_str()->check(CLI::IsMember({"1f1b", "dualpipe", "dualpipev"}));
  cmd->add_option("--micro-batches", a->parallel.micro_batches,
                  "Micro-batches per step through each pipeline (default: --grad-accum / data-parallel ranks)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--ranks-per-node", a->parallel.ranks_per_node, "Ranks on each node (default: all on one)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--trace", a->trace, "Write a Chrome-trace timeline of the run (every rank's compute, "
                  "communication and optimizer spans; open it in Perfetto)");
  cmd->add_option("--log-every", a->log_every, "When stderr is not a terminal: steps between log lines");
  cmd->add_flag("--quiet", a->quiet, "No progress display");
}

Runner add_train(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand(
      "train", "Train a DeepSeek-V3-shaped model (MLA, DeepSeekMoE with auxiliary-loss-free balancing, MTP) on "
               "token shards with DeepSeek-V3's recipe; writes a Hugging Face checkpoint dsv3 generate can run");
  cmd->add_option("--preset", a->preset, "Model and batch shape: tiny or small (see docs/TRAINING.md)")
      ->check(CLI::IsMember(train_preset_names()));
  cmd->add_option("--config", a->config, "A Hugging Face config.json instead of a preset")->excludes("--preset");
  cmd->add_option("--data", a->data, "Token shards from dsv3 data (for --resume: default the run's own)");
  cmd->add_option("--init", a->init, "Start from this checkpoint's weights instead of random ones");
  cmd->add_option("--init-std", a->init_std, "Std of the random initial weights")->capture_default_str();
  cmd->add_option("--tokenizer", a->tokenizer,
                  "tokenizer.json copied into checkpoints (default: the one the token shards were made with)");
  add_run_options(cmd, a.get());
  cmd->get_option("--init")->excludes("--resume");
  return [a] { return run_train(*a); };
}

Runner add_sft(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  a->sft = true;
  a->balance = "aux-free";
  CLI::App* cmd = app.add_subcommand(
      "sft", "Fine-tune a checkpoint on chat conversations (JSON lines of OpenAI-style messages, e.g. dsv3 tasks "
             "--with-solutions): DeepSeek's chat template, loss on the assistant replies only, conversations packed "
             "into sequences with attention kept inside each; the trainer's options, checkpoints and metrics");
  cmd->add_option("--model", a->model, "The checkpoint to fine-tune (its config.json, weights and tokenizer.json)");
  cmd->add_option("--data", a->data, "Conversations: one {\"messages\": [...]} per line (for --resume: the run's own)");
  cmd->add_option("--chat-template", a->chat_template, "deepseek-r1 (reasoning in <think>...</think>) or deepseek-v3")
      ->capture_default_str()->check(CLI::IsMember({"deepseek-r1", "deepseek-v3"}));
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer.json (default: the model's)");
  add_run_options(cmd, a.get());
  cmd->get_option("--model")->excludes("--resume");
  cmd->get_option("--lr")->description("Peak learning rate (default 2e-4)");
  return [a] { return run_train(*a); };
}

Runner add_distill(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  a->sft = true;
  auto d = std::make_shared<DistillOptions>();
  auto task = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "distill", "Distil a teacher's reasoning into a student (DeepSeek-R1's recipe): the teacher samples replies to a "
                 "task's train problems, the correct ones (rejection sampling by the task's reward) become "
                 "conversations, and the student is fine-tuned on them as dsv3 sft does");
  cmd->add_option("--teacher", d->teacher_dir, "The checkpoint that samples (with its tokenizer.json)")->required();
  cmd->add_option("--student", a->model, "The checkpoint to fine-tune")->required();
  cmd->add_option("--task", *task, "arithmetic, parity or countdown")->required()
      ->check(CLI::IsMember({"arithmetic", "parity", "countdown"}));
  cmd->add_option("--problems", d->problems, "Train problems the teacher answers")->capture_default_str();
  cmd->add_option("--samples", d->samples, "Replies per problem (K)")->capture_default_str();
  cmd->add_option("--max-completion-length", d->max_completion_length, "Tokens per reply at most")
      ->capture_default_str();
  cmd->add_option("--temperature", d->temperature, "The teacher's sampling temperature")->capture_default_str();
  cmd->add_option("--digits", d->task_options.digits, "arithmetic: digits per operand")->capture_default_str();
  cmd->add_option("--bits", d->task_options.bits, "parity: bits")->capture_default_str();
  cmd->add_option("--numbers", d->task_options.numbers, "countdown: numbers")->capture_default_str();
  cmd->add_option("--chat-template", a->chat_template, "deepseek-r1 or deepseek-v3")->capture_default_str()
      ->check(CLI::IsMember({"deepseek-r1", "deepseek-v3"}));
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer.json for the student (default: the student's)");
  add_run_options(cmd, a.get());
  cmd->remove_option(cmd->get_option("--resume"));
  return [a, d, task] {
    DSV3_CHECK(!a->out.empty(), "[distill] --out DIR is required (the student's checkpoint and distill.jsonl)");
    d->task = parse_task_kind(*task);
    d->chat_template = parse_chat_template(a->chat_template);
    d->seed = a->seed;
    std::filesystem::create_directories(a->out);
    a->data = a->out + "/distill.jsonl";
    const DistillStats stats = write_distillation_data(*d, a->data);
    std::fprintf(stderr, "[distill] kept %lld of %lld replies (%.1f%%), %lld of %lld problems solved, in %s\n",
                 (long long)stats.kept, (long long)stats.sampled, 100.0 * double(stats.kept) / double(stats.sampled),
                 (long long)stats.problems_solved, (long long)d->problems, a->data.c_str());
    DSV3_CHECK(stats.kept > 0, "[distill] the teacher answered none of the ", d->problems, " problems correctly: "
               "nothing to distil (a stronger teacher, an easier difficulty, or more --samples)");
    return run_train(*a);
  };
}

}  // namespace dsv3::cli
