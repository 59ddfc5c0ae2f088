// `dsv3 quantize --fp8`: a BF16/F16/F32 checkpoint rewritten in DeepSeek's FP8 layout (E4M3 linear
// weights with one F32 scale per 128×128 block; docs/FP8.md, "Quantizing a checkpoint").
#include <cstdint>
#include <cstdio>

#include "commands.h"
#include "core/error.h"
#include "core/progress.h"
#include "model/quantize_checkpoint.h"

namespace dsv3::cli {

namespace {

std::string bytes_str(uint64_t bytes) { return format_count(double(bytes)) + "B"; }

}  // namespace

Runner add_quantize(CLI::App& app) {
  struct Args {
    std::string model, out, scale_fmt = "float";
    bool fp8 = false, force = false;
    double shard_mb = 0;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "quantize",
      "Write a quantized copy of a BF16/F16/F32 checkpoint. --fp8 (required; the only target format): "
      "DeepSeek's FP8 layout, as its released V3 checkpoints are stored: every linear projection (attention, "
      "MLP, experts, MTP eh_proj) becomes F8_E4M3 with an F32 weight_scale_inv per 128x128 block, "
      "s = max(amax, 1e-4)/448, round to nearest even; embedding, heads, norms and router stay as they are");
  cmd->add_option("--model", a->model, "Input checkpoint directory (config.json + safetensors, BF16/F16/F32)")
      ->required();
  cmd->add_option("--out", a->out, "Output directory (created; must be empty unless --force)")->required();
  cmd->add_flag("--fp8", a->fp8,
                "Target DeepSeek's block-scaled FP8 (E4M3, 128x128 blocks, quantization_config in config.json). "
                "Required: it is the only format dsv3 quantize writes")
      ->required();
  cmd->add_option("--scale-fmt", a->scale_fmt,
                  "Block scales: float (DeepSeek-V3: amax/448) or ue8m0 (DeepSeek-V3.1: rounded up to a power of "
                  "two; config.json gets \"scale_fmt\": \"ue8m0\")")
      ->capture_default_str()
      ->check(CLI::IsMember({"float", "ue8m0"}));
  cmd->add_option("--shard-mb", a->shard_mb,
                  "Repack into shards of at most this many MB (0 = one output shard per input file)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--force", a->force, "Write into a non-empty --out, replacing the model files there");
  return [a] {
    QuantizeCheckpointOptions options;
    options.ue8m0_scales = a->scale_fmt == "ue8m0";
    options.max_shard_bytes = a->shard_mb > 0 ? size_t(a->shard_mb * 1e6) : 0;
    options.force = a->force;
    const QuantizeCheckpointStats s = quantize_checkpoint_fp8(a->model, a->out, options);
    std::printf("quantized %lld tensors to FP8 E4M3 (128x128 blocks, %s scales): %s -> %s\n",
                (long long)s.quantized_tensors, a->scale_fmt.c_str(), bytes_str(s.quantized_bytes_in).c_str(),
                bytes_str(s.quantized_bytes_out).c_str());
    std::printf("copied %lld tensors unchanged (embedding, heads, norms, router)", (long long)s.copied_tensors);
    if (s.undescribed_tensors > 0)
      std::printf(", %lld of them not described by config.json", (long long)s.undescribed_tensors);
    std::printf("\ntotal tensor data %s -> %s (%.1f%%) in %lld shard(s)", bytes_str(s.bytes_in).c_str(),
                bytes_str(s.bytes_out).c_str(), s.bytes_in ? 100.0 * double(s.bytes_out) / double(s.bytes_in) : 0.0,
                (long long)s.shards);
    if (s.copied_files > 0) std::printf("; %lld tokenizer/generation file(s) copied", (long long)s.copied_files);
    std::printf("\n");
    std::fprintf(stderr, "[dsv3] wrote %s\n", a->out.c_str());
    return 0;
  };
}

}  // namespace dsv3::cli
