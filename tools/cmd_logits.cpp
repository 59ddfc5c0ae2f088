// `dsv3 logits`: float32 next-token logits at every position, the hook other implementations check us by.
#include <cstdio>

#include "commands.h"
#include "core/error.h"
#include "io/npy.h"
#include "model/model.h"
#include "tool_common.h"

namespace dsv3::cli {

Runner add_logits(CLI::App& app) {
  struct Args {
    std::string model_dir, tokens, out, attention = "absorbed";
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "logits", "Write float32 [n_tokens x vocab] next-token logits at every position to a .npy file, computed in "
                "float32 from the stored weights");
  cmd->add_option("--model", a->model_dir, "Model directory")->required();
  cmd->add_option("--tokens", a->tokens, "Comma-separated token ids, e.g. \"1,2,3\"")->required();
  cmd->add_option("--out", a->out, "Output .npy file")->required();
  cmd->add_option("--attention", a->attention, "MLA formulation: absorbed (latent-space) or naive (expanded K/V)")
      ->capture_default_str()->check(CLI::IsMember({"absorbed", "naive"}));
  return [a] {
    const std::vector<int32_t> tokens = parse_token_list(a->tokens);
    std::unique_ptr<Model> model = load_model(a->model_dir);
    const int64_t vocab = model->config.vocab_size;
    for (int32_t t : tokens)
      DSV3_CHECK(t < vocab, "[logits] token ", t, " is outside the vocabulary [0, ", vocab, ")");
    KVCache cache(model->config, int64_t(tokens.size()));
    ForwardOptions options;
    options.precision = Precision::f32;
    options.attention = a->attention == "naive" ? AttentionImpl::naive : AttentionImpl::absorbed;
    options.all_logits = true;
    Tensor logits;
    forward(*model, cache, tokens.data(), int64_t(tokens.size()), options, &logits);
    write_npy_f32(a->out, logits.as<float>(), {int64_t(tokens.size()), vocab});
    std::fprintf(stderr, "[dsv3] wrote logits [%zu x %lld] to %s\n", tokens.size(), (long long)vocab, a->out.c_str());
    return 0;
  };
}

}  // namespace dsv3::cli
