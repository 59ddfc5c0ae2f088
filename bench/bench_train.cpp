// Training throughput: one train_forward_backward step (forward, loss, backward into the gradient arena)
// on a training preset, median of N steps, with model FLOPs (train_step_flops) and their ratio (MFU) to
// the machine's f32 and BF16 oneDNN matmul peaks measured in the same run. Two JSON lines: the
// validation, then the figures.
//
// Validation, before anything is timed: the timed step (forward and backward, the timed precision, the
// fast kernels) against the same step on the kernels' scalar or k-ordered twins (ops/kernels.h: the
// bf16 matmul's f32 fallback, which multiplies the same bf16-rounded operands; fp8_gemm's k-ordered
// kernel, bit-exact with the scalar reference; the scalar FP8 conversions): the loss and the whole
// gradient must agree within the bound derived below, and the gradient must not be zero.
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
#include "ops/kernels.h"
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

    // Validate first: the timed step against the same step on the kernels' twins.
    const StepStats fast = train_forward_backward(params, grads, acts, tokens.data(), o);
    const std::vector<float> fast_grads(grads.data(), grads.data() + grads.size());
    StepStats twin;
    {
      std::string k_ordered = "scalar";
      for (const std::string& k : kernel_variants(KernelFamily::fp8_gemm))
        if (k != "avx512_bf16") {
          k_ordered = k;
          break;
        }
      ScopedKernel matmul(KernelFamily::bf16_matmul, "f32_matmul"), fp8(KernelFamily::fp8_gemm, k_ordered),
          convert(KernelFamily::fp8_convert, "scalar"), gemv(KernelFamily::gemv, "scalar");
      grads.zero();
      TrainOptions replay = o;  // the tokens go to the experts the timed step chose (see the bound below)
      replay.moe.replay_routing = true;
      twin = train_forward_backward(params, grads, acts, tokens.data(), replay);
    }
    double diff2 = 0, norm2 = 0;
    for (int64_t i = 0; i < grads.size(); ++i) {
      const double d = double(fast_grads[size_t(i)]) - double(grads.data()[i]);
      diff2 += d * d;
      norm2 += double(grads.data()[i]) * double(grads.data()[i]);
    }
    const double grad_rel = std::sqrt(diff2 / norm2), loss_rel = std::fabs(fast.loss - twin.loss) / twin.loss;
    // Bound: both steps form the same products (bf16/FP8 operands are exact in f32) and differ only in
    // the order of f32 sums: at most K·2^-24 relative for a sum of K terms, K at most the 4096 tokens of a
    // step (weight gradients): 2^-12, the f32 bound. In bf16 and FP8 steps that order now and then moves
    // a value across a rounding boundary of the format its next GEMM rounds it to, changing that one
    // element by one unit in the last place (at most 2^-7 relative for bf16's 8 significant bits, 2^-3
    // for E4M3's 4). Such moves shift the gradient by less than one unit of the format relative to its
    // norm (measured: 0.12% on `tiny` and 0.32% on `small` in bf16, 3.4% on `small` in FP8); a broken
    // kernel shifts it by its own size. They also move router scores across near-ties, which a random
    // router has many of: on `small` in bf16, 0.4–3% of the tokens per layer then reach other experts,
    // and those experts' gradients change by 15–20% (1.5% of the whole gradient). That is not a kernel
    // error, so the twin replays the timed step's routing (MoeOptions::replay_routing).
    const double bound = o.precision == ComputePrecision::f32 ? 0x1p-12
                         : o.precision == ComputePrecision::bf16 ? 0x1p-7
                                                                 : 0x1p-3;
    const bool ok = std::isfinite(grad_rel) && grad_rel <= bound && loss_rel <= bound && norm2 > 0;
    std::printf("{\"bench\":\"train_step_validate\",\"preset\":\"%s\",\"precision\":\"%s\",\"loss\":%.6f,"
                "\"twin_loss\":%.6f,\"loss_rel_diff\":%.3g,\"grad_rel_diff\":%.3g,\"bound\":%.3g,\"ok\":%s}\n",
                name.c_str(), precision.c_str(), fast.loss, twin.loss, loss_rel, grad_rel, bound, ok ? "true" : "false");
    std::fflush(stdout);
    DSV3_CHECK(ok, "[bench_train] the timed step differs from its kernels' twins (loss ", loss_rel, ", gradient ",
               grad_rel, " relative; bound ", bound, "): nothing is timed");
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
