// `dsv3 plan` (dist/plan.h) against values computed by hand: DeepSeek-V3's report figures, pipeline
// bubbles from SPEC.md §4's formulas, parameters per GPU, all-to-all bytes, and the what-ifs' ratios.
#include <gtest/gtest.h>

#include "dist/plan.h"
#include "model/presets.h"
#include "model/stats.h"
#include "test_support.h"

namespace dsv3 {
namespace {

PlanInputs deepseek_v3() {
  PlanInputs in;
  in.config = preset_config("deepseek-v3");
  return in;
}

TEST(Plan, ReproducesTheReportsHoursAndDollars) {
  const Plan p = make_plan(deepseek_v3());
  // 180K GPU-hours per trillion tokens × 14.8T = 2.664M; + 119K + 5K = 2.788M; × $2 = $5.576M.
  EXPECT_NEAR(p.gpu_hours_per_trillion, 180e3, 1e-6 * 180e3);
  EXPECT_NEAR(p.pretrain_gpu_hours, 2.664e6, 1.0);
  EXPECT_NEAR(p.total_gpu_hours, 2.788e6, 1.0);
  EXPECT_NEAR(p.dollars, 5.576e6, 2.0);
  EXPECT_NEAR(p.days, 2.664e6 / 2048 / 24, 1e-6);  // 54.2 days: "less than two months"
  // FLOPs per token by hand: 6 × 36.6B active parameters (embedding excluded, head included) ≈ 2.20e11;
  // the attention core 3 × 2 · 128 heads · (192 + 128) · 2048.5 mean positions · 61 layers ≈ 3.07e10;
  // MTP ≈ 6 × (2·7168² + one MoE block's active parameters + head) ≈ 6.3e9 and its attention 5e8.
  EXPECT_GT(p.flops_per_token, 2.55e11);
  EXPECT_LT(p.flops_per_token, 2.65e11);
  // The MFU those hours imply: FLOPs per token × 1e12 / (180e3 h × 3600 s × 1979 TFLOPS).
  EXPECT_NEAR(p.implied_mfu, p.flops_per_token * 1e12 / (180e3 * 3600 * 1979e12), 1e-12);
  EXPECT_NEAR(p.mfu, p.implied_mfu, 1e-9);
  EXPECT_EQ(p.dp, 128);
  EXPECT_EQ(p.micro_batches, 120);  // 15360 sequences / 128 data-parallel ranks
  EXPECT_NEAR(p.total_params, 671.0e9, 0.1e9);
}

TEST(Plan, BubblesFollowTheReportsFormulas) {
  // F : B : W = 1 : 2 : 1, F&B = F + B: 1F1B (PP−1)(F+B) = 3F·15 against 3F·120 of work.
  EXPECT_NEAR(bubble_fraction(PipelineSchedule::one_f_one_b, 16, 120), 45.0 / (360 + 45), 1e-12);
  // DualPipe (PP/2−1)(F&B + B − 3W) = 7 · 2F.
  EXPECT_NEAR(bubble_fraction(PipelineSchedule::dualpipe, 16, 120), 14.0 / (360 + 14), 1e-12);
  EXPECT_NEAR(bubble_fraction(PipelineSchedule::dualpipe, 2, 4), 0.0, 1e-12);
}

TEST(Plan, WhatIfsChangeTheTimeAsTheyState) {
  const Plan base = make_plan(deepseek_v3());
  PlanInputs in = deepseek_v3();
  in.gpu = "h100";  // same tensor-core peaks: same hours, a faster NVLink
  const Plan h100 = make_plan(in);
  EXPECT_NEAR(h100.pretrain_gpu_hours, base.pretrain_gpu_hours, 1e-6 * base.pretrain_gpu_hours);
  EXPECT_LT(h100.nvlink_time_over_compute, base.nvlink_time_over_compute);
  in = deepseek_v3();
  in.fp8 = false;  // the FP8 share of the FLOPs at half the rate: hours × 1 / (1 − f/2)
  const Plan bf16 = make_plan(in);
  EXPECT_NEAR(bf16.pretrain_gpu_hours / base.pretrain_gpu_hours, 1 / (1 - base.fp8_flop_fraction / 2), 1e-9);
  EXPECT_GT(base.fp8_flop_fraction, 0.75);
  EXPECT_LT(base.fp8_flop_fraction, 0.95);
  in = deepseek_v3();
  in.schedule = PipelineSchedule::one_f_one_b;  // the same work over a larger share of the step
  const Plan one = make_plan(in);
  EXPECT_NEAR(one.pretrain_gpu_hours / base.pretrain_gpu_hours, (1 - base.bubble_fraction) / (1 - one.bubble_fraction),
              1e-9);
  in = deepseek_v3();
  in.mfu = 0.5;  // a stated MFU: hours = FLOPs · tokens / (MFU · peak)
  EXPECT_NEAR(make_plan(in).pretrain_gpu_hours, base.flops_per_token * 14.8e12 / (0.5 * 1979e12) / 3600, 1.0);
}

TEST(Plan, ParametersAndAllToAllBytesPerGpu) {
  // One stage of 8 GPUs, experts over all 8: each GPU holds everything but 7/8 of the routed experts.
  PlanInputs in;
  in.config = testing::tiny_v3_config();
  in.gpus = 8;
  in.gpus_per_node = 4;
  in.pp = 1;
  in.ep = 8;
  in.schedule = PipelineSchedule::one_f_one_b;
  in.global_batch = 8;
  const ModelConfig& c = in.config;
  const ModelStats s = model_stats(c);
  const double H = double(c.hidden_size), V = double(c.vocab_size);
  const double mtp_routed = double(c.n_routed_experts) * 3 * H * double(c.moe_intermediate_size);
  const double routed = double(s.routed_expert_params) + mtp_routed;
  const double everything = double(s.total_params + s.mtp_params) - 2 * V * H;  // MTP embedding/head are shared
  const Plan p = make_plan(in);
  EXPECT_NEAR(p.params_per_gpu, everything - routed + routed / 8, 0.5);
  // Memory: BF16 weights 2 B + FP32 gradients 4 B per held parameter; master and moments 4 + 4 B split
  // over the 8 data-parallel replicas (routed experts: one replica each).
  EXPECT_NEAR(p.memory.weights, 2 * p.params_per_gpu, 1.0);
  EXPECT_NEAR(p.memory.master, 4 * ((everything - routed) / 8 + routed / 8), 1.0);
  // Two nodes: a token reaches at most 2 over IB, K = 3 expert GPUs over NVLink, in each of the 2 + 1
  // MoE layers (main layers 1, 2 and the MTP block): (1 + 4/128 + 3 · 2) bytes per hidden value.
  EXPECT_NEAR(p.ib_bytes_per_token, 3 * 2 * H * (1 + 4.0 / 128 + 6), 1e-6);
  EXPECT_NEAR(p.nvlink_bytes_per_token, 3 * 3 * H * (1 + 4.0 / 128 + 6), 1e-6);
}

TEST(Plan, ImpossibleClustersNameTheFlag) {
  PlanInputs in = deepseek_v3();
  in.pp = 24;
  EXPECT_NE(testing::error_of([&] { make_plan(in); }).find("--pp 24 does not divide --gpus 2048"), std::string::npos);
  in = deepseek_v3();
  in.ep = 48;
  EXPECT_NE(testing::error_of([&] { make_plan(in); }).find("--ep 48"), std::string::npos);
  in = deepseek_v3();
  in.global_batch = 1000;
  EXPECT_NE(testing::error_of([&] { make_plan(in); }).find("--global-batch 1000"), std::string::npos);
  in = deepseek_v3();
  in.gpu = "a100";
  EXPECT_NE(testing::error_of([&] { make_plan(in); }).find("--gpu must be h800 or h100"), std::string::npos);
}

}  // namespace
}  // namespace dsv3
