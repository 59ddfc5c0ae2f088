// `dsv3 info`: what a checkpoint is: config summary, parameters, weight memory, KV cache per token.
#include <cstdio>

#include "commands.h"
#include "model/model.h"
#include "core/error.h"
#include "model/presets.h"
#include "model/stats.h"

namespace dsv3::cli {

namespace {
std::string human_count(double n) {
  const char* units[] = {"", "K", "M", "B", "T"};
  int u = 0;
  while (n >= 1000 && u < 4) {
    n /= 1000;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.2f%s" : "%.0f%s", n, units[u]);
  return buf;
}
std::string human_bytes(double n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (n >= 1024 && u < 4) {
    n /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f %s", n, units[u]);
  return buf;
}
}  // namespace

Runner add_info(CLI::App& app) {
  struct Args {
    std::string dir, preset, config_path;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "info", "Summarise a model: config, parameters, weight memory, KV cache bytes (of a model directory, or of a "
              "preset or config.json without weights)");
  auto* model_opt = cmd->add_option("--model", a->dir, "Model directory");
  auto* preset_opt = cmd->add_option("--preset", a->preset, "A named preset (see dsv3 init --help)");
  auto* config_opt = cmd->add_option("--config", a->config_path, "A config.json");
  model_opt->excludes(preset_opt)->excludes(config_opt);
  preset_opt->excludes(config_opt);
  return [a] {
    DSV3_CHECK(!a->dir.empty() || !a->preset.empty() || !a->config_path.empty(),
               "[info] give --model DIR, --preset NAME or --config FILE");
    std::unique_ptr<Model> model;
    ModelConfig config;
    std::string weights_line;
    if (!a->dir.empty()) {
      model = load_model(a->dir);
      config = model->config;
      size_t bytes = 0;
      for (const std::string& name : model->store.names()) bytes += model->store.get(name).nbytes();
      weights_line = human_bytes(double(bytes)) + " (as stored)";
    } else {
      config = a->preset.empty() ? load_model_config(a->config_path) : preset_config(a->preset);
      const bool fp8 = config.quantization_config.fp8;
      weights_line = human_bytes(double(weight_bytes(config, DType::BF16, fp8, true))) +
                     (fp8 ? " (FP8 checkpoint, MTP included)" : " (BF16 checkpoint, MTP included)");
    }
    const ModelConfig& c = config;
    const ModelStats s = model_stats(c);
    const std::string source = !a->dir.empty() ? a->dir : !a->preset.empty() ? "preset " + a->preset : a->config_path;
    std::printf("model            %s (%s)\n", source.c_str(), c.model_type.c_str());
    std::printf("layers           %lld (first %lld dense) + %lld MTP\n", (long long)c.num_hidden_layers,
                (long long)std::min(c.first_k_dense_replace, c.num_hidden_layers),
                (long long)c.num_nextn_predict_layers);
    std::printf("hidden / heads   %lld / %lld (q_lora %s, kv_lora %lld, qk %lld+%lld, v %lld)\n",
                (long long)c.hidden_size, (long long)c.num_attention_heads,
                c.q_lora_rank ? std::to_string(*c.q_lora_rank).c_str() : "none", (long long)c.kv_lora_rank,
                (long long)c.qk_nope_head_dim, (long long)c.qk_rope_head_dim, (long long)c.v_head_dim);
    std::printf("experts          %lld routed (top-%lld, %lld groups keep %lld) + %lld shared, %lld wide\n",
                (long long)c.n_routed_experts, (long long)c.num_experts_per_tok, (long long)c.n_group,
                (long long)c.topk_group, (long long)c.n_shared_experts, (long long)c.moe_intermediate_size);
    std::printf("vocab            %lld\n", (long long)c.vocab_size);
    std::printf("weights          %s\n", c.quantization_config.fp8 ? "FP8 E4M3, 128x128 block scales" : "unquantized");
    std::printf("parameters       %s total (%s main + %s MTP), %s active per token\n",
                human_count(double(s.total_params + s.mtp_params)).c_str(), human_count(double(s.total_params)).c_str(),
                human_count(double(s.mtp_params)).c_str(), human_count(double(s.active_params)).c_str());
    std::printf("weight memory    %s\n", weights_line.c_str());
    std::printf("KV cache         %lld bytes/token in BF16 (%lld latent + %lld rope values x %lld layers)\n",
                (long long)s.kv_bytes_per_token(DType::BF16), (long long)c.kv_lora_rank, (long long)c.qk_rope_head_dim,
                (long long)c.num_hidden_layers);
    return 0;
  };
}

}  // namespace dsv3::cli
