// Whole-model benchmark: decode at batch 1 and prefill of a 512-token prompt on a DeepSeek-V3-shaped
// random model (preset v3-1.5g, ~1.5 GB in BF16) and its FP8 twin (with bf16 activations, and with
// activations quantized to FP8 on the fly), reported as tokens/s and as fractions
// of this machine's own measured peaks:
//   decode:  weight bytes read per token × tokens/s  /  measured read bandwidth
// Each timed run is paired with a peak measurement taken just before it (the machines are shared and
// their peaks drift); fractions are medians of the per-run ratios.
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
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "bench_common.h"
#include "core/parallel.h"
#include "infer/sampler.h"
#include "model/model.h"
#include "model/presets.h"
#include "model/random_init.h"

using namespace dsv3;
using namespace dsv3::bench;

namespace {

size_t mlp_bytes(const MlpWeights& m) {
  return m.gate_proj.weight_bytes() + m.up_proj.weight_bytes() + m.down_proj.weight_bytes();
}
size_t mlp_params(const MlpWeights& m) {
  return size_t(m.gate_proj.rows * m.gate_proj.cols + m.up_proj.rows * m.up_proj.cols +
                m.down_proj.rows * m.down_proj.cols);
}

struct PerToken {
  size_t decode_weight_bytes = 0;  // weights one decode step reads (absorbed attention, top-k experts)
  double linear_flops = 0;         // 2·params of the projections one token passes through (no head)
  double head_flops = 0;
};

PerToken per_token_costs(const Model& model) {
  const ModelConfig& c = model.config;
  PerToken p;
  auto add_linear = [&](const LinearWeight& w, bool read_in_decode = true) {
    if (w.data == nullptr) return;
    if (read_in_decode) p.decode_weight_bytes += w.weight_bytes();
    p.linear_flops += 2.0 * double(w.rows) * double(w.cols);
  };
  for (const LayerWeights& layer : model.weights.layers) {
    const AttentionWeights& a = layer.attn;
    if (a.q_lora) {
      add_linear(a.q_a_proj);
      add_linear(a.q_b_proj);
    } else {
      add_linear(a.q_proj);
    }
    add_linear(a.kv_a_proj_with_mqa);
    add_linear(a.kv_b_proj, /*read_in_decode=*/false);  // decode reads its f32 copy instead
    p.decode_weight_bytes += a.kv_b_f32.nbytes();
    add_linear(a.o_proj);
    if (!layer.is_moe) {
      p.decode_weight_bytes += mlp_bytes(layer.mlp);
      p.linear_flops += 2.0 * double(mlp_params(layer.mlp));
    } else {
      add_linear(layer.moe.gate);
      if (layer.moe.has_shared) {
        p.decode_weight_bytes += mlp_bytes(layer.moe.shared);
        p.linear_flops += 2.0 * double(mlp_params(layer.moe.shared));
      }
      p.decode_weight_bytes += size_t(c.num_experts_per_tok) * mlp_bytes(layer.moe.experts[0]);
      p.linear_flops += 2.0 * double(c.num_experts_per_tok) * double(mlp_params(layer.moe.experts[0]));
    }
  }
  p.decode_weight_bytes += model.weights.lm_head.weight_bytes();
  p.head_flops = 2.0 * double(model.weights.lm_head.rows) * double(model.weights.lm_head.cols);
  return p;
}

double attention_core_flops(const ModelConfig& c, int64_t n) {
  const double pairs = double(n) * double(n + 1) / 2.0;
  return double(c.num_hidden_layers) * double(c.num_attention_heads) * pairs * 2.0 *
         double(c.qk_head_dim() + c.v_head_dim);
}

std::vector<int32_t> prompt_tokens(int64_t n, int64_t vocab) {
  std::vector<int32_t> tokens(static_cast<size_t>(n));
  uint64_t state = 12345;
  for (auto& t : tokens) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    t = int32_t((state >> 33) % uint64_t(vocab));
  }
  return tokens;
}

