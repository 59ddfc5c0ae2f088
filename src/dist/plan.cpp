#include "dist/plan.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "dist/pipeline_schedule.h"
#include "io/hf_names.h"
#include "model/presets.h"
#include "model/stats.h"
#include "train/train_step.h"

namespace dsv3 {

GpuSpec gpu_spec(const std::string& name) {
  // Dense tensor-core peaks of the SXM parts (NVIDIA's datasheets); NVLink as the report measures it on
  // H800 (160 GB/s achievable) and the H100's 900 GB/s NVLink scaled the same way; IB 50 GB/s per GPU.
  if (name == "h800") return {"h800", 989.5, 1979.0, 160.0, 50.0, 80.0};
  if (name == "h100") return {"h100", 989.5, 1979.0, 360.0, 50.0, 80.0};
  DSV3_FAIL("[plan] --gpu must be h800 or h100, got \"", name, "\"");
}

double bubble_fraction(PipelineSchedule schedule, int64_t pp, int64_t micro_batches) {
  // In units of F (one stage's forward) with B = 2F, W = F, F&B = F + B; a step computes M (F + B) = 3M F
  // per rank.
  const double P = double(pp), M = double(micro_batches);
  double bubble = 0;
  switch (schedule) {
    case PipelineSchedule::one_f_one_b: bubble = (P - 1) * 3; break;               // (PP − 1)(F + B)
    case PipelineSchedule::dualpipe: bubble = (P / 2 - 1) * (3 + 2 - 3); break;     // (PP/2 − 1)(F&B + B − 3W)
    case PipelineSchedule::dualpipev: bubble = (P - 1) * (3 + 2 - 3); break;        // DualPipe's with PP = 2P stages
  }
  // A DualPipeV rank runs every micro-batch through two stages of half the layers: 2M chunks of F + B.
  const double work = (schedule == PipelineSchedule::dualpipev ? 6 : 3) * M;
  return bubble / (work + bubble);
}

namespace {

// "model.layers.12.mlp..." -> 12; other tensors -> -1.
int64_t layer_of(const std::string& name) {
  const std::string prefix = "model.layers.";
  if (name.rfind(prefix, 0) != 0) return -1;
  return std::stoll(name.substr(prefix.size()));
}

bool is_routed_expert(const std::string& name) { return name.find(".mlp.experts.") != std::string::npos; }

// Bytes of activations one token leaves per layer for the backward, with DeepSeek-V3's recipe (SPEC.md
// §3): linear inputs cached in FP8 (1 byte), RMSNorm, SwiGLU and MLA's up-projections recomputed, the
// attention core's output (BF16) and log-sum-exp (F32), the residual stream (BF16), the router's input
// (BF16) and each chosen expert's input and gate/up outputs (FP8). An estimate, not a measurement.
double activation_bytes_per_token_layer(const ModelConfig& c, bool moe) {
  const double H = double(c.hidden_size), heads = double(c.num_attention_heads);
  double b = 2 * H;                                                      // residual stream
  b += H + 2 * double(c.q_lora_rank.value_or(0) + c.kv_lora_rank + c.qk_rope_head_dim);  // MLA inputs, latents
  b += heads * double(c.v_head_dim) * 2 + heads * 4;                      // attention output, LSE
  if (!moe) return b + H + 2 * double(c.intermediate_size);
  const double experts = double(c.num_experts_per_tok + c.n_shared_experts);
  return b + 2 * H + experts * (H + 2 * double(c.moe_intermediate_size)) + double(c.num_experts_per_tok) * 4;
}

// FLOPs per training token (the trainer's count: 6 × matmul parameters used + 3 × the causal attention
// core, MTP included) and the share of them in the linear layers FP8 runs (not embedding, head,
// router or attention core).
struct FlopProfile {
  double flops_per_token = 0, fp8_fraction = 0;
};

FlopProfile flop_profile(const ModelConfig& c, int64_t seq) {
  double linear_active = 0;  // parameters of FP8 linears one token uses (routed experts: K of E)
  for (const HfTensorSpec& t : hf_tensor_specs(c)) {
    if (t.role != TensorRole::linear) continue;
    double n = 1;
    for (int64_t d : t.shape) n *= double(d);
    linear_active += is_routed_expert(t.name) ? n * double(c.num_experts_per_tok) / double(c.n_routed_experts) : n;
  }
  FlopProfile f;
  f.flops_per_token = train_step_flops(c, 1, seq, c.num_nextn_predict_layers) / double(seq);
  f.fp8_fraction = std::min(1.0, 6 * linear_active / f.flops_per_token);
  return f;
}

// Seconds one GPU takes per token at its full peak: the FP8 share at the FP8 rate, the rest at BF16's.
double peak_seconds_per_token(const FlopProfile& f, const GpuSpec& g, bool fp8) {
  const double share = fp8 ? f.fp8_fraction : 0.0;
  return f.flops_per_token * (share / (g.fp8_tflops * 1e12) + (1 - share) / (g.bf16_tflops * 1e12));
}

}  // namespace

double report_efficiency() {
  // DeepSeek-V3 as the report trained it: 4K sequences, FP8 GEMMs on H800, DualPipe over 16 stages with
  // 15,360 / 128 = 120 micro-batches per data-parallel rank.
  const FlopProfile v3 = flop_profile(preset_config("deepseek-v3"), 4096);
  const double bubble = bubble_fraction(PipelineSchedule::dualpipe, 16, 120);
  return peak_seconds_per_token(v3, gpu_spec("h800"), true) * 1e12 / (kReportGpuHoursPerTrillion * 3600) /
         (1 - bubble);
}

double report_implied_mfu() {
  const FlopProfile v3 = flop_profile(preset_config("deepseek-v3"), 4096);
  return v3.flops_per_token * 1e12 / (kReportGpuHoursPerTrillion * 3600 * gpu_spec("h800").fp8_tflops * 1e12);
}

Plan make_plan(const PlanInputs& in) {
  const ModelConfig& c = in.config;
  Plan p;
  p.in = in;
  p.gpu = gpu_spec(in.gpu);
  DSV3_CHECK(in.gpus >= 1 && in.gpus_per_node >= 1 && in.gpus % in.gpus_per_node == 0, "[plan] --gpus ", in.gpus,
             " is not a whole number of nodes of --gpus-per-node ", in.gpus_per_node);
  DSV3_CHECK(in.pp >= 1 && in.gpus % in.pp == 0, "[plan] --pp ", in.pp, " does not divide --gpus ", in.gpus);
  p.dp = in.gpus / in.pp;
  DSV3_CHECK(in.dp == 0 || in.dp == p.dp, "[plan] --dp ", in.dp, " with --pp ", in.pp, " needs ", in.dp * in.pp,
             " GPUs, not ", in.gpus);
  DSV3_CHECK(in.ep >= 1 && p.dp % in.ep == 0 && c.n_routed_experts % in.ep == 0, "[plan] --ep ", in.ep,
             " must divide the ", p.dp, " data-parallel GPUs of a stage and the ", c.n_routed_experts, " routed experts");
  DSV3_CHECK(in.seq >= 2 && in.micro_batch >= 1 && in.global_batch % (p.dp * in.micro_batch) == 0, "[plan] --global-batch ",
             in.global_batch, " is not a multiple of ", p.dp, " data-parallel ranks × --micro-batch ", in.micro_batch);
  DSV3_CHECK(in.tokens > 0 && in.mfu >= 0 && in.mfu <= 1, "[plan] --tokens must be positive and --mfu in [0, 1]");
  p.nodes = in.gpus / in.gpus_per_node;
  p.micro_batches = in.global_batch / (p.dp * in.micro_batch);
  const int64_t P = in.pp, L = c.num_hidden_layers, mtp = c.num_nextn_predict_layers;
  DSV3_CHECK(L >= P, "[plan] --pp ", P, " stages for ", L, " layers");
  if (in.schedule == PipelineSchedule::dualpipe)
    DSV3_CHECK(P % 2 == 0 && p.micro_batches % 2 == 0 && p.micro_batches >= 2 * P, "[plan] DualPipe needs an even --pp "
               "and an even number of micro-batches per rank >= 2 × --pp; this layout has ", p.micro_batches);

  const ModelStats stats = model_stats(c);
  p.total_params = double(stats.total_params);
  p.active_params = double(stats.active_params);
  p.mtp_params = double(stats.mtp_params);

  // Parameters per GPU. Layer l sits in stage floor(l · P / L); the embedding in the first stage, the
  // final norm, head and MTP modules in the last. A DualPipe rank holds stages r and P − 1 − r.
  const auto stage_of = [&](const std::string& name) -> int64_t {
    const int64_t l = layer_of(name);
    if (l < 0) return name.find("embed_tokens") != std::string::npos ? 0 : P - 1;
    return l >= L ? P - 1 : l * P / L;
  };
  std::vector<double> dense(size_t(P), 0), expert(size_t(P), 0);  // per stage: replicated, and routed experts
  std::vector<int64_t> moe_layers(size_t(P), 0), dense_layers(size_t(P), 0);
  for (const HfTensorSpec& t : hf_tensor_specs(c)) {
    // The MTP modules' embedding and head are the main model's, on the same rank (DualPipe puts the
    // first and last stages together; report §2.2): not held twice.
    const bool mtp_copy = layer_of(t.name) >= L && (t.name.find("embed_tokens") != std::string::npos ||
                                                    t.name.find("shared_head.head") != std::string::npos);
    if (mtp_copy) continue;
    double n = 1;
    for (int64_t d : t.shape) n *= double(d);
    const int64_t s = stage_of(t.name);
    (is_routed_expert(t.name) ? expert : dense)[size_t(s)] += n;
  }
  for (int64_t l = 0; l < L + mtp; ++l) {
    const int64_t s = l >= L ? P - 1 : l * P / L;
    (l >= c.first_k_dense_replace ? moe_layers : dense_layers)[size_t(s)]++;
  }
  const bool two_stages = in.schedule != PipelineSchedule::one_f_one_b;
  const double expert_replicas = double(p.dp / in.ep);
  const double tokens_per_micro = double(in.micro_batch * in.seq);
  const double in_flight = in.schedule == PipelineSchedule::one_f_one_b ? double(P) : double(P + 1);
  const double act_moe = activation_bytes_per_token_layer(c, true), act_dense = activation_bytes_per_token_layer(c, false);
  for (int64_t r = 0; r < P; ++r) {
    std::vector<int64_t> stages = {r};
    if (two_stages && P - 1 - r != r) stages.push_back(P - 1 - r);
    double held = 0, sharded = 0, act = 0;
    for (int64_t s : stages) {
      const double local_experts = expert[size_t(s)] / double(in.ep);
      held += dense[size_t(s)] + local_experts;
      sharded += dense[size_t(s)] / double(p.dp) + local_experts / expert_replicas;
      act = std::max(act, double(moe_layers[size_t(s)]) * act_moe + double(dense_layers[size_t(s)]) * act_dense);
    }
    PlanMemory m;
    m.weights = 2 * held;    // BF16 working copy (FP8 casts are made per GEMM)
    m.gradients = 4 * held;  // FP32
    m.master = 4 * sharded;  // ZeRO-1: FP32 master weights and BF16 moments split over the replicas
    m.moments = 4 * sharded;
    m.activations = in_flight * tokens_per_micro * act;
    if (m.total() > p.memory.total()) {
      p.memory = m;
      p.params_per_gpu = held;
    }
  }

  const FlopProfile flops = flop_profile(c, in.seq);
  p.flops_per_token = flops.flops_per_token;
  p.fp8_flop_fraction = flops.fp8_fraction;

  // All-to-all per token, forward and backward, over the MoE layers: a token reaches at most M nodes
  // over IB and K expert GPUs over NVLink; dispatch in FP8 (1 byte + a 4-byte scale per 128), combine and
  // both backward exchanges in BF16.
  const double H = double(c.hidden_size);
  const double moe = double(L + mtp - c.first_k_dense_replace);
  const double per_destination = H * (1 + 4.0 / 128) + 3 * 2 * H;
  p.ib_bytes_per_token = moe * double(std::min(in.max_nodes_per_token, p.nodes)) * per_destination;
  p.nvlink_bytes_per_token = moe * double(c.num_experts_per_tok) * per_destination;

  // Time: at the efficiency DeepSeek-V3's run sustained outside pipeline bubbles (report_efficiency),
  // unless --mfu states the MFU.
  p.bubble_fraction = bubble_fraction(in.schedule, P, p.micro_batches);
  if (P > 1) {
    const PipelineSimulation sim = simulate_pipeline(build_pipeline_schedule(in.schedule, P, p.micro_batches), {});
    DSV3_CHECK(!sim.deadlock, "[plan] the ", pipeline_schedule_name(in.schedule), " schedule deadlocks: ", sim.deadlock_at);
    p.simulated_bubble_fraction = sim.bubble_fraction();
  }
  const double peak = (in.fp8 ? p.gpu.fp8_tflops : p.gpu.bf16_tflops) * 1e12;
  const double seconds_per_gpu_token =
      in.mfu > 0 ? p.flops_per_token / (in.mfu * peak)
                 : peak_seconds_per_token(flops, p.gpu, in.fp8) / (report_efficiency() * (1 - p.bubble_fraction));
  p.implied_mfu = report_implied_mfu();
  p.mfu = p.flops_per_token / (seconds_per_gpu_token * peak);
  p.gpu_hours_per_trillion = seconds_per_gpu_token * 1e12 / 3600;
  p.pretrain_gpu_hours = seconds_per_gpu_token * in.tokens / 3600;
  p.total_gpu_hours = p.pretrain_gpu_hours + in.other_gpu_hours;
  p.dollars = p.total_gpu_hours * in.dollars_per_gpu_hour;
  p.days = p.pretrain_gpu_hours / double(in.gpus) / 24;
  p.ib_time_over_compute = (p.ib_bytes_per_token / (p.gpu.ib_gbs * 1e9)) / seconds_per_gpu_token;
  p.nvlink_time_over_compute = (p.nvlink_bytes_per_token / (p.gpu.nvlink_gbs * 1e9)) / seconds_per_gpu_token;
  return p;
}

nlohmann::json Plan::to_json() const {
  const auto gib = [](double b) { return b / double(1 << 30); };
  return {
      {"gpu", gpu.name}, {"gpus", in.gpus}, {"nodes", nodes}, {"pp", in.pp}, {"dp", dp}, {"ep", in.ep},
      {"schedule", pipeline_schedule_name(in.schedule)}, {"gemm_precision", in.fp8 ? "fp8" : "bf16"},
      {"micro_batches_per_rank", micro_batches},
      {"params", {{"total", total_params}, {"active", active_params}, {"mtp", mtp_params}, {"per_gpu", params_per_gpu}}},
      {"memory_gib_per_gpu", {{"weights_bf16", gib(memory.weights)}, {"master_fp32", gib(memory.master)},
                              {"gradients_fp32", gib(memory.gradients)}, {"adamw_moments_bf16", gib(memory.moments)},
                              {"activations", gib(memory.activations)}, {"total", gib(memory.total())},
                              {"gpu_memory", gpu.memory_gib}}},
      {"flops_per_token", flops_per_token}, {"fp8_flop_fraction", fp8_flop_fraction},
      {"all_to_all_bytes_per_token", {{"ib", ib_bytes_per_token}, {"nvlink", nvlink_bytes_per_token}}},
      {"all_to_all_time_over_compute", {{"ib", ib_time_over_compute}, {"nvlink", nvlink_time_over_compute}}},
      {"bubble_fraction", bubble_fraction}, {"simulated_bubble_fraction", simulated_bubble_fraction}, {"report_implied_mfu_fp8_peak", implied_mfu}, {"mfu", mfu},
      {"gpu_hours_per_trillion_tokens", gpu_hours_per_trillion}, {"tokens", in.tokens},
      {"pretrain_gpu_hours", pretrain_gpu_hours}, {"other_gpu_hours", in.other_gpu_hours},
      {"total_gpu_hours", total_gpu_hours}, {"dollars", dollars}, {"pretrain_days", days}};
}

std::string scaled(double v) {
  char text[32];
  if (v >= 1e6) std::snprintf(text, sizeof text, "%.3fM", v / 1e6);
  else if (v >= 1e3) std::snprintf(text, sizeof text, "%.1fK", v / 1e3);
  else std::snprintf(text, sizeof text, "%.0f", v);
  return text;
}

std::string Plan::to_text() const {
  char line[512];
  std::ostringstream out;
  const auto gib = [](double b) { return b / double(1 << 30); };
  std::snprintf(line, sizeof line, "cluster   %lld × %s (%lld nodes of %lld): PP%lld (%s, %lld micro-batches per rank) × DP%lld, EP%lld, %s GEMMs\n",
                (long long)in.gpus, gpu.name.c_str(), (long long)nodes, (long long)in.gpus_per_node, (long long)in.pp,
                pipeline_schedule_name(in.schedule), (long long)micro_batches, (long long)dp, (long long)in.ep,
                in.fp8 ? "FP8" : "BF16");
  out << line;
  std::snprintf(line, sizeof line, "params    %.1fB total, %.1fB active per token, MTP %.1fB; %.2fB on the fullest GPU\n",
                total_params / 1e9, active_params / 1e9, mtp_params / 1e9, params_per_gpu / 1e9);
  out << line;
  std::snprintf(line, sizeof line, "memory    %.1f GiB per GPU of %.0f: weights %.1f (BF16), master %.1f (FP32, ZeRO-1), "
                "gradients %.1f (FP32), AdamW moments %.1f (BF16, ZeRO-1), activations %.1f (estimate)\n",
                gib(memory.total()), gpu.memory_gib, gib(memory.weights), gib(memory.master), gib(memory.gradients),
                gib(memory.moments), gib(memory.activations));
  out << line;
  std::snprintf(line, sizeof line, "compute   %.3g FLOPs per token (%.0f%% in FP8 GEMMs); pipeline bubble %.1f%% of a "
                "step by the report's formula, %.1f%% with the schedule's ops simulated (F : B : W = 1 : 2 : 1)\n",
                flops_per_token, 100 * fp8_flop_fraction, 100 * bubble_fraction, 100 * simulated_bubble_fraction);
  out << line;
  std::snprintf(line, sizeof line, "all-to-all per token (fwd + bwd): %.2f MB over IB (≤ %lld nodes), %.2f MB over NVLink; "
                "time over compute: IB %.2f, NVLink %.2f (< 1: can hide behind computation)\n",
                ib_bytes_per_token / 1e6, (long long)std::min(in.max_nodes_per_token, nodes), nvlink_bytes_per_token / 1e6,
                ib_time_over_compute, nvlink_time_over_compute);
  out << line;
  std::snprintf(line, sizeof line, "report    180K H800 GPU-hours per trillion tokens imply an MFU of %.1f%% of the FP8 peak "
                "(%.1f%% of BF16) for these FLOPs\n", 100 * implied_mfu, 200 * implied_mfu);
  out << line;
  std::snprintf(line, sizeof line, "time      MFU %.1f%% of the %s peak: %s GPU-hours per trillion tokens; %.4gT tokens: %s "
                "GPU-hours (%.1f days on %lld GPUs) + %s other = %s GPU-hours, $%s at $%.2f/GPU-hour\n",
                100 * mfu, in.fp8 ? "FP8" : "BF16", scaled(gpu_hours_per_trillion).c_str(), in.tokens / 1e12,
                scaled(pretrain_gpu_hours).c_str(), days, (long long)in.gpus, scaled(in.other_gpu_hours).c_str(),
                scaled(total_gpu_hours).c_str(), scaled(dollars).c_str(), in.dollars_per_gpu_hour);
  out << line;
  return out.str();
}

}  // namespace dsv3
