// Converts a BF16/F16/F32 DeepSeek checkpoint directory into DeepSeek's FP8 layout (SPEC.md §1, §3):
// what `dsv3 quantize --fp8` runs.
//
// Which tensors: exactly the TensorRole::linear weights of hf_tensor_specs(config) — every attention
// and MLP/expert projection of the main and MTP layers, and the MTP layers' eh_proj — as DeepSeek's
// released V3 checkpoint has them. Each becomes `X.weight` F8_E4M3 plus `X.weight_scale_inv` F32
// [ceil(out/128), ceil(in/128)]. The embeddings, the heads (lm_head, shared_head.head), the norms, the
// router gate and e_score_correction_bias are copied byte for byte, as is any tensor config.json
// does not describe.
//
// The rule (DeepSeek's, quantize.h): per 128×128 block (edge blocks partial), s = max(amax, 1e-4)/448,
// optionally rounded up to a power of two (scale_fmt "ue8m0"); code = e4m3(w / s), round to nearest
// even. w is the stored value widened exactly to f32 (BF16 and F16 widen without rounding).
//
// Streaming: output shard by output shard, each linear weight in stripes of 128-row groups, so
// memory beyond the input's mmap is about one output shard (its FP8 tensors; copied tensors are
// written straight from the mmap) plus a ~16 MB f32 stripe.
//
// Output layout: shards follow the input's files (one output shard per input file; one file in, one
// model.safetensors out) unless max_shard_bytes repacks them; model.safetensors.index.json when there
// is more than one shard. Every file is written to NAME.partial and renamed; config.json is written
// last, so a directory with shards but no config.json is an interrupted run.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace dsv3 {

struct QuantizeCheckpointOptions {
  bool ue8m0_scales = false;   // power-of-two scales, config gets "scale_fmt": "ue8m0" (DeepSeek-V3.1)
  size_t max_shard_bytes = 0;  // 0: one output shard per input file; else greedy shards of at most this
  bool force = false;          // allow a non-empty output directory (its old model files are removed)
  bool show_progress = true;   // progress line on stderr
};

struct QuantizeCheckpointStats {
  int64_t quantized_tensors = 0;  // weights now F8_E4M3 (each with a weight_scale_inv)
  int64_t copied_tensors = 0;     // tensors copied unchanged
  int64_t undescribed_tensors = 0;  // of those, tensors config.json does not name (copied as they are)
  int64_t shards = 0;               // output .safetensors files
  uint64_t bytes_in = 0;            // tensor data read
  uint64_t bytes_out = 0;           // tensor data written (codes + scales + copies)
  uint64_t quantized_bytes_in = 0;  // the part of bytes_in that was quantized
  uint64_t quantized_bytes_out = 0;  // its FP8 codes and scales
  int64_t copied_files = 0;          // tokenizer.json, tokenizer_config.json, generation_config.json
};

// Reads in_dir (config.json + model.safetensors, or shards with model.safetensors.index.json) and writes
// the FP8 checkpoint to out_dir (created if missing). Throws dsv3::Error before writing anything when
// the input is already quantized (quantization_config, F8_E4M3 or *_scale_inv tensors), config.json is
// missing or invalid, a tensor config.json describes is missing or has the wrong shape, a weight to
// quantize is not F32/BF16/F16, out_dir is not empty (without force), or out_dir is in_dir. A weight
// holding a non-finite value (a corrupt checkpoint) stops the run when it is reached, before
// config.json is written.
QuantizeCheckpointStats quantize_checkpoint_fp8(const std::string& in_dir, const std::string& out_dir,
                                                const QuantizeCheckpointOptions& options);

}  // namespace dsv3
