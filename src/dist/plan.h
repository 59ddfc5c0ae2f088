// `dsv3 plan`: what training a config on a GPU cluster takes, from the model's own tensor list and
// FLOP count and the cluster's layout — parameters and memory per GPU, all-to-all bytes per token,
// pipeline bubble, FLOPs per token, and GPU-hours and dollars for a token budget at an MFU.
//
// Calibrated on DeepSeek-V3's report (SPEC.md §2, §4): 2048 H800 (8 per node), PP16 with DualPipe, EP64,
// ZeRO-1 data parallelism, FP8 GEMMs, 4K sequences, 15,360 sequences per step, 14.8T tokens, 180K
// GPU-hours per trillion tokens. The MFU those hours imply for the model's FLOPs is the default MFU,
// so the plan reproduces 2.664M pre-training hours; the report's context-extension (119K) and
// post-training (5K) hours are added as given, for 2.788M hours and $5.576M at $2/hour. What-ifs
// (another GPU, BF16 GEMMs, 1F1B) change one input and say what they assume.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "dist/layout.h"
#include "model/config.h"

namespace dsv3 {

struct GpuSpec {
  std::string name;
  double bf16_tflops = 0, fp8_tflops = 0;  // dense tensor-core peaks
  double nvlink_gbs = 0, ib_gbs = 0;       // achievable per-GPU bandwidths
  double memory_gib = 0;
};
// "h800" or "h100" (SXM): the same tensor-core peaks; the H800's NVLink is cut down.
GpuSpec gpu_spec(const std::string& name);

struct PlanInputs {
  ModelConfig config;
  std::string gpu = "h800";
  int64_t gpus = 2048, gpus_per_node = 8;
  int64_t pp = 16, ep = 64, dp = 0;  // dp 0: gpus / pp
  PipelineSchedule schedule = PipelineSchedule::dualpipe;
  bool fp8 = true;                  // GEMMs in FP8 (else BF16)
  int64_t seq = 4096, global_batch = 15360, micro_batch = 1;  // sequences
  double tokens = 14.8e12;
  double mfu = 0;                   // of the GEMMs' precision peak; 0: the MFU the report implies
  double dollars_per_gpu_hour = 2.0;
  double other_gpu_hours = 119e3 + 5e3;  // stages not modelled: the report's context extension + post-training
  int64_t max_nodes_per_token = 4;  // node-limited routing (report §2.1.2)
};

// The report's calibration: H800 GPU-hours per trillion tokens of DeepSeek-V3 pre-training.
inline constexpr double kReportGpuHoursPerTrillion = 180e3;

struct PlanMemory {  // bytes on the GPU that holds the most
  double weights = 0, master = 0, gradients = 0, moments = 0, activations = 0;
  double total() const { return weights + master + gradients + moments + activations; }
};

struct Plan {
  PlanInputs in;
  GpuSpec gpu;
  int64_t dp = 0, nodes = 0, micro_batches = 0;  // micro-batches per DP rank per step
  double total_params = 0, active_params = 0, mtp_params = 0;
  double params_per_gpu = 0;                     // the most any GPU holds (both DualPipe stages)
  PlanMemory memory;
  double flops_per_token = 0;                    // training: forward + backward, MTP included
  double fp8_flop_fraction = 0;                  // of flops_per_token in the linear layers FP8 runs
  double ib_bytes_per_token = 0, nvlink_bytes_per_token = 0;  // all-to-all, forward + backward
  double bubble_fraction = 0;                    // of a step, with F : B : W = 1 : 2 : 1
  double simulated_bubble_fraction = 0;          // the schedule's own ops simulated (pipeline_schedule.h)
  double implied_mfu = 0;                        // DeepSeek-V3's MFU that kReportGpuHoursPerTrillion implies
  double mfu = 0;                                // used
  double gpu_hours_per_trillion = 0, pretrain_gpu_hours = 0, total_gpu_hours = 0, dollars = 0;
  double days = 0;                               // wall-clock of pre-training on the cluster
  double ib_time_over_compute = 0;               // per token: all-to-all over IB / computation
  double nvlink_time_over_compute = 0;

  nlohmann::json to_json() const;
  std::string to_text() const;
};

// The pipeline bubble of `schedule` as a fraction of a step of M micro-batches per rank, with the
// report's formulas (SPEC.md §4) and F : B : W = 1 : 2 : 1 (B the whole backward, W its weight part;
// F&B = F + B: overlap hides communication, not computation).
double bubble_fraction(PipelineSchedule schedule, int64_t pp, int64_t micro_batches);

Plan make_plan(const PlanInputs& inputs);

// 2.664M, 3.1K, 312: GPU-hours and dollars at their own scale.
std::string scaled(double value);

// The report's run, as calibration: the fraction of the H800's precision-weighted peak (FP8 GEMMs at the
// FP8 rate, the rest at the BF16 rate) it sustained outside pipeline bubbles, and its MFU of the FP8
// peak with bubbles (DeepSeek-V3's FLOPs per token over 180K GPU-hours per trillion tokens).
double report_efficiency();
double report_implied_mfu();

}  // namespace dsv3
