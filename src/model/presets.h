// Named model configs for `dsv3 init` / `dsv3 info` and the tests and benchmarks.
//   deepseek-v3       the released DeepSeek-V3 config (671B; for `info`, far too large to init here)
//   deepseek-v2-lite  the released DeepSeek-V2-Lite config (16B)
//   v3-tiny           a very small V3-shaped model with the real 129280-token vocabulary
//   v3-1.5g           a V3-shaped model of ~1.5 GB in BF16 (main model, MTP excluded): the benchmark model
//   v2-lite-tiny      a very small V2-Lite-shaped model (plain q_proj, softmax/greedy routing, mscale 0.707)
#pragma once

#include <string>
#include <vector>

#include "model/config.h"

namespace dsv3 {

std::vector<std::string> preset_names();
// Throws dsv3::Error listing the known names for an unknown one.
ModelConfig preset_config(const std::string& name);

}  // namespace dsv3
