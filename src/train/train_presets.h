// Training presets: small DeepSeek-V3-shaped models to train from scratch on a CPU, with the sequence
// length and batch size they are meant to train at.
//   tiny   vocab 4096,  hidden 256, 4 layers (first dense, 768), 4 heads,  16 routed experts of 128, top-4
//   small  vocab 16384, hidden 512, 8 layers (first dense, 1536), 8 heads, 32 routed experts of 256, top-6
// Both use DeepSeek-V3's structure (q/kv LoRA, sigmoid router with correction bias and group limits,
// normalised top-k weights × 2.5, one shared expert, one MTP module) and plain RoPE: DeepSeek pre-trains
// at 4K with plain RoPE and adds YaRN only for context extension (TR §4.3). Special tokens follow the
// tokenizer trainer (src/train/bpe_trainer.h): BOS 0, EOS 1.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace dsv3 {

struct TrainPreset {
  std::string name;
  ModelConfig config;
  int64_t seq_len = 0;     // tokens per sequence (inputs; each sequence reads seq_len + 1 tokens)
  int64_t batch_size = 0;  // sequences per step
  double learning_rate = 0;  // peak LR of `dsv3 train` (DeepSeek-V3's 2.2e-4 is for a 671B model; small
                             // models train faster at higher rates)
};

std::vector<std::string> train_preset_names();
// Throws dsv3::Error listing the known names for an unknown one.
TrainPreset train_preset(const std::string& name);

}  // namespace dsv3
