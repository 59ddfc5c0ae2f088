// `dsv3 export --gguf`: a checkpoint as a GGUF file that llama.cpp runs (its deepseek2 architecture;
// io/gguf_deepseek2.h has the mapping).
#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "core/error.h"
#include "core/progress.h"
#include "io/gguf_deepseek2.h"
#include "model/model.h"

namespace dsv3::cli {

namespace fs = std::filesystem;

Runner add_export(CLI::App& app) {
  struct Args {
    std::string model, gguf, type = "bf16";
    bool force = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "export",
      "Write a checkpoint as a GGUF file for llama.cpp (architecture deepseek2, as llama.cpp's own converter "
      "writes DeepSeek-V2/V3): weights in F32 or BF16 (norms and router always F32; FP8 weights dequantized), "
      "MLA's kv_b_proj split into attn_k_b/attn_v_b, experts stacked, the tokenizer as a BPE vocabulary with "
      "DeepSeek-V3's pre-tokenizer and chat template. MTP modules are left out, as llama.cpp's converter does");
  cmd->add_option("--model", a->model, "Checkpoint directory (config.json + safetensors; BF16, F16, F32 or FP8)")
      ->required();
  cmd->add_option("--gguf", a->gguf, "Output .gguf file")->required();
  cmd->add_option("--type", a->type, "Weight type: f32 (exact) or bf16 (exact for BF16 checkpoints)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "bf16"}));
  cmd->add_flag("--force", a->force, "Overwrite an existing output file");
  return [a] {
    DSV3_CHECK(a->force || !fs::exists(a->gguf), "[export] ", a->gguf, " exists: pass --force to overwrite it");
    const fs::path out_dir = fs::absolute(a->gguf).parent_path();
    DSV3_CHECK(fs::is_directory(out_dir), "[export] ", out_dir.string(), " is not a directory: create it first");
    DSV3_CHECK(fs::is_regular_file(fs::path(a->model) / "config.json"), "[export] ", a->model,
               " has no config.json: give a checkpoint directory (config.json + safetensors + tokenizer.json)");
    Deepseek2Export options;
    options.tokenizer_json = (fs::path(a->model) / "tokenizer.json").string();
    DSV3_CHECK(fs::is_regular_file(options.tokenizer_json), "[export] ", a->model, " has no tokenizer.json, and "
               "llama.cpp needs the vocabulary: copy the model's tokenizer.json (and tokenizer_config.json) there "
               "(dsv3 init --tokenizer FILE does it for random models; dsv3 train-tokenizer makes one)");
    std::unique_ptr<Model> model = load_model(a->model);
    options.type = a->type == "f32" ? GgmlType::F32 : GgmlType::BF16;
    options.name = fs::path(a->model).lexically_normal().filename().string();
    if (options.name.empty()) options.name = fs::absolute(a->model).parent_path().filename().string();
    // Written beside the target and renamed when complete, so a failed export leaves no partial file.
    const std::string part = a->gguf + ".part";
    Deepseek2ExportResult r;
    try {
      r = write_deepseek2_gguf(*model, part, options);
    } catch (...) {
      std::error_code ignored;
      fs::remove(part, ignored);
      throw;
    }
    fs::rename(part, a->gguf);
    std::printf("wrote %s: deepseek2, %zu tensors, %s, %sB\n", a->gguf.c_str(), r.tensors,
                a->type == "f32" ? "F32" : "BF16 (norms and router F32)", format_count(double(r.bytes)).c_str());
    if (r.skipped_mtp > 0)
      std::printf("left out %lld MTP module(s): llama.cpp's deepseek2 does not read them\n", (long long)r.skipped_mtp);
    return 0;
  };
}

}  // namespace dsv3::cli
