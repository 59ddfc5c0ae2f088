// Training throughput: one train_forward_backward step (forward, loss, backward into the gradient arena)
// on a training preset, median of N steps, with model FLOPs (train_step_flops) and their ratio (MFU) to
// the machine's f32 and BF16 oneDNN matmul peaks measured in the same run. One JSON line.
//
//   bench_train [preset=tiny] [steps=5] [threads=0 (all)] [precision=f32|bf16|fp8]
// DSV3_PROFILE=1 in the environment adds a table of where the timed steps spent their time.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "core/profiler.h"
#include "train/train_presets.h"
#include "train/train_step.h"

using namespace dsv3;

int main(int argc, char** argv) {
  const std::string name = argc > 1 ? argv[1] : "tiny";
  const int steps = argc > 2 ? std::max(1, std::atoi(argv[2])) : 5;
  set_num_threads(argc > 3 ? std::atoi(argv[3]) : 0);
  const std::string precision = argc > 4 ? argv[4] : "f32";
  try {
    const TrainPreset p = train_preset(name);
    const ModelConfig& c = p.config;
    TrainParams<float> params(c);
    TrainInitOptions init;  // TR init std 0.006
    init_random(params, 1, init);
    TrainParams<float> grads(params.layout_ptr());
    TrainOptions o;
    o.moe.balance = BalanceLoss::sequence;
    o.precision = parse_compute_precision(precision);
    const int64_t B = p.batch_size, S = p.seq_len, depth = resolve_mtp_depth(c, o);
    TrainActivations<float> acts(c, B, S, depth);
    std::mt19937 rng(2);
    std::uniform_int_distribution<int32_t> dist(0, int32_t(c.vocab_size - 1));
    std::vector<int32_t> tokens(size_t(B * (S + 1)));
    for (int32_t& t : tokens) t = dist(rng);

    // Validate first: at this init the next-token distribution is nearly uniform, so every CE ≈ ln V.
    const StepStats first = train_forward_backward(params, grads, acts, tokens.data(), o);
    const double uniform = std::log(double(c.vocab_size));
    DSV3_CHECK(std::fabs(first.main_loss - uniform) < 0.05 * uniform, "[bench_train] main loss ", first.main_loss,
               " at init, expected ~ln V = ", uniform);
    // Peaks are measured before and after the timed steps and the larger is used: a peak is the most the
    // machine did (a measurement right after an idle period or under another process's load reads low).
    const double peak_before = bench::measure_onednn_matmul_gflops(2048, 2048, 2048, dnnl::memory::data_type::f32);
    const double bf16_before = bench::measure_onednn_matmul_gflops(2048, 2048, 2048, dnnl::memory::data_type::bf16);
    const bool profiling = profiler_enabled();
    reset_profiler();
    const std::vector<double> seconds = bench::time_runs(
        [&] {
          grads.zero();
          train_forward_backward(params, grads, acts, tokens.data(), o);
        },
        steps, 0);
    if (profiling) {
      std::fprintf(stderr, "%s", profiler_report().c_str());
      set_profiler_enabled(false);  // the table is printed once, here
    }
    const double peak_after = bench::measure_onednn_matmul_gflops(2048, 2048, 2048, dnnl::memory::data_type::f32);
    const double bf16_peak = std::max(
        bf16_before, bench::measure_onednn_matmul_gflops(2048, 2048, 2048, dnnl::memory::data_type::bf16));
    const double step_s = bench::median(seconds);
    const double flops = train_step_flops(c, B, S, depth);
    const double gflops = flops / step_s / 1e9;
    const double f32_peak = std::max(peak_before, peak_after);
    std::printf(
        "{\"bench\":\"train_step\",\"preset\":\"%s\",\"precision\":\"%s\",\"threads\":%d,\"batch\":%lld,\"seq\":%lld,\"mtp_depth\":%lld,"
        "\"median_s\":%.4f,\"tokens_per_s\":%.1f,\"model_gflop\":%.2f,\"gflop_s\":%.1f,\"f32_peak_gflop_s\":%.1f,"
        "\"mfu_f32\":%.3f,\"bf16_peak_gflop_s\":%.1f,\"mfu_bf16\":%.3f,\"stored_activation_mb\":%.1f,"
        "\"workspace_mb\":%.1f,\"params\":%lld}\n",
        name.c_str(), precision.c_str(), num_threads(), (long long)B, (long long)S, (long long)depth, step_s, double(B * S) / step_s,
        flops / 1e9, gflops, f32_peak, f32_peak > 0 ? gflops / f32_peak : 0.0, bf16_peak,
        bf16_peak > 0 ? gflops / bf16_peak : 0.0, double(acts.stored_bytes()) / 1e6,
        double(acts.workspace_bytes()) / 1e6, (long long)params.size());
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_train: %s\n", e.what());
    return 1;
  }
  return 0;
}
