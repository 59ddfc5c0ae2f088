// `dsv3 perplexity`: the inference engine's next-token cross-entropy on held-out text — how a checkpoint
// (BF16, FP8, a trained one) is compared on the same tokens.
#include <cmath>
#include <cstdio>

#include "commands.h"
#include "core/error.h"
#include "core/progress.h"
#include "model/model.h"
#include "infer/sampler.h"
#include "train/token_shards.h"

namespace dsv3::cli {

namespace {

// −log softmax(logits)[target], in double.
double cross_entropy(const float* logits, int64_t vocab, int32_t target) {
  return log_sum_exp(logits, vocab) - double(logits[target]);
}

}  // namespace

Runner add_perplexity(CLI::App& app) {
  struct Args {
    std::string model_dir, data, split = "val", precision = "bf16";
    int64_t seq_len = 512, windows = 0;
    bool quiet = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "perplexity", "Mean next-token cross-entropy and perplexity of a model on token shards (dsv3 data), "
                    "computed by the inference engine over non-overlapping windows");
  cmd->add_option("--model", a->model_dir, "Model directory")->required();
  cmd->add_option("--data", a->data, "Token shards (dsv3 data) made with the model's tokenizer")->required();
  cmd->add_option("--split", a->split, "Which split")->capture_default_str()->check(CLI::IsMember({"val", "train"}));
  cmd->add_option("--seq-len", a->seq_len, "Tokens per window (each predicts seq-len targets)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--windows", a->windows, "Windows to evaluate (default: all of the split)");
  cmd->add_option("--precision", a->precision,
                  "Activations of the projections: bf16, f32, or fp8 (quantized per 1x128 tile, for FP8 weights)")
      ->capture_default_str()->check(CLI::IsMember({"bf16", "f32", "fp8"}));
  cmd->add_flag("--quiet", a->quiet, "No progress display");
  return [a] {
    std::unique_ptr<Model> model = load_model(a->model_dir);
    const TokenShards shards = TokenShards::open(a->data);
    const int64_t vocab = model->config.vocab_size;
    DSV3_CHECK(shards.vocab_size() <= vocab, "[perplexity] the shards use ", shards.vocab_size(),
               " token ids but the model's vocabulary has ", vocab, ": tokenize with the model's tokenizer");
    const TokenSplit split = a->split == "val" ? TokenSplit::val : TokenSplit::train;
    const int64_t available = shards.num_sequential_windows(split, a->seq_len);
    const int64_t windows = a->windows > 0 ? std::min(a->windows, available) : available;
    DSV3_CHECK(windows >= 1, "[perplexity] the ", a->split, " split of ", a->data, " has no window of ",
               a->seq_len + 1, " tokens; use a smaller --seq-len");
    ForwardOptions options;
    options.precision = a->precision == "f32" ? Precision::f32 : a->precision == "fp8" ? Precision::fp8 : Precision::bf16;
    options.all_logits = true;
    KVCache cache(model->config, a->seq_len);
    Tensor logits;
    double sum = 0;
    ProgressBar bar("perplexity", windows, "windows", !a->quiet);
    for (int64_t w = 0; w < windows; ++w) {
      const std::vector<int32_t> tokens = shards.sequential_batch(split, w, 1, a->seq_len);
      cache.truncate(0);
      forward(*model, cache, tokens.data(), a->seq_len, options, &logits);
      for (int64_t t = 0; t < a->seq_len; ++t) sum += cross_entropy(logits.as<float>() + t * vocab, vocab, tokens[size_t(t + 1)]);
      bar.update(w + 1);
      bar.set_note(cat("ppl ", std::exp(sum / double((w + 1) * a->seq_len))));
    }
    bar.finish();
    const double ce = sum / double(windows * a->seq_len);
    std::printf("cross-entropy %.6f  perplexity %.4f  (%lld windows x %lld tokens of %s, %s activations)\n", ce,
                std::exp(ce), (long long)windows, (long long)a->seq_len, a->split.c_str(), a->precision.c_str());
    return 0;
  };
}

}  // namespace dsv3::cli
