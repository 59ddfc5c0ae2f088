// `dsv3 init`: a random-weight model in Hugging Face layout, from a preset or a config.json,
// optionally FP8-quantized as DeepSeek quantizes its checkpoints, with a tokenizer copied beside it.
#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "core/error.h"
#include "model/presets.h"
#include "model/random_init.h"
#include "tool_common.h"

namespace dsv3::cli {

namespace fs = std::filesystem;

Runner add_init(CLI::App& app) {
  struct Args {
    std::string preset, config_path, out, tokenizer, dtype = "bf16";
    bool fp8 = false, force = false, no_tokenizer = false;
    double shard_mb = 4000;
    uint64_t seed = 0;
    double init_std = 0;
  };
  auto a = std::make_shared<Args>();
  std::string presets;
  for (const std::string& name : preset_names()) presets += (presets.empty() ? "" : ", ") + name;
  CLI::App* cmd = app.add_subcommand("init", "Write a random-weight model (config.json + safetensors + tokenizer)");
  auto* preset = cmd->add_option("--preset", a->preset, "Named configuration: " + presets);
  auto* config = cmd->add_option("--config", a->config_path, "A Hugging Face config.json to instantiate");
  preset->excludes(config);
  cmd->add_option("--out", a->out, "Output directory")->required();
  cmd->add_option("--dtype", a->dtype, "Weight dtype: bf16 or f32")->capture_default_str()
      ->check(CLI::IsMember({"bf16", "f32"}));
  cmd->add_flag("--fp8", a->fp8, "Quantize linear weights to FP8 E4M3 with 128x128 block scales (DeepSeek's layout)");
  cmd->add_option("--shard-mb", a->shard_mb, "Split into shards of at most this many MB (0 = one file); a model that fits one shard is written as model.safetensors")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", a->seed, "Random seed")->capture_default_str();
  cmd->add_option("--init-std", a->init_std, "Standard deviation of the weights (0 = the default)");
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer.json to copy beside the model (default: DeepSeek-V3's "
                                               "from deps/npm when present)");
  cmd->add_flag("--no-tokenizer", a->no_tokenizer, "Write no tokenizer (for models whose vocabulary is not DeepSeek's)")
      ->excludes("--tokenizer");
  cmd->add_flag("--force", a->force, "Overwrite an existing model in --out");
  return [a] {
    DSV3_CHECK(!a->preset.empty() || !a->config_path.empty(), "[init] give --preset NAME or --config FILE");
    const ModelConfig config = a->preset.empty() ? load_model_config(a->config_path) : preset_config(a->preset);
    DSV3_CHECK(a->force || !fs::exists(fs::path(a->out) / "config.json"), "[init] ", a->out,
               " already holds a model: pass --force to overwrite it");
    std::string tokenizer = a->tokenizer;
    if (tokenizer.empty() && !a->no_tokenizer && fs::exists(default_tokenizer_path()))
      tokenizer = default_tokenizer_path();
    std::unique_ptr<Tokenizer> tok;
    if (!tokenizer.empty()) {
      tok = load_tokenizer(tokenizer);
      DSV3_CHECK(tok->vocab_size() <= config.vocab_size, "[init] tokenizer ", tokenizer, " has ", tok->vocab_size(),
                 " tokens, more than the model's vocab_size ", config.vocab_size,
                 ": choose a config with a larger vocabulary or another tokenizer");
    }
    fs::create_directories(a->out);
    RandomInitOptions options;
    options.dtype = a->dtype == "f32" ? DType::F32 : DType::BF16;
    options.fp8 = a->fp8;
    options.max_shard_bytes = a->shard_mb > 0 ? size_t(a->shard_mb * 1e6) : SIZE_MAX;
    if (a->init_std > 0) options.init_std = float(a->init_std);
    write_random_checkpoint(config, a->out, a->seed, options);
    if (!tokenizer.empty()) {
      fs::copy_file(tokenizer, fs::path(a->out) / "tokenizer.json", fs::copy_options::overwrite_existing);
      const fs::path tokenizer_config = fs::path(tokenizer).parent_path() / "tokenizer_config.json";
      if (fs::exists(tokenizer_config))
        fs::copy_file(tokenizer_config, fs::path(a->out) / "tokenizer_config.json",
                      fs::copy_options::overwrite_existing);
    } else if (!a->no_tokenizer) {
      std::fprintf(stderr, "[dsv3] no tokenizer copied (none given and none installed): generate/chat need one\n");
    }
    std::fprintf(stderr, "[dsv3] wrote %s\n", a->out.c_str());
    return 0;
  };
}

}  // namespace dsv3::cli
