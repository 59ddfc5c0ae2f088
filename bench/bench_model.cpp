// Whole-model benchmark: decode at batch 1 and prefill of a 512-token prompt on a DeepSeek-V3-shaped
// random model (preset v3-1.5g, ~1.5 GB in BF16) and its FP8 twin (with bf16 activations, and with
// activations quantized to FP8 on the fly), reported as tokens/s and as fractions
// of this machine's own measured peaks:
//   decode:  weight bytes read per token × tokens/s  /  measured read bandwidth
// Each timed run is paired with a peak measurement taken just before it (the machines are shared and
// their peaks drift); a peak is the best of the measurements paired with a case's runs.
// Before any figure, each configuration is validated: logits of a 48-token prefill (the GEMM paths) and
// of two decode steps (the GEMV paths) against the same model run on the kernels' scalar twins (ops/kernels.h:
// gemv and fp8 scalar, the bf16 matmul's f32 fallback), which round activations at the same points.
//   prefill: needed FLOPs × prompts/s  /  measured oneDNN BF16 matmul throughput (F32 where this CPU
//            has no BF16 arithmetic and F32 is its fastest GEMM)
// Needed prefill FLOPs (issue target): 2·params of every projection a token passes through (attention
// incl. kv_b_proj, dense MLP or router + shared + top-k experts) per prompt token, the causal attention
// core in its naive form (QKᵀ over qk_head_dim, PV over v_head_dim, half the n² pairs), and the head
// for the last position only.
//
//   build/bench/bench_model [--dir DIR] [--preset v3-1.5g] [--prompt 512] [--decode 32] [--runs 3]
// Models are created under DIR (default build/bench-models) on first use. One JSON line per case.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "bench_common.h"
#include "bench_models.h"
#include "core/parallel.h"
#include "infer/sampler.h"
#include "model/model.h"
#include "model/presets.h"
#include "model/random_init.h"
#include "ops/gemm.h"
#include "ops/kernels.h"

using namespace dsv3;
using namespace dsv3::bench;

