// Writes a randomly initialised checkpoint in Hugging Face layout (config.json + safetensors) for a
// config: what `dsv3 init` produces and what the tests and benchmarks run on.
//
// Values (deterministic for a seed, independent of thread count and sharding; each tensor's values
// depend only on the seed and the tensor's name):
//   embedding, head, projections, router gate: N(0, init_std²). Default init_std 0.02 — the
//     "initializer_range" of DeepSeek's released config.json (Hugging Face's init). The TR's training
//     init (0.006, SPEC.md §2) gives a random model near-uniform next-token distributions (logit std
//     0.006·sqrt(H)); 0.02 gives visibly varied outputs while staying a plausible initialisation.
//   RMSNorm weights: 1.   e_score_correction_bias (F32): uniform in ±correction_bias_range, large enough
//     to change which experts win against sigmoid scores near 0.5.
//   MTP modules' embed_tokens / shared_head.head: copies of the main model's, as in DeepSeek's release.
// fp8: every TensorRole::linear weight is quantized to E4M3 with 128×128 block scales exactly as
// DeepSeek's checkpoints are (quantize_fp8_blocks) and config.json gets a quantization_config.
//
// Streaming: tensors are generated shard by shard and each shard is written before the next is
// generated, so peak memory is about one shard (max_shard_bytes), not the model.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/dtype.h"
#include "model/config.h"

namespace dsv3 {

struct RandomInitOptions {
  double init_std = 0.02;
  double correction_bias_range = 0.05;
  DType dtype = DType::BF16;  // every tensor but the F32 correction bias (F32, BF16 or F16)
  bool fp8 = false;           // quantize TensorRole::linear weights to FP8 E4M3, 128×128 blocks
  size_t max_shard_bytes = size_t(2) << 30;
  bool show_progress = true;  // a progress line on stderr (final line only when stderr is not a terminal)
};

void write_random_checkpoint(const ModelConfig& config, const std::string& dir, uint64_t seed,
                             const RandomInitOptions& options);

// The config that write_random_checkpoint writes to config.json (adds quantization_config for fp8).
ModelConfig random_checkpoint_config(const ModelConfig& config, const RandomInitOptions& options);

}  // namespace dsv3
