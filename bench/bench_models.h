// What the whole-model benchmarks (bench_model, bench_decode) share: the random DeepSeek-V3-shaped
// models they time, created on first use, a deterministic prompt, and what one token costs in weight
// bytes and FLOPs.
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "model/model.h"
#include "model/random_init.h"

namespace dsv3::bench {

inline size_t mlp_bytes(const MlpWeights& m) {
  return m.gate_proj.weight_bytes() + m.up_proj.weight_bytes() + m.down_proj.weight_bytes();
}
inline size_t mlp_params(const MlpWeights& m) {
  return size_t(m.gate_proj.rows * m.gate_proj.cols + m.up_proj.rows * m.up_proj.cols +
                m.down_proj.rows * m.down_proj.cols);
}

struct PerToken {
  size_t decode_weight_bytes = 0;  // weights one decode step reads (absorbed attention, top-k experts)
  double linear_flops = 0;         // 2·params of the projections one token passes through (no head)
  double head_flops = 0;
  size_t expert_bytes = 0;         // one routed expert's weights
  int64_t moe_layers = 0;
};

inline PerToken per_token_costs(const Model& model) {
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
      p.expert_bytes = mlp_bytes(layer.moe.experts[0]);
      ++p.moe_layers;
      p.linear_flops += 2.0 * double(c.num_experts_per_tok) * double(mlp_params(layer.moe.experts[0]));
    }
  }
  p.decode_weight_bytes += model.weights.lm_head.weight_bytes();
  p.head_flops = 2.0 * double(model.weights.lm_head.rows) * double(model.weights.lm_head.cols);
  return p;
}

inline std::vector<int32_t> prompt_tokens(int64_t n, int64_t vocab) {
  std::vector<int32_t> tokens(static_cast<size_t>(n));
  uint64_t state = 12345;
  for (auto& t : tokens) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    t = int32_t((state >> 33) % uint64_t(vocab));
  }
  return tokens;
}

inline void ensure_model(const std::string& dir, const ModelConfig& config, bool fp8) {
  if (std::filesystem::exists(dir + "/config.json")) return;
  std::fprintf(stderr, "[bench_model] creating %s model in %s\n", fp8 ? "FP8" : "BF16", dir.c_str());
  RandomInitOptions options;
  options.fp8 = fp8;
  options.max_shard_bytes = size_t(1) << 30;
  write_random_checkpoint(config, dir, /*seed=*/7, options);
}

}  // namespace dsv3::bench
