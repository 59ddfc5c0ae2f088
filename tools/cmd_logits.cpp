// `dsv3 logits`: float32 next-token logits at every position, the hook other implementations check us by,
// and optionally the logits of MTP module 0 (the inference path's mtp_forward).
#include <cstdio>

#include "commands.h"
#include "core/error.h"
#include "io/npy.h"
#include "model/model.h"
#include "tool_common.h"

namespace dsv3::cli {

Runner add_logits(CLI::App& app) {
  struct Args {
    std::string model_dir, tokens, out, mtp_out, attention = "absorbed", precision = "f32";
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "logits", "Write float32 [n_tokens x vocab] next-token logits at every position to a .npy file, computed "
                "from the stored weights (in float32 unless --precision says otherwise)");
  cmd->add_option("--model", a->model_dir, "Model directory")->required();
  cmd->add_option("--tokens", a->tokens, "Comma-separated token ids, e.g. \"1,2,3\"")->required();
  cmd->add_option("--out", a->out, "Output .npy file")->required();
  cmd->add_option("--mtp", a->mtp_out,
                  "Also write MTP module 0's logits [n_tokens - 1 x vocab] to this .npy file: row i, fed the "
                  "final hidden state at position i and token i+1, predicts token i+2");
  cmd->add_option("--attention", a->attention, "MLA formulation: absorbed (latent-space) or naive (expanded K/V)")
      ->capture_default_str()->check(CLI::IsMember({"absorbed", "naive"}));
  cmd->add_option("--precision", a->precision,
                  "Activations of the projections: f32 (exact), bf16, or fp8 (quantized per 1x128 tile for FP8 "
                  "weights, bf16 for others), as generate and perplexity run them")
      ->capture_default_str()->check(CLI::IsMember({"f32", "bf16", "fp8"}));
  return [a] {
    const std::vector<int32_t> tokens = parse_token_list(a->tokens);
    std::unique_ptr<Model> model = load_model(a->model_dir);
    const int64_t vocab = model->config.vocab_size, n = int64_t(tokens.size());
    for (int32_t t : tokens)
      DSV3_CHECK(t < vocab, "[logits] token ", t, " is outside the vocabulary [0, ", vocab, ")");
    const bool mtp = !a->mtp_out.empty();
    DSV3_CHECK(!mtp || model->config.num_nextn_predict_layers > 0, "[logits] --mtp: ", a->model_dir,
               " has no MTP module (num_nextn_predict_layers is 0)");
    DSV3_CHECK(!mtp || n >= 2, "[logits] --mtp needs at least 2 tokens (a position and its next token)");
    KVCache cache(model->config, n);
    ForwardOptions options;
    options.precision = a->precision == "f32" ? Precision::f32 : a->precision == "fp8" ? Precision::fp8 : Precision::bf16;
    options.attention = a->attention == "naive" ? AttentionImpl::naive : AttentionImpl::absorbed;
    options.all_logits = true;
    Tensor logits, hidden;
    forward(*model, cache, tokens.data(), n, options, &logits, mtp ? &hidden : nullptr);
    write_npy_f32(a->out, logits.as<float>(), {n, vocab});
    std::fprintf(stderr, "[dsv3] wrote logits [%lld x %lld] to %s\n", (long long)n, (long long)vocab, a->out.c_str());
    if (mtp) {
      Tensor mtp_logits;
      mtp_forward(*model, 0, cache, hidden.as<float>(), tokens.data() + 1, n - 1, options, &mtp_logits);
      write_npy_f32(a->mtp_out, mtp_logits.as<float>(), {n - 1, vocab});
      std::fprintf(stderr, "[dsv3] wrote MTP logits [%lld x %lld] to %s\n", (long long)(n - 1), (long long)vocab,
                   a->mtp_out.c_str());
    }
    return 0;
  };
}

}  // namespace dsv3::cli