namespace {

double attention_core_flops(const ModelConfig& c, int64_t n) {
  const double pairs = double(n) * double(n + 1) / 2.0;
  return double(c.num_hidden_layers) * double(c.num_attention_heads) * pairs * 2.0 *
         double(c.qk_head_dim() + c.v_head_dim);
}

// Logits of a prompt's prefill (every position) and of `decode_steps` greedy decode steps after it.
std::vector<float> prefill_and_decode_logits(const Model& model, const std::vector<int32_t>& prompt, int decode_steps,
                                             const ForwardOptions& options) {
  const int64_t vocab = model.config.vocab_size, n = int64_t(prompt.size());
  KVCache cache(model.config, n + decode_steps + 1);
  ForwardOptions all = options;
  all.all_logits = true;
  Tensor logits;
  forward(model, cache, prompt.data(), n, all, &logits);
  std::vector<float> out(logits.as<float>(), logits.as<float>() + n * vocab);
  // Decode the token the prefill ends on (not the argmax, which may differ between the two runs).
  int32_t token = prompt.back();
  for (int i = 0; i < decode_steps; ++i) {
    forward(model, cache, &token, 1, options, &logits);
    out.insert(out.end(), logits.as<float>(), logits.as<float>() + vocab);
    token = int32_t((token * 31 + 7) % vocab);
  }
  return out;
}

// Per position, max |fast - twin| over the vocabulary relative to the twins' largest logit.
struct Validation {
  double median_rel = 0;  // over positions: what the check bounds
  double max_rel = 0;     // the worst position (where a router tie broke the other way, say)
  double bound = 0;
  bool ok() const { return median_rel <= bound; }
};

// The timed configuration against the scalar twins of every kernel family on the same prompt.
Validation validate_against_twins(const Model& model, const ForwardOptions& options, double bound) {
  const int64_t vocab = model.config.vocab_size;
  const std::vector<int32_t> prompt = prompt_tokens(48, vocab);
  const std::vector<float> fast = prefill_and_decode_logits(model, prompt, 2, options);
  std::vector<float> twin;
  {
    ScopedKernel gemv(KernelFamily::gemv, "scalar"), convert(KernelFamily::fp8_convert, "scalar"),
        fp8(KernelFamily::fp8_gemm, "scalar"), matmul(KernelFamily::bf16_matmul, "f32_matmul");
    twin = prefill_and_decode_logits(model, prompt, 2, options);
  }
  double max_ref = 0;
  for (float v : twin) max_ref = std::max(max_ref, std::fabs(double(v)));
  std::vector<double> per_position;
  for (size_t p = 0; p < fast.size() / size_t(vocab); ++p) {
    double d = 0;
    for (int64_t v = 0; v < vocab; ++v) {
      const size_t i = p * size_t(vocab) + size_t(v);
      d = std::max(d, std::fabs(double(fast[i]) - double(twin[i])));
    }
    per_position.push_back(std::isfinite(d) && max_ref > 0 ? d / max_ref : INFINITY);
  }
  Validation v;
  v.median_rel = std::isfinite(max_ref) ? median(per_position) : INFINITY;
  v.max_rel = *std::max_element(per_position.begin(), per_position.end());
  v.bound = bound;
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = std::string(DSV3_BENCH_BINARY_DIR) + "/bench-models";
  std::string preset = "v3-1.5g";
  int64_t prompt_len = 512, decode_tokens = 32;
  int runs = 3, threads = 0;
  parse_flags(argc, argv,
              "usage: bench_model [--dir DIR] [--preset NAME] [--prompt N] [--decode N] [--runs R] [--threads T]\n",
              [&](const std::string& flag, const std::string& value) {
                if (flag == "--dir") dir = value;
                else if (flag == "--preset") preset = value;
                else if (flag == "--prompt") prompt_len = std::stoll(value);
                else if (flag == "--decode") decode_tokens = std::stoll(value);
                else if (flag == "--runs") runs = std::stoi(value);
                else if (flag == "--threads") threads = std::stoi(value);
                else return false;
                return true;
              });
  try {
    set_num_threads(threads);
    const ModelConfig config = preset_config(preset);
    // BF16 weights; FP8 weights with bf16 activations (weights dequantized in the kernels); FP8 weights
    // with activations quantized per 1×128 tile (DeepSeek's dynamic scheme, Precision::fp8).
    struct Case {
      bool fp8;
      Precision precision;
      const char* weights() const { return fp8 ? "fp8" : "bf16"; }
      const char* activations() const { return precision == Precision::fp8 ? "fp8-dynamic" : "bf16"; }
      // The matmul its prefill GEMMs run on: BF16 weights with bf16 activations and FP8 activations on the
      // bf16 matmul where the CPU has one; FP8 weights with bf16 activations dequantized for the f32 matmul.
      bool bf16_arithmetic() const { return has_native_bf16_gemm() && (!fp8 || precision == Precision::fp8); }
      // Validation bound on the median over positions of max |fast - twin| / max |twin|. Both runs round
      // activations at the same points; their projections differ only in f32 summation order (~2^-22
      // relative), which now and then moves an element across a rounding boundary of its format: one unit
      // in the last place, 2^-8..2^-7 relative for bf16, 2^-4..2^-3 for E4M3. Attention passes such a move
      // in a query or key almost undiluted (a score is a sum of only qk_head_dim products, and softmax
      // turns a score change into the same relative change of its weights), so every position past the
      // first moves by about one unit of the format; a router tie broken the other way moves one
      // position much further, hence the median. The bound is 4 units: 2^-5 for bf16, 2^-1 for E4M3. A
      // wrong decoder, tile, scale or kernel moves every position by the logits' own size.
      double bound() const { return precision == Precision::fp8 ? 0x1p-1 : 0x1p-5; }
    };
    const Case cases[] = {{false, Precision::bf16}, {true, Precision::bf16}, {true, Precision::fp8}};
    auto model_dir = [&](const Case& c) { return dir + "/" + preset + (c.fp8 ? "-fp8" : "-bf16"); };

    // Validation of every timed configuration, before any figure.
    for (const Case& c : cases) {
      ensure_model(model_dir(c), config, c.fp8);
      std::unique_ptr<Model> model = load_model(model_dir(c));
      ForwardOptions options;
      options.precision = c.precision;
      const Validation v = validate_against_twins(*model, options, c.bound());
      std::printf("{\"case\": \"validate\", \"weights\": \"%s\", \"activations\": \"%s\", \"prompt_tokens\": 48, "
                  "\"decode_steps\": 2, \"median_rel_diff_from_scalar_twins\": %.3g, \"worst_position\": %.3g, "
                  "\"bound\": %.3g, \"ok\": %s}\n",
                  c.weights(), c.activations(), v.median_rel, v.max_rel, v.bound, v.ok() ? "true" : "false");
      std::fflush(stdout);
      DSV3_CHECK(v.ok(), "[bench_model] ", c.weights(), " weights with ", c.activations(),
                 " activations: logits differ from the scalar twins' by ", v.median_rel,
                 " of the largest logit at the median position (bound ", v.bound, "): nothing is timed");
    }

    ReadBandwidthProbe probe(size_t(512) << 20);
    const BandwidthResult bw = measure_read_bandwidth(probe, 5);
    const double bf16_peak = measure_onednn_matmul_gflops(2048, 2048, 2048, dnnl::memory::data_type::bf16);
    const double f32_peak = measure_onednn_matmul_gflops(2048, 2048, 2048, dnnl::memory::data_type::f32);
    std::printf("{\"case\": \"machine\", \"threads\": %d, \"read_bandwidth_gbs\": %.2f, \"read_streams\": %d, "
                "\"bf16_gemm_gflops\": %.1f, \"f32_gemm_gflops\": %.1f}\n",
                num_threads(), bw.best_gbs, bw.streams, bf16_peak, f32_peak);
    std::fflush(stdout);

    for (const Case& c : cases) {
      std::unique_ptr<Model> model = load_model(model_dir(c));
      const PerToken costs = per_token_costs(*model);
      const int64_t vocab = model->config.vocab_size;
      const std::vector<int32_t> prompt = prompt_tokens(prompt_len, vocab);
      ForwardOptions options;  // absorbed attention: the generation defaults
      options.precision = c.precision;
      Tensor logits;

      // Prefill: a fresh cache per run; the whole prompt in default chunks, logits for the last position.
      // Each timed run is paired with a measurement of the peak of its arithmetic taken right before it;
      // the peak is the best of those.
      const double prefill_flops = double(prompt_len) * costs.linear_flops + costs.head_flops +
                                   attention_core_flops(model->config, prompt_len);
      const auto peak_type = c.bf16_arithmetic() ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32;
      std::vector<double> prefill_s;
      double peak = 0, bf16_peak_seen = bf16_peak;
      for (int r = 0; r < runs + 1; ++r) {
        peak = std::max(peak, measure_onednn_matmul_gflops(2048, 2048, 2048, peak_type, 3));
        KVCache cache(model->config, prompt_len + decode_tokens + 1);
        prepare_forward(*model, cache, prompt_len, options);  // as generate: scratch grown before timing
        const double t0 = now_seconds();
        forward(*model, cache, prompt.data(), prompt_len, options, &logits);
        const double seconds = now_seconds() - t0;
        if (r == 0) continue;  // the first run warms up
        prefill_s.push_back(seconds);
      }
      if (c.bf16_arithmetic()) bf16_peak_seen = std::max(bf16_peak_seen, peak);
      const double prefill_time = median(prefill_s);
      const double prefill_gflops = prefill_flops / prefill_time / 1e9;
      std::printf("{\"case\": \"prefill\", \"weights\": \"%s\", \"activations\": \"%s\", \"prompt_tokens\": %lld, "
                  "\"tokens_per_s\": %.1f, \"gflops\": %.1f, \"arithmetic\": \"%s\", \"peak_gflops\": %.1f, "
                  "\"fraction_of_peak\": %.3f, \"fraction_of_bf16_peak\": %.3f}\n",
                  c.weights(), c.activations(), (long long)prompt_len, double(prompt_len) / prefill_time,
                  prefill_gflops, c.bf16_arithmetic() ? "bf16" : "f32", peak, prefill_gflops / peak,
                  bf16_peak_seen > 0 ? prefill_gflops / bf16_peak_seen : 0.0);
      std::fflush(stdout);

      // Decode at batch 1 after a short prompt: per-token times, median over all runs; each run paired
      // with read-probe passes, the best of which is the peak.
      std::vector<double> step_s;
      double read_peak = 0;
      for (int r = 0; r < runs; ++r) {
        read_peak = std::max({read_peak, probe.pass(), probe.pass()});
        KVCache cache(model->config, 16 + decode_tokens + 1);
        forward(*model, cache, prompt.data(), 16, options, &logits);
        int32_t token = argmax(logits.as<float>(), vocab);
        for (int64_t i = 0; i < decode_tokens; ++i) {
          const double t0 = now_seconds();
          forward(*model, cache, &token, 1, options, &logits);
          step_s.push_back(now_seconds() - t0);
          token = argmax(logits.as<float>(), vocab);
        }
      }
      const double step = median(step_s);
      const double gbs = double(costs.decode_weight_bytes) / step / 1e9;
      std::printf("{\"case\": \"decode\", \"weights\": \"%s\", \"activations\": \"%s\", \"tokens_per_s\": %.2f, "
                  "\"weight_bytes_per_token\": %zu, \"weight_gbs\": %.2f, \"read_peak_gbs\": %.2f, "
                  "\"fraction_of_read_peak\": %.3f}\n",
                  c.weights(), c.activations(), 1.0 / step, costs.decode_weight_bytes, gbs, read_peak,
                  gbs / read_peak);
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_model: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