void ensure_model(const std::string& dir, const ModelConfig& config, bool fp8) {
  if (std::filesystem::exists(dir + "/config.json")) return;
  std::fprintf(stderr, "[bench_model] creating %s model in %s\n", fp8 ? "FP8" : "BF16", dir.c_str());
  RandomInitOptions options;
  options.fp8 = fp8;
  options.max_shard_bytes = size_t(1) << 30;
  write_random_checkpoint(config, dir, /*seed=*/7, options);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = std::string(DSV3_BENCH_BINARY_DIR) + "/bench-models";
  std::string preset = "v3-1.5g";
  int64_t prompt_len = 512, decode_tokens = 32;
  int runs = 3, threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--dir") dir = value;
    else if (flag == "--preset") preset = value;
    else if (flag == "--prompt") prompt_len = std::stoll(value);
    else if (flag == "--decode") decode_tokens = std::stoll(value);
    else if (flag == "--runs") runs = std::stoi(value);
    else if (flag == "--threads") threads = std::stoi(value);
    else {
      std::fprintf(stderr, "usage: bench_model [--dir DIR] [--preset NAME] [--prompt N] [--decode N] [--runs R] [--threads T]\n");
      return 2;
    }
  }
  try {
    set_num_threads(threads);
    const BandwidthResult bw = measure_read_bandwidth();
    // The GEMM peak is oneDNN's BF16 matmul; on CPUs without BF16 arithmetic (no AVX512-BF16/AMX)
    // oneDNN has no BF16 matmul and the machine's fastest GEMM is F32, which is then the peak.
    const double bf16_peak = measure_onednn_matmul_gflops(2048, 2048, 2048, dnnl::memory::data_type::bf16);
    const double f32_peak = measure_onednn_matmul_gflops(2048, 2048, 2048, dnnl::memory::data_type::f32);
    const bool bf16_is_peak = bf16_peak >= f32_peak;
    const char* peak_kind = bf16_is_peak ? "bf16" : "f32";
    auto measure_gemm_peak = [&] {
      return measure_onednn_matmul_gflops(2048, 2048, 2048,
                                          bf16_is_peak ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32, 3);
    };
    std::printf("{\"case\": \"machine\", \"threads\": %d, \"read_bandwidth_gbs\": %.2f, \"bf16_gemm_gflops\": %.1f, "
                "\"f32_gemm_gflops\": %.1f, \"gemm_peak\": \"%s\"}\n",
                num_threads(), bw.median_gbs, bf16_peak, f32_peak, peak_kind);
    std::fflush(stdout);

    const ModelConfig config = preset_config(preset);
    // BF16 weights; FP8 weights with bf16 activations (weights dequantized in the kernels); FP8 weights
    // with activations quantized per 1×128 tile (DeepSeek's dynamic scheme, Precision::fp8).
    struct Case {
      bool fp8;
      Precision precision;
    };
    for (const Case c : {Case{false, Precision::bf16}, Case{true, Precision::bf16}, Case{true, Precision::fp8}}) {
      const bool fp8 = c.fp8;
      const char* activations = c.precision == Precision::fp8 ? "fp8-dynamic" : "bf16";
      const std::string model_dir = dir + "/" + preset + (fp8 ? "-fp8" : "-bf16");
      ensure_model(model_dir, config, fp8);
      std::unique_ptr<Model> model = load_model(model_dir);
      const PerToken costs = per_token_costs(*model);
      const int64_t vocab = model->config.vocab_size;
      const std::vector<int32_t> prompt = prompt_tokens(prompt_len, vocab);
      ForwardOptions options;  // absorbed attention: the generation defaults
      options.precision = c.precision;
      Tensor logits;

      // Prefill: a fresh cache per run; the whole prompt in default chunks, logits for the last position.
      // The machine is shared: each timed run is paired with a GEMM-peak measurement taken right
      // before it, and the reported fraction is the median of the per-run ratios.
      const double prefill_flops = double(prompt_len) * costs.linear_flops + costs.head_flops +
                                   attention_core_flops(model->config, prompt_len);
      std::vector<double> prefill_s, prefill_fraction;
      for (int r = 0; r < runs + 1; ++r) {
        const double peak = measure_gemm_peak();
        KVCache cache(model->config, prompt_len + decode_tokens + 1);
        const double t0 = now_seconds();
        forward(*model, cache, prompt.data(), prompt_len, options, &logits);
        const double seconds = now_seconds() - t0;
        if (r == 0) continue;  // the first run warms up
        prefill_s.push_back(seconds);
        prefill_fraction.push_back(prefill_flops / seconds / 1e9 / peak);
      }
      const double prefill_time = median(prefill_s);
      const double prefill_gflops = prefill_flops / prefill_time / 1e9;
      std::printf("{\"case\": \"prefill\", \"weights\": \"%s\", \"activations\": \"%s\", \"prompt_tokens\": %lld, "
                  "\"tokens_per_s\": %.1f, \"gflops\": %.1f, \"fraction_of_gemm_peak\": %.3f, \"gemm_peak\": \"%s\"}\n",
                  fp8 ? "fp8" : "bf16", activations, (long long)prompt_len, double(prompt_len) / prefill_time, prefill_gflops,
                  median(prefill_fraction), peak_kind);
      std::fflush(stdout);

      // Decode at batch 1 after a short prompt: per-token times, median over all runs.
      std::vector<double> step_s, decode_fraction;
      for (int r = 0; r < runs; ++r) {
        const double bandwidth = measure_read_bandwidth(size_t(512) << 20, 3).median_gbs;  // paired with this run
        const size_t first_step = step_s.size();
        KVCache cache(model->config, 16 + decode_tokens + 1);
        forward(*model, cache, prompt.data(), 16, options, &logits);
        int32_t token = argmax(logits.as<float>(), vocab);
        for (int64_t i = 0; i < decode_tokens; ++i) {
          const double t0 = now_seconds();
          forward(*model, cache, &token, 1, options, &logits);
          step_s.push_back(now_seconds() - t0);
          token = argmax(logits.as<float>(), vocab);
        }
        const double run_step = median(std::vector<double>(step_s.begin() + int64_t(first_step), step_s.end()));
        decode_fraction.push_back(double(costs.decode_weight_bytes) / run_step / 1e9 / bandwidth);
      }
      const double step = median(step_s);
      const double gbs = double(costs.decode_weight_bytes) / step / 1e9;
      std::printf("{\"case\": \"decode\", \"weights\": \"%s\", \"activations\": \"%s\", \"tokens_per_s\": %.2f, "
                  "\"weight_bytes_per_token\": %zu, \"weight_gbs\": %.2f, \"fraction_of_read_bandwidth\": %.3f}\n",
                  fp8 ? "fp8" : "bf16", activations, 1.0 / step, costs.decode_weight_bytes, gbs, median(decode_fraction));
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_model: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
