// `dsv3 grpo`: GRPO with verifiable rewards (src/rl/grpo_trainer.h).
#include <cstdio>

#include "commands.h"
#include "core/error.h"
#include "core/progress.h"
#include "rl/grpo_trainer.h"

namespace dsv3::cli {

Runner add_grpo(CLI::App& app) {
  struct Args {
    GrpoRunOptions o;
    std::string task, loss = "grpo", chat_template = "deepseek-r1", precision = "bf16";
    bool quiet = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "grpo", "Reinforcement learning with verifiable rewards (GRPO): sample groups of completions of a task's "
              "prompts with the inference engine, score them, and optimise the clipped objective with a KL "
              "penalty against the starting model on the training path");
  cmd->add_option("--model", a->o.model_dir, "The checkpoint to start from (also the KL reference), e.g. from dsv3 sft")
      ->required();
  cmd->add_option("--task", a->task, "arithmetic, parity or countdown")->required()
      ->check(CLI::IsMember({"arithmetic", "parity", "countdown"}));
  cmd->add_option("--out", a->o.out_dir, "Where the trained checkpoint and metrics.jsonl go")->required();
  cmd->add_option("--steps", a->o.steps, "Steps (each: a batch of rollouts and --num-iterations updates)")
      ->capture_default_str();
  cmd->add_option("--prompts-per-step", a->o.prompts_per_step, "Prompts per step")->capture_default_str();
  cmd->add_option("--num-generations", a->o.generations, "Completions per prompt (G)")->capture_default_str();
  cmd->add_option("--num-iterations", a->o.iterations, "Optimizer steps per batch of rollouts")->capture_default_str();
  cmd->add_option("--max-completion-length", a->o.objective.max_completion_length, "Tokens per completion at most")
      ->capture_default_str();
  cmd->add_flag("--mask-truncated", a->o.mask_truncated, "Leave completions that hit the length limit out of the loss");
  cmd->add_option("--temperature", a->o.temperature, "Sampling temperature of the rollouts")->capture_default_str();
  cmd->add_option("--beta", a->o.objective.beta, "KL weight against the reference")->capture_default_str();
  cmd->add_option("--epsilon", a->o.objective.epsilon, "Clip range below 1 (and above, unless --epsilon-high)")
      ->capture_default_str();
  cmd->add_option("--epsilon-high", a->o.objective.epsilon_high, "Clip range above 1 (DAPO's clip-higher)");
  cmd->add_option("--loss-type", a->loss, "grpo (per-sequence mean), dr_grpo (constant normaliser, no std "
                                          "scaling) or dapo (token-level mean)")
      ->capture_default_str()->check(CLI::IsMember({"grpo", "dr_grpo", "dapo"}));
  cmd->add_option("--lr", a->o.lr, "AdamW learning rate (constant)")->capture_default_str();
  cmd->add_option("--weight-decay", a->o.weight_decay, "AdamW weight decay")->capture_default_str();
  cmd->add_option("--clip", a->o.clip, "Gradient-norm clipping (0: off)")->capture_default_str();
  cmd->add_option("--precision", a->precision, "GEMMs of the training path: f32, bf16 or fp8")->capture_default_str()
      ->check(CLI::IsMember({"f32", "bf16", "fp8"}));
  cmd->add_option("--chat-template", a->chat_template, "deepseek-r1 or deepseek-v3")->capture_default_str()
      ->check(CLI::IsMember({"deepseek-r1", "deepseek-v3"}));
  cmd->add_option("--digits", a->o.task_options.digits, "arithmetic: digits per operand")->capture_default_str();
  cmd->add_option("--bits", a->o.task_options.bits, "parity: bits")->capture_default_str();
  cmd->add_option("--numbers", a->o.task_options.numbers, "countdown: numbers")->capture_default_str();
  cmd->add_option("--seed", a->o.seed, "Seed of the prompts and the sampling")->capture_default_str();
  cmd->add_option("--eval-every", a->o.eval_every, "Steps between held-out evaluations (0: start and end)")
      ->capture_default_str();
  cmd->add_option("--eval-problems", a->o.eval_problems, "Test-split problems per evaluation (greedy)")
      ->capture_default_str();
  cmd->add_option("--metrics", a->o.metrics_path, "Metrics file (default OUT/metrics.jsonl)");
  cmd->add_flag("--quiet", a->quiet, "No progress display");
  return [a] {
    GrpoRunOptions o = a->o;
    o.task = parse_task_kind(a->task);
    o.objective.loss = parse_grpo_loss(a->loss);
    o.chat_template = parse_chat_template(a->chat_template);
    o.precision = parse_compute_precision(a->precision);
    ProgressBar bar("grpo", o.steps, "steps", !a->quiet);
    double first_accuracy = -1, last_accuracy = -1;
    run_grpo(o, [&](const GrpoStepRecord& r) {
      if (r.eval_accuracy) {
        if (first_accuracy < 0) first_accuracy = *r.eval_accuracy;
        last_accuracy = *r.eval_accuracy;
      }
      char note[200];
      std::snprintf(note, sizeof(note), "reward %.3f  acc %.2f  kl %.4f  len %.1f  held-out %.2f", r.reward, r.accuracy,
                    r.kl, r.completion_length, last_accuracy);
      bar.set_note(note);
      bar.update(r.step);
    });
    bar.finish();
    std::printf("held-out accuracy %.3f -> %.3f (%lld problems, greedy)\ncheckpoint: %s\nmetrics: %s\n",
                first_accuracy, last_accuracy, (long long)o.eval_problems, o.out_dir.c_str(),
                (o.metrics_path.empty() ? o.out_dir + "/metrics.jsonl" : o.metrics_path).c_str());
    return 0;
  };
}

}  // namespace dsv3::cli
