// Parameter counts, weight bytes and KV-cache bytes of a config, from hf_tensor_specs (the same list
// the loader binds), so the numbers describe exactly the checkpoint dsv3 reads.
//
// Conventions (checked against DeepSeek-V3's published 671B total / 37B active / 14B MTP):
//   total_params   main model: embedding + layers + final norm + head, MTP excluded  (V3: 671.0B)
//   active_params  what one token computes with in the main model: everything but the routed experts it
//                  does not select and the embedding table (a token reads one row)  (V3: 36.6B, "37B";
//                  37.6B with the embedding table)
//   mtp_params     all MTP modules including their embedding/head copies            (V3: 13.5B, "14B")
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "model/config.h"

namespace dsv3 {

struct ModelStats {
  int64_t total_params = 0;
  int64_t active_params = 0;
  int64_t embedding_params = 0;      // main model's embedding table
  int64_t routed_expert_params = 0;  // main model, all routed experts
  int64_t mtp_params = 0;
  int64_t mtp_active_params = 0;     // per token, all MTP modules, without their embedding copies
  // MLA latent cache: (kv_lora_rank + qk_rope_head_dim) values per token per main layer (SPEC.md §1).
  int64_t kv_values_per_token = 0;
  size_t kv_bytes_per_token(DType dtype) const { return size_t(kv_values_per_token) * dtype_size(dtype); }
};

ModelStats model_stats(const ModelConfig& config);

// Bytes of tensor data in a checkpoint storing every tensor as `dtype` (F32, BF16, F16), except the F32
// correction biases; with fp8, TensorRole::linear weights take 1 byte each plus their F32 128×128
// block scales instead (as DeepSeek's FP8 release).
size_t weight_bytes(const ModelConfig& config, DType dtype, bool fp8, bool include_mtp);

}  // namespace dsv3
