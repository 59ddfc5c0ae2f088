#include "model/transformer.h"

#include "core/parallel.h"
#include "core/profiler.h"
#include "model/mlp.h"
#include "model/moe.h"
#include "ops/ops.h"

namespace dsv3 {

void block_forward(const ModelConfig& config, const LayerWeights& w, int64_t cache_layer, const ChunkContext& chunk,
                   Scratch& s, float* x) {
  const int64_t n = chunk.n, H = config.hidden_size;
  const float eps = float(config.rms_norm_eps);
  s.reserve(config, n, chunk.max_capacity(), num_threads());

  rmsnorm(x, w.input_layernorm.as<float>(), eps, s.normed.data(), n, H);
  mla_forward(config, w.attn, chunk, cache_layer, s, s.normed.data(), s.branch.data());
  add_inplace(x, s.branch.data(), n * H);

  rmsnorm(x, w.post_attention_layernorm.as<float>(), eps, s.normed.data(), n, H);
  if (w.is_moe) {
    moe_forward(config, w.moe, s.normed.data(), n, chunk.precision, s, s.branch.data());
  } else {
    DSV3_ZONE("mlp.dense");
    mlp_forward(w.mlp, s.normed.data(), n, chunk.precision, s.ffn_gate.data(), s.ffn_up.data(), s.branch.data());
  }
  add_inplace(x, s.branch.data(), n * H);
}

}  // namespace dsv3
