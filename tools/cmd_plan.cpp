// `dsv3 plan`: what training a config on a GPU cluster takes (src/dist/plan.h), with what-ifs.
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/error.h"
#include "dist/pipeline_schedule.h"
#include "dist/plan.h"
#include "model/presets.h"

namespace dsv3::cli {

namespace {

// "14.8T", "500B", "2e12" -> tokens.
double parse_tokens(const std::string& text) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    DSV3_FAIL("[plan] --tokens \"", text, "\" is not a number (e.g. 14.8T, 500B, 2e12)");
  }
  const std::string suffix = text.substr(used);
  if (suffix == "T") return v * 1e12;
  if (suffix == "B") return v * 1e9;
  if (suffix == "M") return v * 1e6;
  DSV3_CHECK(suffix.empty(), "[plan] --tokens \"", text, "\": the unit must be T, B or M");
  return v;
}

}  // namespace

Runner add_plan(CLI::App& app) {
  struct Args {
    std::string preset = "deepseek-v3", config, schedule = "dualpipe", precision = "fp8", tokens = "14.8T";
    PlanInputs in;
    bool json = false;
    std::string trace;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "plan", "What training a model on a GPU cluster takes: parameters and memory per GPU, all-to-all bytes, "
              "pipeline bubble, FLOPs, GPU-hours and dollars (defaults: DeepSeek-V3 as its report trained it)");
  auto* preset = cmd->add_option("--preset", a->preset, "Model preset (see dsv3 init --help)")->capture_default_str();
  cmd->add_option("--config", a->config, "A config.json instead of a preset")->excludes(preset);
  cmd->add_option("--gpu", a->in.gpu, "h800 or h100")->capture_default_str()->check(CLI::IsMember({"h800", "h100"}));
  cmd->add_option("--gpus", a->in.gpus, "GPUs in the cluster")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--gpus-per-node", a->in.gpus_per_node, "GPUs per node")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--pp", a->in.pp, "Pipeline stages")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--ep", a->in.ep, "Expert-parallel GPUs within a stage")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--dp", a->in.dp, "Data-parallel GPUs per stage (default: gpus / pp)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--pp-schedule", a->schedule, "1f1b, dualpipe or dualpipev")->capture_default_str()
      ->check(CLI::IsMember({"1f1b", "dualpipe", "dualpipev"}));
  cmd->add_option("--precision", a->precision, "GEMM precision: fp8 or bf16")->capture_default_str()
      ->check(CLI::IsMember({"fp8", "bf16"}));
  cmd->add_option("--seq", a->in.seq, "Sequence length")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--global-batch", a->in.global_batch, "Sequences per optimizer step")->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--micro-batch", a->in.micro_batch, "Sequences per micro-batch")->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--tokens", a->tokens, "Training tokens (14.8T, 500B, 2e12)")->capture_default_str();
  cmd->add_option("--mfu", a->in.mfu, "MFU of the GEMM precision's peak, bubbles included (default: the efficiency "
                  "DeepSeek-V3's run sustained, applied to this model and layout)")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--price", a->in.dollars_per_gpu_hour, "Dollars per GPU-hour")->capture_default_str();
  auto* other = cmd->add_option("--other-gpu-hours", a->in.other_gpu_hours, "GPU-hours of stages not modelled (default for "
                  "deepseek-v3: the report's context extension 119K + post-training 5K; else 0)")->capture_default_str();
  cmd->add_option("--max-nodes-per-token", a->in.max_nodes_per_token, "Node-limited routing: nodes a token may reach")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_flag("--json", a->json, "One JSON object, what-ifs included");
  cmd->add_option("--trace", a->trace, "Write the pipeline schedule's simulated timeline (F : B : W = 1 : 2 : 1, "
                  "1 ms each F) as a Chrome trace, one process per rank (open it in Perfetto)");
  return [a, other] {
    PlanInputs in = a->in;
    in.config = a->config.empty() ? preset_config(a->preset) : load_model_config(a->config);
    in.schedule = parse_pipeline_schedule(a->schedule);
    in.fp8 = a->precision == "fp8";
    in.tokens = parse_tokens(a->tokens);
    // The report's context-extension and post-training hours belong to DeepSeek-V3 alone.
    if (other->count() == 0 && !(a->config.empty() && a->preset == "deepseek-v3")) in.other_gpu_hours = 0;
    const Plan plan = make_plan(in);
    if (!a->trace.empty()) {
      DSV3_CHECK(in.pp > 1, "[plan] --trace draws the pipeline schedule: it needs --pp 2 or more");
      const PipelineSimulation sim = simulate_pipeline(build_pipeline_schedule(in.schedule, in.pp, plan.micro_batches), {});
      std::vector<std::string> names;
      for (int64_t r = 0; r < in.pp; ++r) names.push_back(cat("rank ", r));
      write_chrome_trace(a->trace, sim.timeline, names);
      std::fprintf(stderr, "[plan] %s schedule of %lld ranks and %lld micro-batches: %s (bubble %.1f%% of the step)\n",
                   pipeline_schedule_name(in.schedule), (long long)in.pp, (long long)plan.micro_batches, a->trace.c_str(),
                   100 * sim.bubble_fraction());
    }
    // What-ifs: one input changed each (at the same efficiency, unless --mfu fixes the MFU).
    struct WhatIf {
      const char* name;
      PlanInputs in;
    };
    std::vector<WhatIf> whatifs;
    PlanInputs h100 = in, bf16 = in, one_f_one_b = in;
    h100.gpu = in.gpu == "h100" ? "h800" : "h100";
    bf16.fp8 = !in.fp8;
    one_f_one_b.schedule = in.schedule == PipelineSchedule::one_f_one_b ? PipelineSchedule::dualpipe
                                                                          : PipelineSchedule::one_f_one_b;
    whatifs.push_back({h100.gpu == "h100" ? "H100 instead of H800" : "H800 instead of H100", h100});
    whatifs.push_back({bf16.fp8 ? "FP8 GEMMs instead of BF16" : "BF16 GEMMs instead of FP8", bf16});
    whatifs.push_back({one_f_one_b.schedule == PipelineSchedule::one_f_one_b ? "1F1B instead of DualPipe"
                                                                               : "DualPipe instead of 1F1B",
                       one_f_one_b});
    if (a->json) {
      nlohmann::json j = plan.to_json();
      for (const WhatIf& w : whatifs) j["what_if"][w.name] = make_plan(w.in).to_json();
      std::printf("%s\n", j.dump(2).c_str());
      return 0;
    }
    std::printf("%s", plan.to_text().c_str());
    std::printf("what-if (one change each; time at the same efficiency unless --mfu):\n");
    for (const WhatIf& w : whatifs) {
      const Plan p = make_plan(w.in);
      std::printf("  %-28s %s pre-training GPU-hours (%+.1f%%), %.1f days, $%s; bubble %.1f%%, "
                  "all-to-all over NVLink / compute %.2f\n",
                  w.name, scaled(p.pretrain_gpu_hours).c_str(), 100 * (p.pretrain_gpu_hours / plan.pretrain_gpu_hours - 1),
                  p.days, scaled(p.dollars).c_str(), 100 * p.bubble_fraction, p.nvlink_time_over_compute);
    }
    return 0;
  };
}

}  // namespace dsv3::cli
